#include "attribfast/engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <unordered_map>

namespace attribfast {

namespace {

struct IdsHash {
  size_t operator()(const std::vector<int64_t>* v) const {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int64_t x : *v) h = (h ^ static_cast<uint64_t>(x)) * 0x100000001b3ULL;
    return static_cast<size_t>(h);
  }
};
struct IdsEqual {
  bool operator()(const std::vector<int64_t>* a, const std::vector<int64_t>* b) const { return *a == *b; }
};

int64_t row_elements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// Which input a row was: "the unperturbed input", or "the input with tokens 0 to 2, 5 replaced".
// Names at most kShown runs of changed positions, so the message stays one line.
std::string describe_variant(const std::vector<int64_t>& variant, const std::vector<int64_t>& clean) {
  constexpr int kShown = 8;
  std::string runs;
  int shown = 0;
  int64_t changed = 0;
  const auto n = static_cast<int64_t>(clean.size());
  for (int64_t p = 0; p < n; ++p) {
    if (variant[p] == clean[p]) continue;
    int64_t last = p;
    while (last + 1 < n && variant[last + 1] != clean[last + 1]) ++last;
    changed += last - p + 1;
    if (shown++ < kShown) {
      runs += (runs.empty() ? "" : ", ") + std::to_string(p) + (last > p ? " to " + std::to_string(last) : "");
    } else if (shown == kShown + 1) {
      runs += ", ...";
    }
    p = last;
  }
  if (changed == 0) return "the unperturbed input";
  return std::string("the input with token") + (changed > 1 ? "s " : " ") + runs + " replaced";
}

}  // namespace

std::string non_finite_name(double value) {
  if (std::isnan(value)) return "nan";
  return value > 0 ? "inf" : "-inf";
}

int64_t choose_batch_size(const BatchPolicy& policy, int64_t seq_len) {
  if (policy.batch_size > 0) return policy.batch_size;
  // Peak activations of one row: a few hidden-sized tensors per token (the MLP's 4x expansion
  // dominates) plus the attention probabilities, float32.
  const int64_t per_token = 4 * (16 * policy.hidden_size + 2 * policy.num_heads * seq_len);
  const int64_t per_row = std::max<int64_t>(1, per_token * std::max<int64_t>(seq_len, 1));
  int64_t rows = std::min(policy.memory_budget / per_row, policy.max_batch_size);
  if (policy.max_batch_tokens > 0) rows = std::min(rows, policy.max_batch_tokens / std::max<int64_t>(seq_len, 1));
  return std::max<int64_t>(rows, 1);
}

int64_t choose_suffix_batch_size(const BatchPolicy& policy, int64_t seq_len, int64_t past_len, int64_t cache_width) {
  int64_t rows = choose_batch_size(policy, seq_len);
  if (policy.batch_size > 0) return rows;
  // Each row attends over past + new positions, and the graph holds the cache expanded per row
  // (float32 keys and values of every layer) besides its own activations.
  const int64_t total = std::max<int64_t>(past_len + seq_len, 1);
  const int64_t per_token = 4 * (16 * policy.hidden_size + 2 * policy.num_heads * total);
  const int64_t per_row = std::max<int64_t>(1, per_token * std::max<int64_t>(seq_len, 1) + 4 * cache_width * total);
  // The clean cache the rows share stays resident beside the batch: one float32 row per position
  // (past + seq bounds the input's positions).
  const int64_t left = std::max<int64_t>(policy.memory_budget - 4 * cache_width * total, 0);
  rows = std::min(rows, left / per_row);
  return std::max<int64_t>(rows, 1);
}

std::vector<BoundaryGroup> group_by_boundary(const std::vector<int64_t>& first_changed, int64_t n, int64_t bucket,
                                             int64_t min_prefix) {
  if (n < 1) throw InvalidInputError("the input has no tokens");
  if (bucket < 1) throw InvalidInputError("the prefix bucket must be >= 1");
  std::vector<BoundaryGroup> groups;
  std::unordered_map<int64_t, size_t> group_of;
  std::vector<int64_t> boundaries;
  for (size_t r = 0; r < first_changed.size(); ++r) {
    const int64_t change = std::clamp<int64_t>(first_changed[r], 0, n - 1);
    int64_t boundary = change / bucket * bucket;
    if (boundary < std::max<int64_t>(min_prefix, 1)) boundary = 0;
    auto [it, inserted] = group_of.emplace(boundary, groups.size());
    if (inserted) groups.push_back({boundary, {}});
    groups[it->second].rows.push_back(r);
  }
  std::sort(groups.begin(), groups.end(),
            [](const BoundaryGroup& a, const BoundaryGroup& b) { return a.boundary < b.boundary; });
  return groups;
}

