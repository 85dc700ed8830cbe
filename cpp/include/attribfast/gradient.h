// Gradient methods over a gradient graph: (embeddings, mask, target) -> (scores, d scores / d embeddings).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
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
  // A shared-forward graph (one forward for several targets) when set: suffixes and extras are then
  // per row group, target t is score column target_slot[t] of group target_group[t], and the
  // gradient output is [batch, K, seq, hidden]. Rows of one group at one point run as one row.
  std::vector<int64_t> target_group;
  std::vector<int64_t> target_slot;
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

class GradientBatcher;

class GradientRunner {
 public:
  GradientRunner(const Session& session, GradientProblem problem, BatchPolicy policy, const RunControl* control,
                 ProgressFn progress);
  ~GradientRunner();
  GradientRunner(const GradientRunner&) = delete;
  GradientRunner& operator=(const GradientRunner&) = delete;
  int64_t n_positions() const { return static_cast<int64_t>(problem_.ids.size()); }
  int64_t n_targets() const {
    return static_cast<int64_t>(shared() ? problem_.target_group.size() : problem_.suffixes.size());
  }
  bool shared() const { return !problem_.target_group.empty(); }
  int64_t hidden_size() const { return problem_.hidden_size; }
  const GradientProblem& problem() const { return problem_; }
  const std::vector<float>& input_embeddings() const { return input_; }
  const std::vector<float>& baseline() const { return problem_.baseline; }

  // A row: a target and the point alpha on the straight path baseline -> input. With sample >= 0,
  // the path runs from that sample's baseline to its noisy input instead (set_samples).
  struct Row {
    int64_t target;
    double alpha;
    int64_t sample = -1;
  };
  // Explicit path ends, borrowed: inputs [n_samples, n, hidden] and baselines [k, n, hidden], with
  // baseline_index[s] naming sample s's baseline.
  struct Samples {
    const float* inputs = nullptr;
    const float* baselines = nullptr;
    const int64_t* baseline_index = nullptr;
  };
  void set_samples(Samples samples) { samples_ = samples; }
  // Runs the rows; for each, consume(row index, score, gradient [n, hidden] of the input positions).
  using Consumer = std::function<void(size_t, double, const float*)>;
  void run(const std::vector<Row>& rows, const Consumer& consume);
  int64_t rows_run() const { return rows_run_; }
  double seconds() const;
  void expect_rows(int64_t rows);
  // The total rows of a run split over several run() calls, for progress; run() then adds none.
  void plan_rows(int64_t rows);
  // Throws CancelledError once the run is cancelled; for long work between model runs.
  void check_cancelled() const;

  // What runners must share for their rows to run in one batch: input and output names, the
  // shared graph's use, the hidden size and each extra input's name, type and row shape.
  std::string batch_key() const;
  // Tokens a row of target group `group` runs: the input and that group's suffix.
  int64_t row_length(int64_t group) const {
    return n_positions() + static_cast<int64_t>(problem_.suffixes[group].size());
  }
  // Writes the embeddings of a graph row (group, point) into dest [row_length(group), hidden].
  void fill_row(int64_t group, double alpha, int64_t sample, float* dest) const;

 private:
  friend class GradientBatcher;
  const Session& session_;
  GradientProblem problem_;
  const RunControl* control_;
  std::vector<float> input_;  // [n, hidden] embeddings of the input ids
  int64_t rows_run_ = 0;
  std::chrono::steady_clock::time_point start_;
  Samples samples_;
  bool planned_ = false;
  std::unique_ptr<GradientBatcher> batcher_;  // runs this runner's rows when it runs alone
};

