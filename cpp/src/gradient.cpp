// Integrated gradients, saliency and input x gradient as sweeps over a GradientRunner's rows.
#include "attribfast/gradient.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "attribfast/math.h"

namespace attribfast {

namespace {

// Reduces per-dimension values of one position to one number.
double aggregate(const double* values, int64_t hidden, Aggregation aggregation) {
  double total = 0.0;
  if (aggregation == Aggregation::kSum) {
    for (int64_t h = 0; h < hidden; ++h) total += values[h];
    return total;
  }
  for (int64_t h = 0; h < hidden; ++h) total += values[h] * values[h];
  return std::sqrt(total);
}

// Rounds of quadrature rows: every target at n_steps points (plus f(input) and f(baseline) for the
// convergence delta), then, when adaptive, the targets whose delta is too large at twice the steps.
class IntegratedGradientsSweep final : public GradientSweep {
 public:
  IntegratedGradientsSweep(GradientRunner& runner, const IntegratedGradientsParams& params)
      : runner_(runner), params_(params), steps_(params.n_steps) {
    math::check_real("tolerance", params.tolerance, 0.0, false);
    math::check_real("relative_tolerance", params.relative_tolerance, 0.0, false);
    adaptive_ = params.tolerance > 0 || params.relative_tolerance > 0;
    if (adaptive_ && params.max_steps < params.n_steps) throw InvalidInputError("max_steps must be >= n_steps");
    const int64_t n_targets = runner.n_targets();
    result_.n_positions = runner.n_positions();
    result_.n_targets = n_targets;
    result_.matrix.assign(result_.n_positions * n_targets, 0.0);
    result_.clean_scores.assign(n_targets, 0.0);
    result_.delta.assign(n_targets, 0.0);
    result_.steps.assign(n_targets, params.n_steps);
    result_.baseline_scores.assign(n_targets, 0.0);
    pending_.resize(n_targets);
    std::iota(pending_.begin(), pending_.end(), 0);
  }

  const std::vector<GradientRunner::Row>& next_rows() override {
    if (open_) close_round();
    rows_.clear();
    row_weight_.clear();
    if (pending_.empty()) return rows_;
    const math::Quadrature rule = math::quadrature(params_.method, steps_, [&] { runner_.check_cancelled(); });
    const int64_t size = runner_.n_positions() * runner_.hidden_size();
    path_gradient_.assign(runner_.n_targets(), {});
    for (int64_t t : pending_) {
      if (first_round_) {
        rows_.push_back({t, 1.0});
        row_weight_.push_back(kInput);
        rows_.push_back({t, 0.0});
        row_weight_.push_back(kBaseline);
      }
      for (size_t k = 0; k < rule.alphas.size(); ++k) {
        rows_.push_back({t, rule.alphas[k]});
        row_weight_.push_back(rule.weights[k]);
      }
      path_gradient_[t].assign(size, 0.0);
    }
    open_ = true;
    return rows_;
  }

  void consume(size_t r, double score, const float* grad) override {
    const int64_t t = rows_[r].target;
    if (row_weight_[r] == kInput) {
      result_.clean_scores[t] = score;
    } else if (row_weight_[r] == kBaseline) {
      result_.baseline_scores[t] = score;
    } else {
      auto& acc = path_gradient_[t];
      const double w = row_weight_[r];
      for (size_t k = 0; k < acc.size(); ++k) acc[k] += w * grad[k];
    }
  }

  AttributionResult finish() override {
    if (open_) close_round();
    check_float32_range(result_);
    result_.rows_run = runner_.rows_run();
    result_.seconds = runner_.seconds();
    return std::move(result_);
  }

 private:
  // Row weights that mark the path's ends, whose scores give the convergence delta.
  static constexpr double kInput = -1.0;
  static constexpr double kBaseline = -2.0;

  void close_round() {
    open_ = false;
    const int64_t n = runner_.n_positions();
    const int64_t hidden = runner_.hidden_size();
    const int64_t n_targets = runner_.n_targets();
    const auto& x = runner_.input_embeddings();
    const auto& base = runner_.baseline();
    std::vector<int64_t> retry;
    std::vector<double> contribution(hidden);
    for (int64_t t : pending_) {
      double total = 0.0;
      for (int64_t p = 0; p < n; ++p) {
        for (int64_t h = 0; h < hidden; ++h) {
          const int64_t k = p * hidden + h;
          contribution[h] = (static_cast<double>(x[k]) - base[k]) * path_gradient_[t][k];
          total += contribution[h];
        }
        result_.matrix[p * n_targets + t] = aggregate(contribution.data(), hidden, params_.aggregation);
      }
      const double difference = result_.clean_scores[t] - result_.baseline_scores[t];
      result_.delta[t] = total - difference;
      result_.steps[t] = steps_;
      const double allowed = params_.tolerance + params_.relative_tolerance * std::fabs(difference);
      if (adaptive_ && std::fabs(result_.delta[t]) > allowed && steps_ * 2 <= params_.max_steps) retry.push_back(t);
    }
    pending_ = std::move(retry);
    steps_ *= 2;
    first_round_ = false;
    path_gradient_.clear();
  }