int64_t shrink_after_memory_failure(int64_t rows) {
  if (rows <= 1) throw;  // rethrows the DeviceMemoryError being handled
  return rows / 2;
}

ScoreEvaluator::ScoreEvaluator(const Session& session, ScoreProblem problem, BatchPolicy policy,
                               const RunControl* control, ProgressFn progress)
    : session_(session), problem_(std::move(problem)), policy_(policy), control_(control),
      runner_(session, policy, control, std::move(progress)), start_(std::chrono::steady_clock::now()) {
  const auto n_segments = problem_.suffixes.size();
  if (problem_.ids.empty()) throw InvalidInputError("the input has no tokens");
  if (n_segments == 0) throw InvalidInputError("at least one target segment is needed");
  if (problem_.column_targets.size() != n_segments || problem_.horizons.size() != n_segments) {
    throw InvalidInputError("column_targets and horizons need one entry per segment");
  }
  if (policy_.memory_budget <= 0) throw InvalidInputError("memory_budget must be positive");
  const size_t n_columns = problem_.column_targets[0].size();
  for (const auto& columns : problem_.column_targets) {
    if (columns.size() != n_columns) throw InvalidInputError("every segment must have the same number of score columns");
    for (int64_t t : columns) {
      if (t < -1 || t >= problem_.n_targets) throw InvalidInputError("a score column names a target out of range");
    }
  }
  if (session_.find_input(problem_.ids_input) == nullptr) {
    throw InvalidInputError("the model has no ids input '" + problem_.ids_input + "'");
  }
  if (!problem_.mask_input.empty() && session_.find_input(problem_.mask_input) == nullptr) {
    throw InvalidInputError("the model has no mask input '" + problem_.mask_input + "'");
  }
  const TensorInfo* score = session_.find_output(problem_.score_output);
  if (score == nullptr) throw InvalidInputError("the model has no score output '" + problem_.score_output + "'");
  if (score->element_type != ort::kFloat32 && score->element_type != ort::kFloat64) {
    throw InvalidInputError("the score output '" + problem_.score_output + "' must be float32 or float64");
  }
  for (const auto& extra : problem_.extras) {
    const size_t expected = n_segments * row_elements(extra.row_shape) * element_size(extra.element_type);
    if (extra.data.size() != expected) {
      throw InvalidInputError("extra input '" + extra.name + "' needs one row per segment");
    }
  }
  const PrefixReuse& reuse = problem_.prefix_reuse;
  if ((reuse.prefix == nullptr) != (reuse.suffix == nullptr)) {
    throw InvalidInputError("prefix reuse needs both the prefix and the suffix graph");
  }
  if (reuse.enabled()) {
    if (reuse.prefix->find_output(reuse.present_output) == nullptr) {
      throw InvalidInputError("the prefix graph has no output '" + reuse.present_output + "'");
    }
    if (reuse.suffix->find_input(reuse.past_input) == nullptr) {
      throw InvalidInputError("the suffix graph has no input '" + reuse.past_input + "'");
    }
    if (reuse.suffix->find_output(reuse.score_output) == nullptr) {
      throw InvalidInputError("the suffix graph has no score output '" + reuse.score_output + "'");
    }
    if (reuse.bucket < 0 || reuse.min_prefix < 1) throw InvalidInputError("bad prefix bucket or min_prefix");
  }
}

BatchRunner::BatchRunner(const Session& session, BatchPolicy policy, const RunControl* control, ProgressFn progress)
    : session_(session), policy_(policy), control_(control), progress_(std::move(progress)), ids_buffer_(session),
      mask_buffer_(session) {}

double ScoreEvaluator::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

const std::vector<double>& ScoreEvaluator::clean_scores() {
  if (!have_clean_) evaluate({});
  return clean_;
}

