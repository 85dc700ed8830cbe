#include "attribfast/gradient.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>
#include <sstream>
#include <string>
#include <tuple>

#include "attribfast/math.h"

namespace attribfast {

namespace {

int64_t row_elements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const float* embedding_row(const GradientProblem& problem, int64_t id) {
  if (id < 0 || id >= problem.vocab_size) {
    throw InvalidInputError("token id " + std::to_string(id) + " is outside the vocabulary (" +
                            std::to_string(problem.vocab_size) + ")");
  }
  return problem.embeddings + id * problem.hidden_size;
}

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

// Where on the path a row was evaluated, for error messages.
std::string describe_point(double alpha, int64_t sample = -1) {
  if (sample >= 0) {
    std::ostringstream out;
    out << "at noise sample " << sample << ", alpha " << alpha << " on its path from the baseline";
    return out.str();
  }
  if (alpha == 1.0) return "at the input";
  if (alpha == 0.0) return "at the baseline";
  std::ostringstream out;
  out << "at alpha " << alpha << " on the path from the baseline to the input";
  return out.str();
}

}  // namespace

GradientRunner::GradientRunner(const Session& session, GradientProblem problem, BatchPolicy policy,
                               const RunControl* control, ProgressFn progress)
    : session_(session), problem_(std::move(problem)), policy_(policy), control_(control),
      progress_(std::move(progress)), start_(std::chrono::steady_clock::now()), embeds_buffer_(session),
      mask_buffer_(session) {
  const int64_t n = n_positions();
  const int64_t hidden = problem_.hidden_size;
  if (n == 0) throw InvalidInputError("the input has no tokens");
  if (problem_.suffixes.empty()) throw InvalidInputError("at least one target is needed");
  if (problem_.embeddings == nullptr || hidden <= 0 || problem_.vocab_size <= 0) {
    throw InvalidInputError("the embedding matrix is missing");
  }
  if (static_cast<int64_t>(problem_.baseline.size()) != n * hidden) {
    throw InvalidInputError("the baseline must have shape [" + std::to_string(n) + ", " + std::to_string(hidden) + "]");
  }
  const auto bad = std::find_if(problem_.baseline.begin(), problem_.baseline.end(),
                                [](float v) { return !std::isfinite(v); });
  if (bad != problem_.baseline.end()) {
    const int64_t k = bad - problem_.baseline.begin();
    throw InvalidInputError("the baseline has a non-finite value (" + non_finite_name(*bad) + ") at token " +
                            std::to_string(k / hidden) + ", dimension " + std::to_string(k % hidden));
  }
  auto require = [](bool found, const std::string& what, const std::string& name) {
    if (!found) throw InvalidInputError("the gradient graph has no " + what + " '" + name + "'");
  };
  require(session_.find_input(problem_.embeds_input) != nullptr, "embeddings input", problem_.embeds_input);
  require(session_.find_output(problem_.score_output) != nullptr, "score output", problem_.score_output);
  require(session_.find_output(problem_.gradient_output) != nullptr, "gradient output", problem_.gradient_output);
  for (const auto& extra : problem_.extras) {
    const size_t expected = problem_.suffixes.size() * row_elements(extra.row_shape) * element_size(extra.element_type);
    if (extra.data.size() != expected) {
      throw InvalidInputError("extra input '" + extra.name + "' needs one row per target" + (shared() ? " group" : ""));
    }
  }
  if (problem_.target_slot.size() != problem_.target_group.size()) {
    throw InvalidInputError("target_group and target_slot must have one entry per target");
  }
  for (size_t t = 0; t < problem_.target_group.size(); ++t) {
    const int64_t group = problem_.target_group[t];
    if (group < 0 || group >= static_cast<int64_t>(problem_.suffixes.size()) || problem_.target_slot[t] < 0) {
      throw InvalidInputError("target " + std::to_string(t) + " names no row group and score column");
    }
  }
  input_.resize(n * hidden);
  for (int64_t p = 0; p < n; ++p) {
    const float* row = embedding_row(problem_, problem_.ids[p]);
    std::copy(row, row + hidden, &input_[p * hidden]);
  }
  extra_buffers_.reserve(problem_.extras.size());
  for (size_t e = 0; e < problem_.extras.size(); ++e) extra_buffers_.emplace_back(session_);
}

void GradientRunner::check_cancelled() const {
  if (control_) control_->throw_if_cancelled();
}

double GradientRunner::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void GradientRunner::run(const std::vector<Row>& rows, const Consumer& consume) {
  const int64_t n = n_positions();
  const int64_t hidden = problem_.hidden_size;
  if (!planned_) expect_rows(static_cast<int64_t>(rows.size()));
  // A unit is one graph row: a row group at one point. Without a shared graph each row is its own
  // unit (its group is its target); with one, the rows of a group's targets at a point share it.
  struct Unit {
    int64_t group;
    double alpha;
    int64_t sample;
    std::vector<size_t> rows;
  };
  std::vector<Unit> units;
  if (shared()) {
    std::map<std::tuple<int64_t, double, int64_t>, size_t> index;
    for (size_t r = 0; r < rows.size(); ++r) {
      const int64_t group = problem_.target_group[rows[r].target];
      const auto [it, inserted] = index.emplace(std::make_tuple(group, rows[r].alpha, rows[r].sample), units.size());
      if (inserted) units.push_back({group, rows[r].alpha, rows[r].sample, {}});
      units[it->second].rows.push_back(r);
    }
  } else {
    for (size_t r = 0; r < rows.size(); ++r) units.push_back({rows[r].target, rows[r].alpha, rows[r].sample, {r}});
  }
  // Bucket by length: units of the same group have the same length.
  std::vector<size_t> order(units.size());
  std::iota(order.begin(), order.end(), 0);
  auto length = [&](size_t u) { return n + static_cast<int64_t>(problem_.suffixes[units[u].group].size()); };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return length(a) < length(b); });
  // A backward pass keeps the forward activations and adds the gradient of the embeddings.
  BatchPolicy policy = policy_;
  if (policy.batch_size <= 0) policy.memory_budget = std::max<int64_t>(1, policy.memory_budget / 3);
  size_t begin = 0;
  while (begin < order.size()) {
    if (control_) control_->throw_if_cancelled();
    size_t end = begin + 1;
    while (end < order.size() && static_cast<int64_t>(end - begin + 1) <= row_cap_ &&
           static_cast<int64_t>(end - begin + 1) <= choose_batch_size(policy, length(order[end]))) {
      ++end;
    }
    // Rows of one length split into even batches (34 rows at a cap of 30: 17 + 17, not 30 + 4),
    // so no batch is a small remainder that pays a whole run's fixed costs.
    size_t same = end;
    while (same < order.size() && length(order[same]) == length(order[begin])) ++same;
    if (same > end && length(order[end - 1]) == length(order[begin])) {
      const size_t cap = end - begin;
      const size_t batches = (same - begin + cap - 1) / cap;
      end = begin + (same - begin + batches - 1) / batches;
    }
    const int64_t batch = static_cast<int64_t>(end - begin);
    const int64_t seq = length(order[end - 1]);
    float* batch_embeds = embeds_buffer_.get<float>(batch * seq * hidden);
    int64_t* batch_mask = mask_buffer_.get<int64_t>(batch * seq);
    std::fill(batch_embeds, batch_embeds + batch * seq * hidden, 0.0f);
    std::fill(batch_mask, batch_mask + batch * seq, 0);
    for (int64_t b = 0; b < batch; ++b) {
      const Unit& row = units[order[begin + b]];
      float* dest = batch_embeds + b * seq * hidden;
      if (row.sample >= 0) {
        const float* x = samples_.inputs + row.sample * n * hidden;
        const float* b = samples_.baselines + samples_.baseline_index[row.sample] * n * hidden;
        const float alpha = static_cast<float>(row.alpha);
        if (row.alpha == 1.0 || row.alpha == 0.0) {
          std::copy(row.alpha == 1.0 ? x : b, (row.alpha == 1.0 ? x : b) + n * hidden, dest);
        } else {
          for (int64_t k = 0; k < n * hidden; ++k) dest[k] = b[k] + alpha * (x[k] - b[k]);
        }
      } else if (row.alpha == 1.0 || row.alpha == 0.0) {
        // The path's ends exactly, without the rounding of b + 1 * (x - b).
        const auto& end_point = row.alpha == 1.0 ? input_ : problem_.baseline;
        std::copy(end_point.begin(), end_point.end(), dest);
      } else {
        const float alpha = static_cast<float>(row.alpha);
        for (int64_t k = 0; k < n * hidden; ++k) {
          dest[k] = problem_.baseline[k] + alpha * (input_[k] - problem_.baseline[k]);
        }
      }
      const auto& suffix = problem_.suffixes[row.group];
      for (size_t s = 0; s < suffix.size(); ++s) {
        const float* e = embedding_row(problem_, suffix[s]);
        std::copy(e, e + hidden, dest + (n + s) * hidden);
      }
      std::fill(batch_mask + b * seq, batch_mask + b * seq + length(order[begin + b]), 1);
    }
    std::vector<NamedTensor> inputs;
    inputs.emplace_back(problem_.embeds_input,
                        TensorView{ort::kFloat32, batch_embeds, {batch, seq, hidden}, embeds_buffer_.pinned()});
    if (!problem_.mask_input.empty()) {
      inputs.emplace_back(problem_.mask_input, TensorView{ort::kInt64, batch_mask, {batch, seq}, mask_buffer_.pinned()});
    }
    for (size_t e = 0; e < problem_.extras.size(); ++e) {
      const auto& extra = problem_.extras[e];
      const size_t row_bytes = row_elements(extra.row_shape) * element_size(extra.element_type);
      auto* buffer = extra_buffers_[e].get<unsigned char>(batch * row_bytes);
      for (int64_t b = 0; b < batch; ++b) {
        std::memcpy(buffer + b * row_bytes, &extra.data[units[order[begin + b]].group * row_bytes], row_bytes);
      }
      std::vector<int64_t> shape{batch};
      shape.insert(shape.end(), extra.row_shape.begin(), extra.row_shape.end());
      inputs.emplace_back(extra.name, TensorView{extra.element_type, buffer, shape, extra_buffers_[e].pinned()});
    }
    std::vector<OutputTensor> outputs;
    try {
      outputs = session_.run(inputs, {problem_.score_output, problem_.gradient_output}, control_);
    } catch (const DeviceMemoryError&) {
      row_cap_ = shrink_after_memory_failure(batch);  // the same rows again, in smaller batches
      continue;
    }
    const auto& scores = outputs[0];
    const auto& grads = outputs[1];
    if (scores.element_type() != ort::kFloat32 || grads.element_type() != ort::kFloat32) {
      throw RuntimeBackendError("the gradient graph must return float32 scores and gradients");
    }
    // Columns per row: 1 for the per-target graph, K for the shared one.
    const int64_t columns = shared() && scores.shape().size() == 2 ? scores.shape()[1] : 1;
    const bool shapes_ok = shared() ? scores.shape() == std::vector<int64_t>{batch, columns} &&
                                          grads.shape() == std::vector<int64_t>{batch, columns, seq, hidden}
                                    : scores.element_count() == static_cast<size_t>(batch) &&
                                          grads.shape() == std::vector<int64_t>{batch, seq, hidden};
    if (!shapes_ok) {
      throw RuntimeBackendError(shared() ? "the shared gradient graph must return scores [batch, K] and gradients "
                                           "[batch, K, seq, hidden]"
                                         : "the gradient graph must return scores [batch, 1] and gradients "
                                           "[batch, seq, hidden]");
    }
    const auto* score_data = static_cast<const float*>(scores.data());
    const auto* grad_data = static_cast<const float*>(grads.data());
    int64_t consumed = 0;
    for (int64_t b = 0; b < batch; ++b) {
      const Unit& unit = units[order[begin + b]];
      for (size_t r : unit.rows) {
        const Row& row = rows[r];
        const int64_t slot = shared() ? problem_.target_slot[row.target] : 0;
        if (slot >= columns) {
          throw RuntimeBackendError("the shared gradient graph returned " + std::to_string(columns) +
                                    " score columns; target " + std::to_string(row.target) + " reads column " +
                                    std::to_string(slot));
        }
        const float score = score_data[b * columns + slot];
        const float* g = grad_data + (b * columns + slot) * seq * hidden;
        if (!std::isfinite(score)) {
          throw NumericalError("the model returned a non-finite score (" + non_finite_name(score) + ") for target " +
                               std::to_string(row.target) + " " + describe_point(row.alpha, row.sample));
        }
        const float* bad = std::find_if(g, g + n * hidden, [](float v) { return !std::isfinite(v); });
        if (bad != g + n * hidden) {
          const int64_t k = bad - g;
          throw NumericalError("the model returned a non-finite gradient (" + non_finite_name(*bad) + ") at token " +
                               std::to_string(k / hidden) + ", dimension " + std::to_string(k % hidden) +
                               ", for target " + std::to_string(row.target) + " " +
                               describe_point(row.alpha, row.sample));
        }
        consume(r, score, g);
        ++consumed;
      }
    }
    rows_run_ += consumed;
    if (progress_) progress_(rows_run_, std::max(rows_run_, rows_expected_));
    begin = end;
  }
}