  GradientRunner& runner_;
  IntegratedGradientsParams params_;
  bool adaptive_ = false;
  int64_t steps_;
  bool first_round_ = true;
  bool open_ = false;
  std::vector<int64_t> pending_;
  std::vector<GradientRunner::Row> rows_;
  std::vector<double> row_weight_;
  std::vector<std::vector<double>> path_gradient_;  // per pending target, [n, hidden] weighted sums
  AttributionResult result_;
};

// One round: every target at the input.
class GradientAtInputSweep final : public GradientSweep {
 public:
  GradientAtInputSweep(GradientRunner& runner, Aggregation aggregation, bool times_input)
      : runner_(runner), aggregation_(aggregation), times_input_(times_input) {
    result_.n_positions = runner.n_positions();
    result_.n_targets = runner.n_targets();
    result_.matrix.assign(result_.n_positions * result_.n_targets, 0.0);
    result_.clean_scores.assign(result_.n_targets, 0.0);
  }

  const std::vector<GradientRunner::Row>& next_rows() override {
    rows_.clear();
    if (!done_) {
      for (int64_t t = 0; t < runner_.n_targets(); ++t) rows_.push_back({t, 1.0});
      done_ = true;
    }
    return rows_;
  }

  void consume(size_t r, double score, const float* grad) override {
    const int64_t n = runner_.n_positions();
    const int64_t hidden = runner_.hidden_size();
    const int64_t t = rows_[r].target;
    const auto& x = runner_.input_embeddings();
    std::vector<double>& values = values_;
    values.resize(hidden);
    result_.clean_scores[t] = score;
    for (int64_t p = 0; p < n; ++p) {
      for (int64_t h = 0; h < hidden; ++h) {
        const double g = grad[p * hidden + h];
        // Saliency sums |grad| (Captum's abs=True); the L2 option is the gradient's norm.
        values[h] = times_input_ ? g * x[p * hidden + h] : (aggregation_ == Aggregation::kSum ? std::fabs(g) : g);
      }
      result_.matrix[p * result_.n_targets + t] = aggregate(values.data(), hidden, aggregation_);
    }
  }

  int64_t planned_rows() const override { return runner_.n_targets(); }

  AttributionResult finish() override {
    check_float32_range(result_);
    result_.rows_run = runner_.rows_run();
    result_.seconds = runner_.seconds();
    return std::move(result_);
  }

 private:
  GradientRunner& runner_;
  Aggregation aggregation_;
  bool times_input_;
  bool done_ = false;
  std::vector<GradientRunner::Row> rows_;
  std::vector<double> values_;  // one position's per-dimension values, reused across rows
  AttributionResult result_;
};

}  // namespace

AttributionResult run_sweep(GradientRunner& runner, GradientSweep& sweep) {
  const GradientRunner::Consumer consume = [&](size_t r, double score, const float* grad) {
    sweep.consume(r, score, grad);
  };
  for (;;) {
    const auto& rows = sweep.next_rows();
    if (rows.empty()) break;
    runner.run(rows, consume);
  }
  return sweep.finish();
}

std::unique_ptr<GradientSweep> integrated_gradients_sweep(GradientRunner& runner,
                                                          const IntegratedGradientsParams& params) {
  return std::make_unique<IntegratedGradientsSweep>(runner, params);
}

std::unique_ptr<GradientSweep> gradient_at_input_sweep(GradientRunner& runner, Aggregation aggregation,
                                                       bool times_input) {
  return std::make_unique<GradientAtInputSweep>(runner, aggregation, times_input);
}

AttributionResult integrated_gradients(GradientRunner& runner, const IntegratedGradientsParams& params) {
  return run_sweep(runner, *integrated_gradients_sweep(runner, params));
}

AttributionResult saliency(GradientRunner& runner, Aggregation aggregation) {
  return run_sweep(runner, *gradient_at_input_sweep(runner, aggregation, false));
}

AttributionResult input_x_gradient(GradientRunner& runner, Aggregation aggregation) {
  return run_sweep(runner, *gradient_at_input_sweep(runner, aggregation, true));
}

}  // namespace attribfast