std::vector<double> ScoreEvaluator::evaluate(const std::vector<std::vector<int64_t>>& variants,
                                             const std::vector<int64_t>& segments) {
  Request request = prepare(variants, segments);
  runner_.expect_rows(static_cast<int64_t>(request.rows.size()));
  if (problem_.prefix_reuse.enabled() && policy_.reuse_prefix) {
    run_with_reuse(request);
  } else {
    runner_.run(request.rows, BatchRunner::Pass{});
  }
  return finish(request);
}

ScoreEvaluator::Request ScoreEvaluator::prepare(const std::vector<std::vector<int64_t>>& variants,
                                                const std::vector<int64_t>& segments) {
  const int64_t n = n_positions();
  const int64_t n_targets = problem_.n_targets;
  const auto n_segments = static_cast<int64_t>(problem_.suffixes.size());
  if (!segments.empty() && segments.size() != variants.size()) {
    throw InvalidInputError("segments needs one entry per variant");
  }
  for (int64_t s : segments) {
    if (s < -1 || s >= n_segments) throw InvalidInputError("a variant's segment is out of range");
  }
  // Distinct inputs, each evaluated once. Entry 0 is the clean input: run in the same batches as the
  // first variants, then remembered.
  Request request;
  std::unordered_map<const std::vector<int64_t>*, int64_t, IdsHash, IdsEqual> index_of;
  request.unique.push_back(&problem_.ids);
  index_of.emplace(&problem_.ids, 0);
  request.unique_of.resize(variants.size());
  for (size_t v = 0; v < variants.size(); ++v) {
    if (static_cast<int64_t>(variants[v].size()) != n) throw InvalidInputError("a variant has the wrong length");
    auto [it, inserted] = index_of.emplace(&variants[v], static_cast<int64_t>(request.unique.size()));
    if (inserted) request.unique.push_back(&variants[v]);
    request.unique_of[v] = it->second;
  }
  // Which segments each distinct input runs with (the clean input: all, for the clean scores).
  std::vector<std::vector<char>> wanted(request.unique.size(),
                                        std::vector<char>(n_segments, segments.empty() ? 1 : 0));
  std::fill(wanted[0].begin(), wanted[0].end(), 1);
  for (size_t v = 0; v < segments.size(); ++v) {
    auto& flags = wanted[request.unique_of[v]];
    if (segments[v] < 0) std::fill(flags.begin(), flags.end(), 1);
    else flags[segments[v]] = 1;
  }
  // Sized once: rows point into it. The columns of segments a variant skips stay NaN.
  request.unique_scores.assign(request.unique.size() * n_targets, std::numeric_limits<double>::quiet_NaN());
  for (size_t u = 0; u < request.unique.size(); ++u) {
    if (u == 0 && have_clean_) continue;
    const auto& ids = *request.unique[u];
    int64_t first_changed = 0;
    while (first_changed < n && ids[first_changed] == problem_.ids[first_changed]) ++first_changed;
    for (size_t s = 0; s < problem_.suffixes.size(); ++s) {
      if (!wanted[u][s]) continue;
      const int64_t horizon = problem_.horizons[s];
      if (u > 0 && horizon >= 0 && first_changed > horizon) {
        request.unseen.emplace_back(static_cast<int64_t>(u), static_cast<int64_t>(s));
        continue;
      }
      request.rows.push_back({this, &ids, static_cast<int64_t>(s),
                              n + static_cast<int64_t>(problem_.suffixes[s].size()),
                              &request.unique_scores[u * n_targets]});
      request.first_changed.push_back(first_changed);
    }
  }
  return request;
}

std::vector<double> ScoreEvaluator::finish(Request& request) {
  const int64_t n_targets = problem_.n_targets;
  auto& unique_scores = request.unique_scores;
  if (!have_clean_) {
    clean_.assign(unique_scores.begin(), unique_scores.begin() + n_targets);
    have_clean_ = true;
  }
  std::copy(clean_.begin(), clean_.end(), unique_scores.begin());
  for (const auto& [u, s] : request.unseen) {
    for (int64_t t : problem_.column_targets[s]) if (t >= 0) unique_scores[u * n_targets + t] = clean_[t];
  }
  std::vector<double> scores(request.unique_of.size() * n_targets);
  for (size_t v = 0; v < request.unique_of.size(); ++v) {
    const double* src = &unique_scores[request.unique_of[v] * n_targets];
    std::copy(src, src + n_targets, &scores[v * n_targets]);
  }
  return scores;
}