// Runs the rows of one runner, or of many (a pooled corpus sweep: one runner per text), in batches
// sorted by length. Rows of runners with the same batch_key share batches; a shorter row is padded
// at its end with zero embeddings and mask 0.
class GradientBatcher {
 public:
  GradientBatcher(const Session& session, BatchPolicy policy, const RunControl* control, ProgressFn progress);
  struct Work {
    GradientRunner* runner;
    const std::vector<GradientRunner::Row>* rows;
    const GradientRunner::Consumer* consume;
  };
  void run(const std::vector<Work>& work);
  void expect_rows(int64_t rows) { rows_expected_ += rows; }
  void plan_rows(int64_t rows) { rows_expected_ = rows; }

 private:
  const Session& session_;
  BatchPolicy policy_;
  const RunControl* control_;
  ProgressFn progress_;
  int64_t rows_run_ = 0;
  int64_t rows_expected_ = 0;
  HostBuffer embeds_buffer_, mask_buffer_;
  std::vector<HostBuffer> extra_buffers_;
  int64_t row_cap_ = INT64_MAX;  // lowered for the rest of the sweep when a batch did not fit
};

// A gradient method as rounds of rows: a round's rows run (alone, or pooled with other texts'
// rounds), their gradients are consumed, and the next round may depend on them (adaptive IG).
class GradientSweep {
 public:
  virtual ~GradientSweep() = default;
  // The next round's rows; empty once the method is done. The rows stay valid until the next call.
  virtual const std::vector<GradientRunner::Row>& next_rows() = 0;
  virtual void consume(size_t row, double score, const float* gradient) = 0;
  virtual AttributionResult finish() = 0;
  // Rows of all rounds when known from the start (progress totals), else 0.
  virtual int64_t planned_rows() const { return 0; }
};

// Runs a sweep's rounds on its own runner.
AttributionResult run_sweep(GradientRunner& runner, GradientSweep& sweep);

AttributionResult integrated_gradients(GradientRunner& runner, const IntegratedGradientsParams& params);

// Captum's NoiseTunnel types: the mean of the sample attributions, the mean of their squares, or
// their variance (mean of squares minus the squared mean), per embedding element.
enum class NoiseTunnelType { kSmoothGrad, kSmoothGradSq, kVarGrad };

// Gradient methods at sampled points (SmoothGrad / VarGrad over saliency, input x gradient and
// integrated gradients; GradientSHAP). Sample s has the noisy input x_s = x + noise[s] and the
// baseline b_s = baselines[baseline_index[s]]; its attribution per embedding element is
//   |G_s| (absolute) or (x_s - b_s) * G_s,  G_s = sum_k weights[k] * grad(b_s + alphas[s, k] (x_s - b_s)).
// The samples' attributions are combined by nt_type, then aggregated over the hidden dimension.
// Standard errors (std / sqrt(n_samples) across samples, infinite for one sample) come with the
// means that aggregate linearly: smoothgrad and smoothgrad_sq under "sum".
struct SampledGradientParams {
  std::vector<float> noise;             // [n_samples, n, hidden]
  std::vector<float> baselines;         // [k, n, hidden], k >= 1
  std::vector<int64_t> baseline_index;  // [n_samples], in [0, k)
  std::vector<double> alphas;           // [n_samples, K]
  std::vector<double> weights;          // [K]
  bool absolute = false;
  NoiseTunnelType nt_type = NoiseTunnelType::kSmoothGrad;
  Aggregation aggregation = Aggregation::kSum;
};

AttributionResult sampled_gradients(GradientRunner& runner, const SampledGradientParams& params);
AttributionResult saliency(GradientRunner& runner, Aggregation aggregation);
AttributionResult input_x_gradient(GradientRunner& runner, Aggregation aggregation);

// The methods above as sweeps (the runner must outlive the sweep), for pooled corpus runs.
std::unique_ptr<GradientSweep> integrated_gradients_sweep(GradientRunner& runner,
                                                          const IntegratedGradientsParams& params);
std::unique_ptr<GradientSweep> gradient_at_input_sweep(GradientRunner& runner, Aggregation aggregation,
                                                       bool times_input);
std::unique_ptr<GradientSweep> sampled_gradients_sweep(GradientRunner& runner, SampledGradientParams params);

}  // namespace attribfast
