// The gradient graph's rows in batches: one runner per input, and the batcher that runs the rows of
// one runner or of many (pooled corpus sweeps) together.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>
#include <sstream>
#include <string>
#include <tuple>

#include "attribfast/gradient.h"

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
    : session_(session), problem_(std::move(problem)), control_(control), start_(std::chrono::steady_clock::now()),
      batcher_(std::make_unique<GradientBatcher>(session, policy, control, std::move(progress))) {
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
  // Every suffix token is checked here, so that a bad id fails before any model run.
  for (const auto& suffix : problem_.suffixes) {
    for (int64_t id : suffix) embedding_row(problem_, id);
  }
  input_.resize(n * hidden);
  for (int64_t p = 0; p < n; ++p) {
    const float* row = embedding_row(problem_, problem_.ids[p]);
    std::copy(row, row + hidden, &input_[p * hidden]);
  }
}

GradientRunner::~GradientRunner() = default;

void GradientRunner::check_cancelled() const {
  if (control_) control_->throw_if_cancelled();
}

double GradientRunner::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void GradientRunner::expect_rows(int64_t rows) { batcher_->expect_rows(rows); }

void GradientRunner::plan_rows(int64_t rows) {
  batcher_->plan_rows(rows);
  planned_ = true;
}

void GradientRunner::run(const std::vector<Row>& rows, const Consumer& consume) {
  if (!planned_) expect_rows(static_cast<int64_t>(rows.size()));
  batcher_->run({GradientBatcher::Work{this, &rows, &consume}});
}

std::string GradientRunner::batch_key() const {
  std::string key = problem_.embeds_input + '\n' + problem_.mask_input + '\n' + problem_.score_output + '\n' +
                    problem_.gradient_output + '\n' + (shared() ? "shared" : "single") + '\n' +
                    std::to_string(problem_.hidden_size);
  for (const auto& extra : problem_.extras) {
    key += '\n' + extra.name + ':' + std::to_string(extra.element_type);
    for (int64_t d : extra.row_shape) key += ',' + std::to_string(d);
  }
  return key;
}

void GradientRunner::fill_row(int64_t group, double alpha, int64_t sample, float* dest) const {
  const int64_t n = n_positions();
  const int64_t hidden = problem_.hidden_size;
  if (sample >= 0) {
    const float* x = samples_.inputs + sample * n * hidden;
    const float* b = samples_.baselines + samples_.baseline_index[sample] * n * hidden;
    if (alpha == 1.0 || alpha == 0.0) {
      std::copy(alpha == 1.0 ? x : b, (alpha == 1.0 ? x : b) + n * hidden, dest);
    } else {
      const float a = static_cast<float>(alpha);
      for (int64_t k = 0; k < n * hidden; ++k) dest[k] = b[k] + a * (x[k] - b[k]);
    }
  } else if (alpha == 1.0 || alpha == 0.0) {
    // The path's ends exactly, without the rounding of b + 1 * (x - b).
    const auto& end_point = alpha == 1.0 ? input_ : problem_.baseline;
    std::copy(end_point.begin(), end_point.end(), dest);
  } else {
    const float a = static_cast<float>(alpha);
    for (int64_t k = 0; k < n * hidden; ++k) dest[k] = problem_.baseline[k] + a * (input_[k] - problem_.baseline[k]);
  }
  const auto& suffix = problem_.suffixes[group];
  for (size_t s = 0; s < suffix.size(); ++s) {
    const float* e = embedding_row(problem_, suffix[s]);
    std::copy(e, e + hidden, dest + (n + static_cast<int64_t>(s)) * hidden);
  }
}

GradientBatcher::GradientBatcher(const Session& session, BatchPolicy policy, const RunControl* control,
                                 ProgressFn progress)
    : session_(session), policy_(policy), control_(control), progress_(std::move(progress)), embeds_buffer_(session),
      mask_buffer_(session) {}

