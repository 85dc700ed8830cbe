// Batched evaluation of a score graph over many variants of one input, shared by every method.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "attribfast/session.h"

namespace attribfast {

// A graph input that accompanies each row (the target specification): one "set" per segment.
struct ExtraInput {
  std::string name;
  int element_type = 0;
  std::vector<int64_t> row_shape;    // one row's shape, without the batch dimension
  std::vector<unsigned char> data;   // n_segments rows, row-major
};

// Prefix (key/value) reuse for causal LMs: a variant whose first change is at position p has the
// clean input's keys and values on [0, p). The prefix graph computes the clean input's cache once;
// a row then runs only its tokens from a boundary b <= p on (its changed tail and the target
// continuation) through the suffix graph, reading the cache's first b positions.
struct PrefixReuse {
  const Session* prefix = nullptr;  // input_ids [1, n], attention_mask -> present [1, n, width]
  const Session* suffix = nullptr;  // input_ids [b, s], attention_mask [b, s], past [p, width], extras -> scores
  std::string past_input = "past";
  std::string present_output = "present";
  std::string score_output = "suffix_scores";
  int64_t bucket = 0;      // boundaries are multiples of this (0: chosen so that a bucket fills a batch)
  int64_t min_prefix = 1;  // rows whose boundary is shorter run the full forward graph
  bool enabled() const { return prefix != nullptr && suffix != nullptr; }
};

// What to evaluate: the attributable ids, and the segments each variant is paired with. A causal
// LM continuation target is one segment (suffix = continuation ids); classifier classes or
// generated tokens share one segment whose output columns are several targets.
struct ScoreProblem {
  std::string ids_input = "input_ids";
  std::string mask_input = "attention_mask";  // empty: the graph takes no mask
  std::string score_output = "scores";
  int64_t pad_id = 0;                          // fills rows past their end (mask 0)
  std::vector<int64_t> ids;                    // the attributable input, positions [0, n)
  std::vector<std::vector<int64_t>> suffixes;  // per segment, appended after the input
  std::vector<ExtraInput> extras;              // per segment sets
  // Per segment: the target index of each score column, -1 for padding columns.
  std::vector<std::vector<int64_t>> column_targets;
  // Per segment: the last position any of its scores depends on (causal models), -1 if every
  // position matters. Variants that change only later positions reuse the clean scores.
  std::vector<int64_t> horizons;
  int64_t n_targets = 0;
  PrefixReuse prefix_reuse;  // off unless both sessions are set
};

// Rows grouped by their prefix boundary: the largest multiple of `bucket` that is <= the row's
// first change and <= n - 1 (the suffix keeps the last input token: the first target score reads
// its output). A boundary below min_prefix is 0: those rows run the full graph. Groups come in
// ascending boundary order; rows keep their order within a group.
struct BoundaryGroup {
  int64_t boundary = 0;
  std::vector<size_t> rows;
};
std::vector<BoundaryGroup> group_by_boundary(const std::vector<int64_t>& first_changed, int64_t n, int64_t bucket,
                                             int64_t min_prefix);

struct BatchPolicy {
  int64_t batch_size = 0;             // rows per run; 0 chooses from the memory budget
  int64_t memory_budget = 1LL << 30;  // bytes of activations a batch may take
  int64_t hidden_size = 768;          // model shape hints for the activation estimate
  int64_t num_heads = 12;
  int64_t max_batch_size = 256;
  // Tokens per batch at most (0: no limit). On CPUs, batches of a few thousand tokens keep the
  // activations in cache and run faster than the largest batch the memory allows.
  int64_t max_batch_tokens = 2048;
  // Use the prefix-reuse graphs when the problem has them (false: every row runs the whole sequence).
  bool reuse_prefix = true;
};

// "nan", "inf" or "-inf" (a NaN's sign is noise), for messages about non-finite model outputs.
std::string non_finite_name(double value);

// Rows per batch for sequences of seq_len tokens under the policy.
int64_t choose_batch_size(const BatchPolicy& policy, int64_t seq_len);
// Rows per batch of suffix rows of seq_len tokens after a prefix of past_len positions whose cache
// rows are cache_width floats wide: the expanded cache (past + new positions, per row) counts too,
// and the budget left after the shared clean cache (one row per position) is what the batch may take.
int64_t choose_suffix_batch_size(const BatchPolicy& policy, int64_t seq_len, int64_t past_len, int64_t cache_width);

// The row cap after a batch of `rows` did not fit the device's memory: half as many. The memory
// estimate behind choose_batch_size is a model of the graph, not a measurement, so the runners
// shrink instead of failing; one row that does not fit rethrows the DeviceMemoryError.
int64_t shrink_after_memory_failure(int64_t rows);

class ScoreEvaluator;

// One model row of a sweep: an input of one evaluator paired with one of its segments.
struct ScoreRow {
  ScoreEvaluator* owner;
  const std::vector<int64_t>* ids;  // the input (n ids)
  int64_t segment;
  int64_t length;  // tokens the row runs: from the pass's boundary to the end of its suffix
  double* out;     // the input's n_targets scores
};

// Runs rows in batches sorted by length. Rows of several evaluators (a pooled corpus sweep) share a
// batch when their evaluators have the same batch group: the same graph inputs and extra shapes.
class BatchRunner {
 public:
  BatchRunner(const Session& session, BatchPolicy policy, const RunControl* control, ProgressFn progress);
  // One graph's pass over rows: the full forward (session null: each owner's forward graph and score
  // output), or the suffix graph after a prefix of `boundary` positions.
  struct Pass {
    const Session* session = nullptr;
    const std::string* score_output = nullptr;
    int64_t boundary = 0;
    const TensorView* past = nullptr;  // [boundary, width] slice of the clean cache
    int64_t cache_width = 0;
  };
  void run(std::vector<ScoreRow>& rows, const Pass& pass);
  void expect_rows(int64_t rows) { rows_expected_ += rows; }
  int64_t rows_run() const { return rows_run_; }
  const BatchPolicy& policy() const { return policy_; }
  const RunControl* control() const { return control_; }

