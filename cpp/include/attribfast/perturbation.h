// Perturbation methods: each builds variants of the input, evaluates them through a ScoreEvaluator
// (one sweep serves every target) and reduces the scores to a [n_positions, n_targets] matrix.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "attribfast/engine.h"

namespace attribfast {

struct AttributionResult {
  int64_t n_positions = 0;
  int64_t n_targets = 0;
  std::vector<double> matrix;          // [n_positions, n_targets]
  std::vector<double> standard_error;  // same shape for sampling methods, else empty
  std::vector<double> clean_scores;    // [n_targets]
  int64_t rows_run = 0;                // model rows evaluated
  int64_t token_positions = 0;         // token positions those runs computed (batch x padded length)
  int64_t samples = 0;                 // permutations / coalitions used (sampling methods)
  std::vector<double> delta;           // integrated gradients: convergence delta per target
  std::vector<int64_t> steps;          // integrated gradients: steps used per target
  std::vector<double> baseline_scores;  // integrated gradients: f(baseline) per target
  double seconds = 0.0;
};

struct OcclusionParams {
  int64_t window = 1;
  int64_t stride = 1;
  int64_t baseline_id = 0;
};

// Feature groups: group[p] in [0, m) names the feature of position p; -1 keeps p unperturbed.
struct AblationParams {
  std::vector<int64_t> groups;
  int64_t baseline_id = 0;
};

struct ShapleyParams {
  std::vector<int64_t> groups;
  int64_t baseline_id = 0;
  int64_t n_permutations = 25;
  uint64_t seed = 0;
  int64_t max_evaluations = 0;  // 0: no limit; else stop after the permutation that reaches it
  double max_seconds = 0.0;     // 0: no limit
  std::vector<int64_t> permutations;  // optional [n_permutations, m]; replaces sampling
};

enum class SurrogateKind { kKernelShap, kLime };

// The most coalitions KernelSHAP and LIME sample: every variant is held in memory before the sweep.
constexpr int64_t kMaxSamples = 1 << 20;

struct SurrogateParams {
  SurrogateKind kind = SurrogateKind::kKernelShap;
  std::vector<int64_t> groups;
  int64_t baseline_id = 0;
  int64_t n_samples = 200;
  uint64_t seed = 0;
  double kernel_width = 1.0;  // LIME
  double ridge = 0.0;
};

// Results are handed out as float32. A value beyond its range (finite scores near float32's maximum
// give one: clean - perturbed doubles them) is an AttributionOverflowError naming the cell, never a
// silent inf. Every method calls this on its result.
void check_float32_range(const AttributionResult& result);

// The variant of ids in which every position whose group is set in `ablated` takes the baseline.
std::vector<int64_t> ablate(const std::vector<int64_t>& ids, const std::vector<int64_t>& groups,
                            const std::vector<uint8_t>& ablated, int64_t baseline_id);
// Number of features m of a group vector, checking that every id is in [-1, n_positions) and that
// ids 0..m-1 are all used.
int64_t count_groups(const std::vector<int64_t>& groups, int64_t n_positions);

AttributionResult occlusion(ScoreEvaluator& evaluator, const OcclusionParams& params);
AttributionResult feature_ablation(ScoreEvaluator& evaluator, const AblationParams& params);
AttributionResult shapley_sampling(ScoreEvaluator& evaluator, const ShapleyParams& params);
// KernelSHAP and LIME: the coalitions (1 = feature present) and the weights are returned too, so
// the surrogate fit can be checked independently.
struct SurrogateSamples {
  std::vector<uint8_t> coalitions;  // [n, m]
  std::vector<double> weights;      // [n]
};
SurrogateSamples surrogate_samples(const SurrogateParams& params, int64_t m);
AttributionResult surrogate(ScoreEvaluator& evaluator, const SurrogateParams& params);

// A method's sweep in two halves, so that a pooled corpus sweep evaluates the variants of many texts
// in shared batches (attribfast/pooled.h): the variants, then the reduction of their scores
// [variants, n_targets] to the result. reduce uses the evaluator, which must outlive the proposal.
struct Proposal {
  std::vector<std::vector<int64_t>> variants;
  std::function<AttributionResult(const std::vector<double>& scores)> reduce;
};
AttributionResult run_proposal(ScoreEvaluator& evaluator, Proposal proposal);
Proposal propose_occlusion(ScoreEvaluator& evaluator, const OcclusionParams& params);
Proposal propose_feature_ablation(ScoreEvaluator& evaluator, const AblationParams& params);
// Every permutation in one request (no budget: max_evaluations and max_seconds must be 0); the
// permutations and their sums are those of shapley_sampling.
Proposal propose_shapley_sampling(ScoreEvaluator& evaluator, const ShapleyParams& params);
Proposal propose_surrogate(ScoreEvaluator& evaluator, const SurrogateParams& params);

}  // namespace attribfast
