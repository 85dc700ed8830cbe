// Gradient methods over a gradient graph: (embeddings, mask, target) -> (scores, d scores / d embeddings).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "attribfast/perturbation.h"

namespace attribfast {

// One row per (target, embedding point); every target is a segment with a single score column.
struct GradientProblem {
  std::string embeds_input = "inputs_embeds";
  std::string mask_input = "attention_mask";  // empty: the graph takes no mask
  std::string score_output = "scores";
  std::string gradient_output = "embeds_grad";
  std::vector<int64_t> ids;                    // the attributable input, positions [0, n)
  std::vector<std::vector<int64_t>> suffixes;  // per target, appended after the input
  std::vector<ExtraInput> extras;              // per target sets (one score column each)
  const float* embeddings = nullptr;           // [vocab_size, hidden_size], borrowed
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  std::vector<float> baseline;                 // [n, hidden_size]: the baseline embedding of each position, finite
};

enum class Aggregation { kSum, kL2 };

struct IntegratedGradientsParams {
  std::string method = "gausslegendre";
  int64_t n_steps = 50;     // up to math::kMaxQuadratureSteps
  // Adaptive when either is > 0: a target's steps double until
  // |delta| <= tolerance + relative_tolerance * |f(input) - f(baseline)|, or max_steps is reached.
  double tolerance = 0.0;
  double relative_tolerance = 0.0;
  int64_t max_steps = 512;  // ceiling of the adaptive mode
  Aggregation aggregation = Aggregation::kSum;
};

class GradientRunner {
 public:
  GradientRunner(const Session& session, GradientProblem problem, BatchPolicy policy, const RunControl* control,
                 ProgressFn progress);
  int64_t n_positions() const { return static_cast<int64_t>(problem_.ids.size()); }
  int64_t n_targets() const { return static_cast<int64_t>(problem_.suffixes.size()); }
  int64_t hidden_size() const { return problem_.hidden_size; }
  const std::vector<float>& input_embeddings() const { return input_; }
  const std::vector<float>& baseline() const { return problem_.baseline; }

  // A row: a target and the point alpha on the straight path baseline -> input.
  struct Row {
    int64_t target;
    double alpha;
  };
  // Runs the rows; for each, consume(row index, score, gradient [n, hidden] of the input positions).
  using Consumer = std::function<void(size_t, double, const float*)>;
  void run(const std::vector<Row>& rows, const Consumer& consume);
  int64_t rows_run() const { return rows_run_; }
  double seconds() const;
  void expect_rows(int64_t rows) { rows_expected_ += rows; }
  // Throws CancelledError once the run is cancelled; for long work between model runs.
  void check_cancelled() const;

 private:
  const Session& session_;
  GradientProblem problem_;
  BatchPolicy policy_;
  const RunControl* control_;
  ProgressFn progress_;
  std::vector<float> input_;  // [n, hidden] embeddings of the input ids
  int64_t rows_run_ = 0;
  int64_t rows_expected_ = 0;
  std::chrono::steady_clock::time_point start_;
  HostBuffer embeds_buffer_, mask_buffer_;
  std::vector<HostBuffer> extra_buffers_;
  int64_t row_cap_ = INT64_MAX;  // lowered for the rest of the sweep when a batch did not fit
};

AttributionResult integrated_gradients(GradientRunner& runner, const IntegratedGradientsParams& params);
AttributionResult saliency(GradientRunner& runner, Aggregation aggregation);
AttributionResult input_x_gradient(GradientRunner& runner, Aggregation aggregation);

}  // namespace attribfast