AttributionResult integrated_gradients(GradientRunner& runner, const IntegratedGradientsParams& params) {
  const int64_t n = runner.n_positions();
  const int64_t hidden = runner.hidden_size();
  const int64_t n_targets = runner.n_targets();
  math::check_real("tolerance", params.tolerance, 0.0, false);
  math::check_real("relative_tolerance", params.relative_tolerance, 0.0, false);
  const bool adaptive = params.tolerance > 0 || params.relative_tolerance > 0;
  if (adaptive && params.max_steps < params.n_steps) {
    throw InvalidInputError("max_steps must be >= n_steps");
  }
  AttributionResult result;
  result.n_positions = n;
  result.n_targets = n_targets;
  result.matrix.assign(n * n_targets, 0.0);
  result.clean_scores.assign(n_targets, 0.0);
  result.delta.assign(n_targets, 0.0);
  result.steps.assign(n_targets, params.n_steps);
  std::vector<double>& baseline_scores = result.baseline_scores;
  baseline_scores.assign(n_targets, 0.0);
  const auto& x = runner.input_embeddings();
  const auto& base = runner.baseline();

  std::vector<int64_t> pending(n_targets);
  std::iota(pending.begin(), pending.end(), 0);
  bool first_round = true;
  int64_t steps = params.n_steps;
  while (!pending.empty()) {
    const math::Quadrature rule = math::quadrature(params.method, steps, [&] { runner.check_cancelled(); });
    std::vector<GradientRunner::Row> rows;
    std::vector<double> row_weight;
    for (int64_t t : pending) {
      if (first_round) {
        // f(input) and f(baseline) in the same sweep, for the convergence delta.
        rows.push_back({t, 1.0});
        row_weight.push_back(-1.0);
        rows.push_back({t, 0.0});
        row_weight.push_back(-2.0);
      }
      for (size_t k = 0; k < rule.alphas.size(); ++k) {
        rows.push_back({t, rule.alphas[k]});
        row_weight.push_back(rule.weights[k]);
      }
    }
    // Weighted gradient sums per pending target, [n, hidden] each.
    std::vector<std::vector<double>> path_gradient(n_targets);
    for (int64_t t : pending) path_gradient[t].assign(n * hidden, 0.0);
    runner.run(rows, [&](size_t r, double score, const float* grad) {
      const int64_t t = rows[r].target;
      if (row_weight[r] == -1.0) { result.clean_scores[t] = score; return; }
      if (row_weight[r] == -2.0) { baseline_scores[t] = score; return; }
      auto& acc = path_gradient[t];
      const double w = row_weight[r];
      for (int64_t k = 0; k < n * hidden; ++k) acc[k] += w * grad[k];
    });
    std::vector<int64_t> retry;
    std::vector<double> contribution(hidden);
    for (int64_t t : pending) {
      double total = 0.0;
      for (int64_t p = 0; p < n; ++p) {
        for (int64_t h = 0; h < hidden; ++h) {
          const int64_t k = p * hidden + h;
          contribution[h] = (static_cast<double>(x[k]) - base[k]) * path_gradient[t][k];
          total += contribution[h];
        }
        result.matrix[p * n_targets + t] = aggregate(contribution.data(), hidden, params.aggregation);
      }
      result.delta[t] = total - (result.clean_scores[t] - baseline_scores[t]);
      result.steps[t] = steps;
      const double allowed =
          params.tolerance + params.relative_tolerance * std::fabs(result.clean_scores[t] - baseline_scores[t]);
      if (adaptive && std::fabs(result.delta[t]) > allowed && steps * 2 <= params.max_steps) {
        retry.push_back(t);
      }
    }
    pending = retry;
    steps *= 2;
    first_round = false;
  }
  check_float32_range(result);
  result.rows_run = runner.rows_run();
  result.seconds = runner.seconds();
  return result;
}