void ScoreEvaluator::compute_clean_cache() {
  if (!cache_.empty()) return;
  const PrefixReuse& reuse = problem_.prefix_reuse;
  const int64_t n = n_positions();
  std::vector<int64_t> ids = problem_.ids, mask(n, 1);
  std::vector<NamedTensor> inputs;
  inputs.emplace_back(problem_.ids_input, TensorView{ort::kInt64, ids.data(), {1, n}, false});
  inputs.emplace_back(problem_.mask_input, TensorView{ort::kInt64, mask.data(), {1, n}, false});
  auto outputs = reuse.prefix->run(inputs, {reuse.present_output}, control_);
  const auto& present = outputs[0];
  if (present.shape().size() != 3 || present.shape()[0] != 1 || present.shape()[1] != n || present.shape()[2] < 1) {
    throw RuntimeBackendError("the prefix graph's output must have shape [1, " + std::to_string(n) + ", width]");
  }
  cache_type_ = present.element_type();
  cache_width_ = present.shape()[2];
  const auto* bytes = static_cast<const unsigned char*>(present.data());
  cache_.assign(bytes, bytes + present.byte_size());
  token_positions_ += n;
}

void ScoreEvaluator::run_with_reuse(Request& request) {
  const PrefixReuse& reuse = problem_.prefix_reuse;
  const int64_t n = n_positions();
  auto& rows = request.rows;
  int64_t bucket = reuse.bucket;
  if (bucket == 0 && !rows.empty()) {
    // Buckets wide enough that each holds about a batch of rows: narrower ones recompute less but
    // run batches too small to keep the cores busy.
    int64_t longest_suffix = 0;
    for (const auto& suffix : problem_.suffixes) longest_suffix = std::max<int64_t>(longest_suffix, suffix.size());
    const int64_t per_batch = choose_batch_size(policy_, n / 2 + 1 + longest_suffix);
    const int64_t count = static_cast<int64_t>(rows.size());
    bucket = std::clamp<int64_t>((per_batch * n + count - 1) / count, 1, n);
  }
  const auto groups = group_by_boundary(request.first_changed, n, std::max<int64_t>(bucket, 1), reuse.min_prefix);
  for (const auto& group : groups) {
    std::vector<ScoreRow> group_rows;
    group_rows.reserve(group.rows.size());
    for (size_t r : group.rows) {
      group_rows.push_back(rows[r]);
      group_rows.back().length -= group.boundary;
    }
    if (group.boundary == 0) {
      runner_.run(group_rows, BatchRunner::Pass{});
      continue;
    }
    compute_clean_cache();
    // The clean cache is sequence-major: its first `boundary` rows are the prefix's cache, in place.
    const TensorView past{cache_type_, cache_.data(), {group.boundary, cache_width_}, false};
    runner_.run(group_rows, BatchRunner::Pass{reuse.suffix, &reuse.score_output, group.boundary, &past, cache_width_});
  }
}

