// Gradient methods at sampled points: SmoothGrad / SmoothGrad^2 / VarGrad (Captum's NoiseTunnel)
// over saliency, input x gradient and integrated gradients, and GradientSHAP.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "attribfast/gradient.h"
#include "attribfast/math.h"

namespace attribfast {

namespace {

// The accumulators of one chunk (samples x targets x n x hidden doubles) stay under this many values.
constexpr int64_t kChunkValues = int64_t{1} << 23;

void check_finite(const std::vector<float>& values, const char* what, int64_t n, int64_t hidden) {
  const auto bad = std::find_if(values.begin(), values.end(), [](float v) { return !std::isfinite(v); });
  if (bad == values.end()) return;
  const int64_t k = bad - values.begin();
  throw InvalidInputError(std::string(what) + " has a non-finite value (" + non_finite_name(*bad) + ") in sample " +
                          std::to_string(k / (n * hidden)) + ", token " + std::to_string(k / hidden % n) +
                          ", dimension " + std::to_string(k % hidden));
}

// Round 0 scores the input for every target (the noisy rows never score it); then chunks of samples,
// each of their points for every target, accumulated per sample into G_s and folded into the sums.
class SampledGradientsSweep final : public GradientSweep {
 public:
  SampledGradientsSweep(GradientRunner& runner, SampledGradientParams moved)
      : runner_(runner), params_(std::move(moved)) {
    const SampledGradientParams& params = params_;
    const int64_t n = runner.n_positions();
    const int64_t hidden = runner.hidden_size();
    size_ = n * hidden;
    n_samples_ = static_cast<int64_t>(params.noise.size()) / std::max<int64_t>(size_, 1);
    n_points_ = static_cast<int64_t>(params.weights.size());
    const int64_t n_baselines = static_cast<int64_t>(params.baselines.size()) / std::max<int64_t>(size_, 1);
    if (n_samples_ < 1 || static_cast<int64_t>(params.noise.size()) != n_samples_ * size_) {
      throw InvalidInputError("the noise must have shape [n_samples >= 1, " + std::to_string(n) + ", " +
                              std::to_string(hidden) + "]");
    }
    if (n_baselines < 1 || static_cast<int64_t>(params.baselines.size()) != n_baselines * size_) {
      throw InvalidInputError("the baselines must have shape [k >= 1, " + std::to_string(n) + ", " +
                              std::to_string(hidden) + "]");
    }
    if (static_cast<int64_t>(params.baseline_index.size()) != n_samples_) {
      throw InvalidInputError("baseline_index needs one entry per sample");
    }
    for (int64_t index : params.baseline_index) {
      if (index < 0 || index >= n_baselines) {
        throw InvalidInputError("baseline index " + std::to_string(index) + " is outside [0, " +
                                std::to_string(n_baselines) + ")");
      }
    }
    if (n_points_ < 1 || static_cast<int64_t>(params.alphas.size()) != n_samples_ * n_points_) {
      throw InvalidInputError("alphas must have shape [n_samples, len(weights)], with at least one point");
    }
    for (double a : params.alphas) math::check_real("alpha", a, 0.0, false);
    for (double w : params.weights) {
      if (!std::isfinite(w)) throw InvalidInputError("the path weights must be finite");
    }
    check_finite(params.noise, "the noise", n, hidden);
    check_finite(params.baselines, "the baselines", n, hidden);

    // The noisy inputs x_s = x + noise_s, rounded to float32 as Captum's tensors are.
    const auto& x = runner.input_embeddings();
    inputs_.resize(params.noise.size());
    for (int64_t s = 0; s < n_samples_; ++s) {
      for (int64_t k = 0; k < size_; ++k) inputs_[s * size_ + k] = x[k] + params.noise[s * size_ + k];
    }
    params_.noise = {};  // folded into inputs_; it can be large
    const int64_t n_targets = runner.n_targets();
    runner.set_samples({inputs_.data(), params_.baselines.data(), params_.baseline_index.data()});
    runner.plan_rows(planned_rows());
    result_.n_positions = n;
    result_.n_targets = n_targets;
    result_.clean_scores.assign(n_targets, 0.0);
    result_.samples = n_samples_;
    sum_.assign(n_targets * size_, 0.0);
    sum_squares_.assign(n_targets * size_, 0.0);
    // Per sample, position and target: the hidden-summed attribution (smoothgrad) or its squares
    // (smoothgrad_sq), for the standard error.
    with_error_ = params.aggregation == Aggregation::kSum && params.nt_type != NoiseTunnelType::kVarGrad;
    per_sample_.assign(with_error_ ? n_samples_ * n * n_targets : 0, 0.0);
    chunk_ = std::clamp<int64_t>(kChunkValues / std::max<int64_t>(1, n_targets * size_), 1, n_samples_);
  }

  const std::vector<GradientRunner::Row>& next_rows() override {
    if (first_ >= 0) fold_chunk();
    rows_.clear();
    row_weight_.clear();
    const int64_t n_targets = runner_.n_targets();
    if (!clean_done_) {
      for (int64_t t = 0; t < n_targets; ++t) rows_.push_back({t, 1.0});
      clean_done_ = true;
      return rows_;
    }
    if (next_ >= n_samples_) return rows_;
    first_ = next_;
    count_ = std::min(chunk_, n_samples_ - first_);
    next_ = first_ + count_;
    for (int64_t s = first_; s < first_ + count_; ++s) {
      for (int64_t t = 0; t < n_targets; ++t) {
        for (int64_t k = 0; k < n_points_; ++k) {
          rows_.push_back({t, params_.alphas[s * n_points_ + k], s});
          row_weight_.push_back(params_.weights[k]);
        }
      }
    }
    // G_s per (sample in chunk, target): the weighted gradient sum, [n, hidden].
    path_.assign(count_ * n_targets * size_, 0.0);
    return rows_;
  }