void GradientBatcher::run(const std::vector<Work>& work) {
  // A unit is one graph row: a row group of one runner at one point. Without a shared graph each
  // row is its own unit (its group is its target); with one, the rows of a group's targets at a
  // point share it.
  struct Unit {
    size_t work;
    int64_t group;
    double alpha;
    int64_t sample;
    int64_t key;
    int64_t length;
    std::vector<size_t> rows;
  };
  std::vector<Unit> units;
  std::map<std::string, int64_t> keys;
  for (size_t w = 0; w < work.size(); ++w) {
    const GradientRunner& runner = *work[w].runner;
    const auto& rows = *work[w].rows;
    const int64_t key = keys.emplace(runner.batch_key(), static_cast<int64_t>(keys.size())).first->second;
    std::map<std::tuple<int64_t, double, int64_t>, size_t> index;
    for (size_t r = 0; r < rows.size(); ++r) {
      const int64_t group = runner.shared() ? runner.problem_.target_group[rows[r].target] : rows[r].target;
      if (runner.shared()) {
        const auto [it, inserted] = index.emplace(std::make_tuple(group, rows[r].alpha, rows[r].sample), units.size());
        if (!inserted) {
          units[it->second].rows.push_back(r);
          continue;
        }
      }
      units.push_back({w, group, rows[r].alpha, rows[r].sample, key, runner.row_length(group), {r}});
    }
  }
  // Sorted by batch key, then length: a batch never mixes keys and pads little.
  std::vector<size_t> order(units.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::tie(units[a].key, units[a].length) < std::tie(units[b].key, units[b].length);
  });
  auto same_key = [&](size_t a, size_t b) { return units[order[a]].key == units[order[b]].key; };
  auto length = [&](size_t i) { return units[order[i]].length; };
  // A backward pass keeps the forward activations and adds the gradient of the embeddings.
  BatchPolicy policy = policy_;
  if (policy.batch_size <= 0) policy.memory_budget = std::max<int64_t>(1, policy.memory_budget / 3);
  size_t begin = 0;
  while (begin < order.size()) {
    if (control_) control_->throw_if_cancelled();
    size_t end = begin + 1;
    while (end < order.size() && same_key(begin, end) && static_cast<int64_t>(end - begin + 1) <= row_cap_ &&
           static_cast<int64_t>(end - begin + 1) <= choose_batch_size(policy, length(end))) {
      ++end;
    }
    // Rows of one length split into even batches (34 rows at a cap of 30: 17 + 17, not 30 + 4),
    // so no batch is a small remainder that pays a whole run's fixed costs.
    size_t same = end;
    while (same < order.size() && same_key(begin, same) && length(same) == length(begin)) ++same;
    if (same > end && length(end - 1) == length(begin)) {
      const size_t cap = end - begin;
      const size_t batches = (same - begin + cap - 1) / cap;
      end = begin + (same - begin + batches - 1) / batches;
    }
    const Unit& first = units[order[begin]];
    const GradientProblem& spec = work[first.work].runner->problem_;  // names and extras of the batch key
    const int64_t hidden = spec.hidden_size;
    const int64_t batch = static_cast<int64_t>(end - begin);
    const int64_t seq = length(end - 1);
    float* batch_embeds = embeds_buffer_.get<float>(batch * seq * hidden);
    int64_t* batch_mask = mask_buffer_.get<int64_t>(batch * seq);
    std::fill(batch_embeds, batch_embeds + batch * seq * hidden, 0.0f);
    std::fill(batch_mask, batch_mask + batch * seq, 0);
    for (int64_t b = 0; b < batch; ++b) {
      const Unit& unit = units[order[begin + b]];
      work[unit.work].runner->fill_row(unit.group, unit.alpha, unit.sample, batch_embeds + b * seq * hidden);
      std::fill(batch_mask + b * seq, batch_mask + b * seq + unit.length, 1);
    }
    std::vector<NamedTensor> inputs;
    inputs.emplace_back(spec.embeds_input,
                        TensorView{ort::kFloat32, batch_embeds, {batch, seq, hidden}, embeds_buffer_.pinned()});
    if (!spec.mask_input.empty()) {
      inputs.emplace_back(spec.mask_input, TensorView{ort::kInt64, batch_mask, {batch, seq}, mask_buffer_.pinned()});
    }
    while (extra_buffers_.size() < spec.extras.size()) extra_buffers_.emplace_back(session_);
    for (size_t e = 0; e < spec.extras.size(); ++e) {
      const auto& extra = spec.extras[e];
      const size_t row_bytes = row_elements(extra.row_shape) * element_size(extra.element_type);
      auto* buffer = extra_buffers_[e].get<unsigned char>(batch * row_bytes);
      for (int64_t b = 0; b < batch; ++b) {
        const Unit& unit = units[order[begin + b]];
        const auto& data = work[unit.work].runner->problem_.extras[e].data;
        std::memcpy(buffer + b * row_bytes, &data[unit.group * row_bytes], row_bytes);
      }
      std::vector<int64_t> shape{batch};
      shape.insert(shape.end(), extra.row_shape.begin(), extra.row_shape.end());
      inputs.emplace_back(extra.name, TensorView{extra.element_type, buffer, shape, extra_buffers_[e].pinned()});
    }
    std::vector<OutputTensor> outputs;
    try {
      outputs = session_.run(inputs, {spec.score_output, spec.gradient_output}, control_);
    } catch (const DeviceMemoryError&) {
      row_cap_ = shrink_after_memory_failure(batch);  // the same rows again, in smaller batches
      continue;
    }
    const auto& scores = outputs[0];
    const auto& grads = outputs[1];
    if (scores.element_type() != ort::kFloat32 || grads.element_type() != ort::kFloat32) {
      throw RuntimeBackendError("the gradient graph must return float32 scores and gradients");
    }
    const bool shared = !spec.target_group.empty();
    // Columns per row: 1 for the per-target graph, K for the shared one.
    const int64_t columns = shared && scores.shape().size() == 2 ? scores.shape()[1] : 1;
    const bool shapes_ok = shared ? scores.shape() == std::vector<int64_t>{batch, columns} &&
                                        grads.shape() == std::vector<int64_t>{batch, columns, seq, hidden}
                                  : scores.element_count() == static_cast<size_t>(batch) &&
                                        grads.shape() == std::vector<int64_t>{batch, seq, hidden};
    if (!shapes_ok) {
      throw RuntimeBackendError(shared ? "the shared gradient graph must return scores [batch, K] and gradients "
                                         "[batch, K, seq, hidden]"
                                       : "the gradient graph must return scores [batch, 1] and gradients "
                                         "[batch, seq, hidden]");
    }
    const auto* score_data = static_cast<const float*>(scores.data());
    const auto* grad_data = static_cast<const float*>(grads.data());
    int64_t consumed = 0;
    for (int64_t b = 0; b < batch; ++b) {
      const Unit& unit = units[order[begin + b]];
      GradientRunner& runner = *work[unit.work].runner;
      const int64_t n = runner.n_positions();
      for (size_t r : unit.rows) {
        const GradientRunner::Row& row = (*work[unit.work].rows)[r];
        const int64_t slot = shared ? runner.problem_.target_slot[row.target] : 0;
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
        (*work[unit.work].consume)(r, score, g);
        ++runner.rows_run_;
        ++consumed;
      }
    }
    rows_run_ += consumed;
    if (progress_) progress_(rows_run_, std::max(rows_run_, rows_expected_));
    begin = end;
  }
}

}  // namespace attribfast