namespace {

AttributionResult gradient_at_input(GradientRunner& runner, Aggregation aggregation, bool times_input) {
  const int64_t n = runner.n_positions();
  const int64_t hidden = runner.hidden_size();
  const int64_t n_targets = runner.n_targets();
  AttributionResult result;
  result.n_positions = n;
  result.n_targets = n_targets;
  result.matrix.assign(n * n_targets, 0.0);
  result.clean_scores.assign(n_targets, 0.0);
  std::vector<GradientRunner::Row> rows;
  for (int64_t t = 0; t < n_targets; ++t) rows.push_back({t, 1.0});
  const auto& x = runner.input_embeddings();
  std::vector<double> values(hidden);
  runner.run(rows, [&](size_t r, double score, const float* grad) {
    const int64_t t = rows[r].target;
    result.clean_scores[t] = score;
    for (int64_t p = 0; p < n; ++p) {
      for (int64_t h = 0; h < hidden; ++h) {
        const double g = grad[p * hidden + h];
        // Saliency sums |grad| (Captum's abs=True); the L2 option is the gradient's norm.
        values[h] = times_input ? g * x[p * hidden + h] : (aggregation == Aggregation::kSum ? std::fabs(g) : g);
      }
      result.matrix[p * n_targets + t] = aggregate(values.data(), hidden, aggregation);
    }
  });
  check_float32_range(result);
  result.rows_run = runner.rows_run();
  result.seconds = runner.seconds();
  return result;
}

}  // namespace

AttributionResult saliency(GradientRunner& runner, Aggregation aggregation) {
  return gradient_at_input(runner, aggregation, false);
}

AttributionResult input_x_gradient(GradientRunner& runner, Aggregation aggregation) {
  return gradient_at_input(runner, aggregation, true);
}

}  // namespace attribfast