  void consume(size_t r, double score, const float* grad) override {
    const auto& row = rows_[r];
    if (row.sample < 0) {
      result_.clean_scores[row.target] = score;
      return;
    }
    double* acc = &path_[((row.sample - first_) * runner_.n_targets() + row.target) * size_];
    const double w = row_weight_[r];
    for (int64_t k = 0; k < size_; ++k) acc[k] += w * grad[k];
  }

  int64_t planned_rows() const override { return runner_.n_targets() * (1 + n_samples_ * n_points_); }

  AttributionResult finish() override {
    if (first_ >= 0) fold_chunk();
    const int64_t n = runner_.n_positions();
    const int64_t hidden = runner_.hidden_size();
    const int64_t n_targets = runner_.n_targets();
    result_.matrix.assign(n * n_targets, 0.0);
    std::vector<double> values(hidden);
    for (int64_t t = 0; t < n_targets; ++t) {
      for (int64_t p = 0; p < n; ++p) {
        for (int64_t h = 0; h < hidden; ++h) {
          const int64_t k = t * size_ + p * hidden + h;
          const double mean = sum_[k] / n_samples_, mean_square = sum_squares_[k] / n_samples_;
          values[h] = params_.nt_type == NoiseTunnelType::kSmoothGrad     ? mean
                      : params_.nt_type == NoiseTunnelType::kSmoothGradSq ? mean_square
                                                                          : mean_square - mean * mean;
        }
        double reduced = 0.0;
        for (double v : values) reduced += params_.aggregation == Aggregation::kSum ? v : v * v;
        result_.matrix[p * n_targets + t] = params_.aggregation == Aggregation::kSum ? reduced : std::sqrt(reduced);
      }
    }
    if (with_error_) {
      result_.standard_error.assign(n * n_targets, std::numeric_limits<double>::infinity());
      if (n_samples_ > 1) {
        for (int64_t cell = 0; cell < n * n_targets; ++cell) {
          double mean = 0.0, spread = 0.0;
          for (int64_t s = 0; s < n_samples_; ++s) mean += per_sample_[s * n * n_targets + cell];
          mean /= n_samples_;
          for (int64_t s = 0; s < n_samples_; ++s) {
            const double d = per_sample_[s * n * n_targets + cell] - mean;
            spread += d * d;
          }
          result_.standard_error[cell] = std::sqrt(spread / (n_samples_ - 1) / n_samples_);
        }
      }
    }
    check_float32_range(result_);
    result_.rows_run = runner_.rows_run();
    result_.seconds = runner_.seconds();
    return std::move(result_);
  }

 private:
  // Folds the finished chunk's path gradients into the per-element sums.
  void fold_chunk() {
    const int64_t n = runner_.n_positions();
    const int64_t hidden = runner_.hidden_size();
    const int64_t n_targets = runner_.n_targets();
    for (int64_t s = first_; s < first_ + count_; ++s) {
      const float* xs = &inputs_[s * size_];
      const float* bs = &params_.baselines[params_.baseline_index[s] * size_];
      for (int64_t t = 0; t < n_targets; ++t) {
        const double* g = &path_[((s - first_) * n_targets + t) * size_];
        for (int64_t p = 0; p < n; ++p) {
          double total = 0.0;
          for (int64_t h = 0; h < hidden; ++h) {
            const int64_t k = p * hidden + h;
            const double a = params_.absolute ? std::fabs(g[k]) : (static_cast<double>(xs[k]) - bs[k]) * g[k];
            sum_[t * size_ + k] += a;
            sum_squares_[t * size_ + k] += a * a;
            total += params_.nt_type == NoiseTunnelType::kSmoothGrad ? a : a * a;
          }
          if (with_error_) per_sample_[(s * n + p) * n_targets + t] = total;
        }
      }
    }
    first_ = -1;
  }

  GradientRunner& runner_;
  SampledGradientParams params_;
  int64_t size_ = 0, n_samples_ = 0, n_points_ = 0, chunk_ = 1;
  std::vector<float> inputs_;  // [n_samples, n, hidden] noisy inputs, borrowed by the runner
  bool clean_done_ = false;
  int64_t first_ = -1, count_ = 0, next_ = 0;  // the open chunk [first_, first_ + count_), the next sample
  bool with_error_ = false;
  std::vector<GradientRunner::Row> rows_;
  std::vector<double> row_weight_, path_, sum_, sum_squares_, per_sample_;
  AttributionResult result_;
};

}  // namespace

std::unique_ptr<GradientSweep> sampled_gradients_sweep(GradientRunner& runner, SampledGradientParams params) {
  return std::make_unique<SampledGradientsSweep>(runner, std::move(params));
}

AttributionResult sampled_gradients(GradientRunner& runner, const SampledGradientParams& params) {
  return run_sweep(runner, *sampled_gradients_sweep(runner, params));
}

}  // namespace attribfast