 private:
  const Session& session_;
  BatchPolicy policy_;
  const RunControl* control_;
  ProgressFn progress_;
  int64_t rows_run_ = 0;
  int64_t rows_expected_ = 0;
  HostBuffer ids_buffer_, mask_buffer_;
  std::vector<HostBuffer> extra_buffers_;
  int64_t row_cap_ = INT64_MAX;  // lowered for the rest of the sweep when a batch did not fit
};

class ScoreEvaluator {
 public:
  ScoreEvaluator(const Session& session, ScoreProblem problem, BatchPolicy policy, const RunControl* control,
                 ProgressFn progress);

  int64_t n_positions() const { return static_cast<int64_t>(problem_.ids.size()); }
  int64_t n_targets() const { return problem_.n_targets; }
  const std::vector<int64_t>& ids() const { return problem_.ids; }
  const ScoreProblem& problem() const { return problem_; }
  // Scores of the unperturbed input, [n_targets] (run with the first evaluate() if not yet known).
  const std::vector<double>& clean_scores();
  // Scores [variants.size(), n_targets] of variants (each n ids). Each distinct variant is run once.
  // segments (empty: all): per variant, the one segment to run it with (-1: all); the columns of
  // the segments a variant skips are NaN. Faithfulness curves need each variant for one target only.
  std::vector<double> evaluate(const std::vector<std::vector<int64_t>>& variants,
                               const std::vector<int64_t>& segments = {});

  // evaluate() in two halves, so that a pool runs the rows of many evaluators' requests together:
  // prepare() lists the rows (the variants must outlive the request), the caller runs request.rows
  // through a BatchRunner, finish() returns the scores as evaluate() does.
  struct Request {
    std::vector<const std::vector<int64_t>*> unique;  // distinct inputs; 0 is the clean one
    std::vector<int64_t> unique_of;                   // per variant
    std::vector<ScoreRow> rows;
    std::vector<int64_t> first_changed;               // per row
    std::vector<std::pair<int64_t, int64_t>> unseen;  // (input, segment) a causal model cannot tell from clean
    std::vector<double> unique_scores;
  };
  Request prepare(const std::vector<std::vector<int64_t>>& variants, const std::vector<int64_t>& segments = {});
  std::vector<double> finish(Request& request);
  // Rows of this evaluator that share batches (pooled sweeps); 0 alone.
  int64_t batch_group() const { return batch_group_; }
  void set_batch_group(int64_t group) { batch_group_ = group; }

  int64_t rows_run() const { return rows_run_; }
  // Token positions the model computed: batch x padded length of every run, prefix runs included.
  int64_t token_positions() const { return token_positions_; }
  void count_row(int64_t positions) {
    ++rows_run_;
    token_positions_ += positions;
  }
  double seconds() const;
  // Announce more work for the progress callback (rows expected in all).
  void expect_rows(int64_t rows) { runner_.expect_rows(rows); }

 private:
  void run_with_reuse(Request& request);
  void compute_clean_cache();

  const Session& session_;
  ScoreProblem problem_;
  BatchPolicy policy_;
  const RunControl* control_;
  BatchRunner runner_;
  std::vector<double> clean_;
  bool have_clean_ = false;
  int64_t rows_run_ = 0;
  int64_t batch_group_ = 0;
  std::chrono::steady_clock::time_point start_;
  int64_t token_positions_ = 0;
  // The clean input's cache [n, width] (prefix reuse), computed on first need.
  std::vector<unsigned char> cache_;
  int cache_type_ = 0;
  int64_t cache_width_ = 0;
  friend class BatchRunner;
};

}  // namespace attribfast
