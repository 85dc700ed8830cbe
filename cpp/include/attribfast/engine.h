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
};

struct BatchPolicy {
  int64_t batch_size = 0;             // rows per run; 0 chooses from the memory budget
  int64_t memory_budget = 1LL << 30;  // bytes of activations a batch may take
  int64_t hidden_size = 768;          // model shape hints for the activation estimate
  int64_t num_heads = 12;
  int64_t max_batch_size = 256;
  // Tokens per batch at most (0: no limit). On CPUs, batches of a few thousand tokens keep the
  // activations in cache and run faster than the largest batch the memory allows.
  int64_t max_batch_tokens = 2048;
};

// "nan", "inf" or "-inf" (a NaN's sign is noise), for messages about non-finite model outputs.
std::string non_finite_name(double value);

// Rows per batch for sequences of seq_len tokens under the policy.
int64_t choose_batch_size(const BatchPolicy& policy, int64_t seq_len);

// The row cap after a batch of `rows` did not fit the device's memory: half as many. The memory
// estimate behind choose_batch_size is a model of the graph, not a measurement, so the runners
// shrink instead of failing; one row that does not fit rethrows the DeviceMemoryError.
int64_t shrink_after_memory_failure(int64_t rows);

class ScoreEvaluator {
 public:
  ScoreEvaluator(const Session& session, ScoreProblem problem, BatchPolicy policy, const RunControl* control,
                 ProgressFn progress);

  int64_t n_positions() const { return static_cast<int64_t>(problem_.ids.size()); }
  int64_t n_targets() const { return problem_.n_targets; }
  const std::vector<int64_t>& ids() const { return problem_.ids; }
  // Scores of the unperturbed input, [n_targets] (run with the first evaluate() if not yet known).
  const std::vector<double>& clean_scores();
  // Scores [variants.size(), n_targets] of variants (each n ids). Each distinct variant is run once.
  std::vector<double> evaluate(const std::vector<std::vector<int64_t>>& variants);
  int64_t rows_run() const { return rows_run_; }
  double seconds() const;
  // Announce more work for the progress callback (rows expected in all).
  void expect_rows(int64_t rows) { rows_expected_ += rows; }

 private:
  struct Row {
    int64_t variant;
    int64_t segment;
    int64_t length;
  };
  void run_rows(const std::vector<const std::vector<int64_t>*>& variants, std::vector<Row>& rows,
                std::vector<double>& out);

  const Session& session_;
  ScoreProblem problem_;
  BatchPolicy policy_;
  const RunControl* control_;
  ProgressFn progress_;
  std::vector<double> clean_;
  bool have_clean_ = false;
  int64_t rows_run_ = 0;
  int64_t rows_expected_ = 0;
  std::chrono::steady_clock::time_point start_;
  HostBuffer ids_buffer_, mask_buffer_;
  std::vector<HostBuffer> extra_buffers_;
  int64_t row_cap_ = INT64_MAX;  // lowered for the rest of the sweep when a batch did not fit
};

}  // namespace attribfast