void BatchRunner::run(std::vector<ScoreRow>& rows, const Pass& pass) {
  // Bucket by length so that a batch pads little; rows of different batch groups never share a batch.
  std::stable_sort(rows.begin(), rows.end(), [](const ScoreRow& a, const ScoreRow& b) {
    const int64_t ga = a.owner->batch_group(), gb = b.owner->batch_group();
    return ga != gb ? ga < gb : a.length < b.length;
  });
  const int64_t start = pass.boundary;  // rows hold the variant's ids from here on
  auto fits = [&](int64_t length) {
    return pass.past == nullptr ? choose_batch_size(policy_, length)
                                : choose_suffix_batch_size(policy_, length, pass.boundary, pass.cache_width);
  };
  size_t begin = 0;
  while (begin < rows.size()) {
    if (control_) control_->throw_if_cancelled();
    // Grow the batch while the longest row (the last, rows are sorted) still fits the budget.
    const ScoreEvaluator& first = *rows[begin].owner;
    const ScoreProblem& problem = first.problem_;
    size_t end = begin + 1;
    while (end < rows.size() && rows[end].owner->batch_group() == first.batch_group() &&
           static_cast<int64_t>(end - begin + 1) <= row_cap_ &&
           static_cast<int64_t>(end - begin + 1) <= fits(rows[end].length)) {
      ++end;
    }
    const int64_t batch = static_cast<int64_t>(end - begin);
    const int64_t seq = rows[end - 1].length;
    int64_t* batch_ids = ids_buffer_.get<int64_t>(batch * seq);
    int64_t* batch_mask = mask_buffer_.get<int64_t>(batch * seq);
    std::fill(batch_mask, batch_mask + batch * seq, 0);
    for (int64_t b = 0; b < batch; ++b) {
      const ScoreRow& row = rows[begin + b];
      const ScoreProblem& own = row.owner->problem_;
      const auto& ids = *row.ids;
      const auto& suffix = own.suffixes[row.segment];
      int64_t* dest = batch_ids + b * seq;
      std::copy(ids.begin() + start, ids.end(), dest);
      std::copy(suffix.begin(), suffix.end(), dest + ids.size() - start);
      std::fill(dest + row.length, dest + seq, own.pad_id);
      std::fill(batch_mask + b * seq, batch_mask + b * seq + row.length, 1);
    }
    std::vector<NamedTensor> inputs;
    inputs.emplace_back(problem.ids_input, TensorView{ort::kInt64, batch_ids, {batch, seq}, ids_buffer_.pinned()});
    if (!problem.mask_input.empty()) {
      inputs.emplace_back(problem.mask_input,
                          TensorView{ort::kInt64, batch_mask, {batch, seq}, mask_buffer_.pinned()});
    }
    while (extra_buffers_.size() < problem.extras.size()) extra_buffers_.emplace_back(session_);
    for (size_t e = 0; e < problem.extras.size(); ++e) {
      // Rows of one batch group have extras of the same names, types and row shapes.
      const auto& extra = problem.extras[e];
      const size_t row_bytes = row_elements(extra.row_shape) * element_size(extra.element_type);
      auto* buffer = extra_buffers_[e].get<unsigned char>(batch * row_bytes);
      for (int64_t b = 0; b < batch; ++b) {
        const ScoreRow& row = rows[begin + b];
        std::memcpy(buffer + b * row_bytes, &row.owner->problem_.extras[e].data[row.segment * row_bytes], row_bytes);
      }
      std::vector<int64_t> shape{batch};
      shape.insert(shape.end(), extra.row_shape.begin(), extra.row_shape.end());
      inputs.emplace_back(extra.name, TensorView{extra.element_type, buffer, shape, extra_buffers_[e].pinned()});
    }
    if (pass.past != nullptr) inputs.emplace_back(problem.prefix_reuse.past_input, *pass.past);
    const Session& session = pass.session != nullptr ? *pass.session : first.session_;
    const std::string& score_output = pass.session != nullptr ? *pass.score_output : problem.score_output;
    std::vector<OutputTensor> outputs;
    try {
      outputs = session.run(inputs, {score_output}, control_);
    } catch (const DeviceMemoryError&) {
      row_cap_ = shrink_after_memory_failure(batch);  // the same rows again, in smaller batches
      continue;
    }
    const auto& scores = outputs[0];
    const size_t n_columns = problem.column_targets[0].size();
    if (scores.shape().size() != 2 || scores.shape()[0] != batch || static_cast<size_t>(scores.shape()[1]) != n_columns) {
      throw RuntimeBackendError("the score output must have shape [batch, " + std::to_string(n_columns) + "]");
    }
    for (int64_t b = 0; b < batch; ++b) {
      const ScoreRow& row = rows[begin + b];
      const ScoreProblem& own = row.owner->problem_;
      const auto& columns = own.column_targets[row.segment];
      for (size_t c = 0; c < n_columns; ++c) {
        if (columns[c] < 0) continue;
        const size_t k = b * n_columns + c;
        const double value = scores.element_type() == ort::kFloat32 ? static_cast<const float*>(scores.data())[k]
                                                                     : static_cast<const double*>(scores.data())[k];
        if (!std::isfinite(value)) {
          throw NumericalError("the model returned a non-finite score (" + non_finite_name(value) + ") for target " +
                               std::to_string(columns[c]) + " on " + describe_variant(*row.ids, own.ids));
        }
        row.out[columns[c]] = value;
      }
      row.owner->count_row(seq);
    }
    rows_run_ += batch;
    if (progress_) progress_(rows_run_, std::max(rows_run_, rows_expected_));
    begin = end;
  }
}

}  // namespace attribfast
