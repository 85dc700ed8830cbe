#include "attribfast/perturbation.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <sstream>

#include "attribfast/math.h"

namespace attribfast {

namespace {

AttributionResult empty_result(ScoreEvaluator& evaluator) {
  AttributionResult result;
  result.n_positions = evaluator.n_positions();
  result.n_targets = evaluator.n_targets();
  result.matrix.assign(result.n_positions * result.n_targets, 0.0);
  result.clean_scores = evaluator.clean_scores();
  return result;
}

void finish(ScoreEvaluator& evaluator, AttributionResult& result) {
  check_float32_range(result);
  result.rows_run = evaluator.rows_run();
  result.token_positions = evaluator.token_positions();
  result.seconds = evaluator.seconds();
}

// Spreads per-feature values [m, n_targets] to positions through the groups.
void spread(const std::vector<double>& per_feature, const std::vector<int64_t>& groups, int64_t n_targets,
            std::vector<double>& per_position) {
  for (size_t p = 0; p < groups.size(); ++p) {
    if (groups[p] < 0) continue;
    std::copy(&per_feature[groups[p] * n_targets], &per_feature[groups[p] * n_targets] + n_targets,
              &per_position[p * n_targets]);
  }
}

}  // namespace

void check_float32_range(const AttributionResult& result) {
  constexpr double kLargest = std::numeric_limits<float>::max();
  auto check = [&](const std::vector<double>& values, const char* what, bool allow_infinity) {
    for (size_t k = 0; k < values.size(); ++k) {
      const double v = values[k];
      if (std::fabs(v) <= kLargest || (allow_infinity && std::isinf(v))) continue;
      std::ostringstream message;
      message << "the " << what << " of token " << k / result.n_targets << " to target " << k % result.n_targets
              << " is " << v << ", beyond float32's range (+-" << kLargest << "), though every score was finite: "
              << "scores (or an integrated-gradients baseline) this large cannot be attributed in float32";
      throw AttributionOverflowError(message.str());
    }
  };
  check(result.matrix, "attribution", false);
  // One permutation has no spread to measure: that standard error is infinite on purpose.
  check(result.standard_error, "standard error", true);
}

int64_t count_groups(const std::vector<int64_t>& groups, int64_t n_positions) {
  if (static_cast<int64_t>(groups.size()) != n_positions) {
    throw InvalidInputError("feature groups must have one entry per input token (" + std::to_string(n_positions) +
                            "), got " + std::to_string(groups.size()));
  }
  int64_t m = 0;
  for (int64_t g : groups) {
    // Ids are consecutive from 0, so there are at most n_positions of them: checking that first
    // keeps g + 1 and the table below bounded whatever the caller passed.
    if (g < -1 || g >= n_positions) {
      throw InvalidInputError("feature group id " + std::to_string(g) + " is out of range: ids run from 0 to " +
                              "the number of groups - 1 (at most " + std::to_string(n_positions - 1) + " for " +
                              std::to_string(n_positions) + " tokens), or -1 to keep a token fixed");
    }
    m = std::max(m, g + 1);
  }
  std::vector<bool> used(m, false);
  for (int64_t g : groups) if (g >= 0) used[g] = true;
  if (std::find(used.begin(), used.end(), false) != used.end()) {
    throw InvalidInputError("feature group ids must be consecutive from 0");
  }
  if (m == 0) throw InvalidInputError("no token is part of a feature group");
  return m;
}

std::vector<int64_t> ablate(const std::vector<int64_t>& ids, const std::vector<int64_t>& groups,
                            const std::vector<uint8_t>& ablated, int64_t baseline_id) {
  std::vector<int64_t> variant = ids;
  for (size_t p = 0; p < ids.size(); ++p) {
    if (groups[p] >= 0 && ablated[groups[p]]) variant[p] = baseline_id;
  }
  return variant;
}

AttributionResult run_proposal(ScoreEvaluator& evaluator, Proposal proposal) {
  return proposal.reduce(evaluator.evaluate(proposal.variants));
}

Proposal propose_occlusion(ScoreEvaluator& evaluator, const OcclusionParams& params) {
  auto windows = math::occlusion_windows(evaluator.n_positions(), params.window, params.stride);
  Proposal proposal;
  for (const auto& [start, end] : windows) {
    proposal.variants.push_back(evaluator.ids());
    std::fill(proposal.variants.back().begin() + start, proposal.variants.back().begin() + end, params.baseline_id);
  }
  proposal.reduce = [&evaluator, windows = std::move(windows)](const std::vector<double>& scores) {
    AttributionResult result = empty_result(evaluator);
    const int64_t n_targets = result.n_targets;
    std::vector<int64_t> coverage(result.n_positions, 0);
    for (size_t w = 0; w < windows.size(); ++w) {
      for (int64_t p = windows[w].first; p < windows[w].second; ++p) {
        ++coverage[p];
        for (int64_t t = 0; t < n_targets; ++t) {
          result.matrix[p * n_targets + t] += result.clean_scores[t] - scores[w * n_targets + t];
        }
      }
    }
    // Overlapping windows are averaged, as Captum divides by how often each position was occluded;
    // occlusion_windows covers every position at least once.
    for (int64_t p = 0; p < result.n_positions; ++p) {
      for (int64_t t = 0; t < n_targets; ++t) result.matrix[p * n_targets + t] /= coverage[p];
    }
    finish(evaluator, result);
    return result;
  };
  return proposal;
}

AttributionResult occlusion(ScoreEvaluator& evaluator, const OcclusionParams& params) {
  return run_proposal(evaluator, propose_occlusion(evaluator, params));
}

Proposal propose_feature_ablation(ScoreEvaluator& evaluator, const AblationParams& params) {
  const int64_t m = count_groups(params.groups, evaluator.n_positions());
  Proposal proposal;
  for (int64_t g = 0; g < m; ++g) {
    std::vector<uint8_t> ablated(m, 0);
    ablated[g] = 1;
    proposal.variants.push_back(ablate(evaluator.ids(), params.groups, ablated, params.baseline_id));
  }
  proposal.reduce = [&evaluator, m, groups = params.groups](const std::vector<double>& scores) {
    AttributionResult result = empty_result(evaluator);
    const int64_t n_targets = result.n_targets;
    std::vector<double> per_feature(m * n_targets);
    for (int64_t g = 0; g < m; ++g) {
      for (int64_t t = 0; t < n_targets; ++t) {
        per_feature[g * n_targets + t] = result.clean_scores[t] - scores[g * n_targets + t];
      }
    }
    spread(per_feature, groups, n_targets, result.matrix);
    finish(evaluator, result);
    return result;
  };
  return proposal;
}

AttributionResult feature_ablation(ScoreEvaluator& evaluator, const AblationParams& params) {
  return run_proposal(evaluator, propose_feature_ablation(evaluator, params));
}

namespace {

// The number of permutations to run; explicit permutations are checked to be permutations of 0..m-1.
int64_t shapley_permutation_count(const ShapleyParams& params, int64_t m) {
  int64_t n_permutations = params.n_permutations;
  if (!params.permutations.empty()) {
    if (params.permutations.size() % m != 0) {
      throw InvalidInputError("permutations must have shape [n, " + std::to_string(m) + "]");
    }
    n_permutations = static_cast<int64_t>(params.permutations.size()) / m;
    for (int64_t i = 0; i < n_permutations; ++i) {
      std::vector<int64_t> sorted(&params.permutations[i * m], &params.permutations[i * m] + m);
      std::sort(sorted.begin(), sorted.end());
      for (int64_t j = 0; j < m; ++j) {
        if (sorted[j] != j) throw InvalidInputError("each row of permutations must be a permutation of 0..m-1");
      }
    }
  }
  if (n_permutations < 1) throw InvalidInputError("n_permutations must be >= 1");
  math::check_real("max_seconds", params.max_seconds, 0.0, false);
  return n_permutations;
}

// Permutation `index` (explicit, else the next one the generator draws) and its m + 1 variants:
// every feature ablated, then features switched on in permutation order.
void add_permutation(const ScoreEvaluator& evaluator, const ShapleyParams& params, int64_t m, int64_t index,
                     math::Rng& rng, std::vector<std::vector<int64_t>>& orders,
                     std::vector<std::vector<int64_t>>& variants) {
  orders.push_back(!params.permutations.empty()
                       ? std::vector<int64_t>(&params.permutations[index * m], &params.permutations[index * m] + m)
                       : rng.permutation(m));
  std::vector<uint8_t> ablated(m, 1);
  variants.push_back(ablate(evaluator.ids(), params.groups, ablated, params.baseline_id));
  for (int64_t j = 0; j < m; ++j) {
    ablated[orders.back()[j]] = 0;
    variants.push_back(ablate(evaluator.ids(), params.groups, ablated, params.baseline_id));
  }
}

struct MarginalSums {
  std::vector<double> sum, sum_squares;
  int64_t done = 0;
  // Adds the marginals of orders, whose variants' scores are consecutive blocks of m + 1 rows.
  void add(const std::vector<std::vector<int64_t>>& orders, const std::vector<double>& scores, int64_t n_targets) {
    const auto m = static_cast<int64_t>(orders.empty() ? 0 : orders[0].size());
    for (size_t i = 0; i < orders.size(); ++i) {
      const double* base = &scores[i * (m + 1) * n_targets];
      for (int64_t j = 0; j < m; ++j) {
        const int64_t feature = orders[i][j];
        for (int64_t t = 0; t < n_targets; ++t) {
          const double marginal = base[(j + 1) * n_targets + t] - base[j * n_targets + t];
          sum[feature * n_targets + t] += marginal;
          sum_squares[feature * n_targets + t] += marginal * marginal;
        }
      }
    }
    done += static_cast<int64_t>(orders.size());
  }
};

AttributionResult shapley_result(ScoreEvaluator& evaluator, const std::vector<int64_t>& groups, int64_t m,
                                 const MarginalSums& sums) {
  const int64_t n_targets = evaluator.n_targets();
  const int64_t done = sums.done;
  AttributionResult result = empty_result(evaluator);
  std::vector<double> mean(m * n_targets), error(m * n_targets);
  for (int64_t k = 0; k < m * n_targets; ++k) {
    mean[k] = sums.sum[k] / done;
    // Sample standard deviation of the marginals over permutations, divided by sqrt(permutations).
    error[k] = done > 1
                   ? std::sqrt(std::max(0.0, (sums.sum_squares[k] - done * mean[k] * mean[k]) / (done - 1)) / done)
                   : std::numeric_limits<double>::infinity();
  }
  result.standard_error.assign(result.n_positions * n_targets, 0.0);
  spread(mean, groups, n_targets, result.matrix);
  spread(error, groups, n_targets, result.standard_error);
  result.samples = done;
  finish(evaluator, result);
  return result;
}

}  // namespace

AttributionResult shapley_sampling(ScoreEvaluator& evaluator, const ShapleyParams& params) {
  const int64_t m = count_groups(params.groups, evaluator.n_positions());
  const int64_t n_permutations = shapley_permutation_count(params, m);
  const int64_t n_targets = evaluator.n_targets();
  MarginalSums sums{std::vector<double>(m * n_targets, 0.0), std::vector<double>(m * n_targets, 0.0)};
  math::Rng rng(params.seed);
  // Enough permutations per sweep to fill whole batches, checking the budget between sweeps.
  const int64_t chunk = std::max<int64_t>(1, 512 / std::max<int64_t>(m, 1));
  while (sums.done < n_permutations) {
    const int64_t count = std::min(chunk, n_permutations - sums.done);
    std::vector<std::vector<int64_t>> orders, variants;
    for (int64_t i = 0; i < count; ++i) add_permutation(evaluator, params, m, sums.done + i, rng, orders, variants);
    sums.add(orders, evaluator.evaluate(variants), n_targets);
    const bool over_evaluations = params.max_evaluations > 0 && evaluator.rows_run() >= params.max_evaluations;
    const bool over_time = params.max_seconds > 0 && evaluator.seconds() >= params.max_seconds;
    if (over_evaluations || over_time) break;
  }
  return shapley_result(evaluator, params.groups, m, sums);
}

Proposal propose_shapley_sampling(ScoreEvaluator& evaluator, const ShapleyParams& params) {
  if (params.max_evaluations > 0 || params.max_seconds > 0) {
    throw InvalidInputError("a pooled Shapley sweep runs a fixed number of permutations: no budget");
  }
  const int64_t m = count_groups(params.groups, evaluator.n_positions());
  const int64_t n_permutations = shapley_permutation_count(params, m);
  // The same permutations, drawn in the same order, as shapley_sampling's sweeps.
  math::Rng rng(params.seed);
  auto orders = std::make_shared<std::vector<std::vector<int64_t>>>();
  Proposal proposal;
  for (int64_t i = 0; i < n_permutations; ++i) add_permutation(evaluator, params, m, i, rng, *orders, proposal.variants);
  proposal.reduce = [&evaluator, m, orders, groups = params.groups](const std::vector<double>& scores) {
    const int64_t n_targets = evaluator.n_targets();
    MarginalSums sums{std::vector<double>(m * n_targets, 0.0), std::vector<double>(m * n_targets, 0.0)};
    sums.add(*orders, scores, n_targets);
    return shapley_result(evaluator, groups, m, sums);
  };
  return proposal;
}

SurrogateSamples surrogate_samples(const SurrogateParams& params, int64_t m) {
  if (params.n_samples < 1 || params.n_samples > kMaxSamples) {
    throw InvalidInputError("n_samples must be in [1, " + std::to_string(kMaxSamples) + "], got " +
                            std::to_string(params.n_samples));
  }
  SurrogateSamples samples;
  if (params.kind == SurrogateKind::kKernelShap) {
    // The full and the empty coalition carry a very large weight (theoretically infinite), which
    // pins the fit to f(x) and f(baseline), as Captum does; sampled coalitions weigh 1 because
    // they are drawn from the Shapley kernel already.
    samples.coalitions.assign(m, 1);
    samples.coalitions.insert(samples.coalitions.end(), m, 0);
    samples.weights = {1e6, 1e6};
    if (m >= 2) {
      const auto drawn = math::kernel_shap_coalitions(m, params.n_samples, params.seed);
      samples.coalitions.insert(samples.coalitions.end(), drawn.begin(), drawn.end());
      samples.weights.insert(samples.weights.end(), params.n_samples, 1.0);
    }
  } else {
    math::check_real("kernel_width", params.kernel_width, 0.0, true);
    samples.coalitions = math::lime_coalitions(m, params.n_samples, params.seed);
    for (int64_t i = 0; i < params.n_samples; ++i) {
      samples.weights.push_back(math::lime_similarity(&samples.coalitions[i * m], m, params.kernel_width));
    }
  }
  return samples;
}

Proposal propose_surrogate(ScoreEvaluator& evaluator, const SurrogateParams& params) {
  const int64_t m = count_groups(params.groups, evaluator.n_positions());
  math::check_real("ridge", params.ridge, 0.0, false);  // before any model run
  auto samples = std::make_shared<SurrogateSamples>(surrogate_samples(params, m));
  const int64_t n = static_cast<int64_t>(samples->weights.size());
  Proposal proposal;
  std::vector<uint8_t> ablated(m);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < m; ++j) ablated[j] = samples->coalitions[i * m + j] ? 0 : 1;
    proposal.variants.push_back(ablate(evaluator.ids(), params.groups, ablated, params.baseline_id));
  }
  proposal.reduce = [&evaluator, m, n, samples, groups = params.groups,
                     ridge = params.ridge](const std::vector<double>& scores) {
    AttributionResult result = empty_result(evaluator);
    const int64_t n_targets = result.n_targets;
    std::vector<double> x(samples->coalitions.begin(), samples->coalitions.end());
    const auto beta = math::weighted_least_squares(x, scores, samples->weights, n, m, n_targets, ridge);
    std::vector<double> per_feature(beta.begin(), beta.begin() + m * n_targets);
    spread(per_feature, groups, n_targets, result.matrix);
    result.samples = n;
    finish(evaluator, result);
    return result;
  };
  return proposal;
}

AttributionResult surrogate(ScoreEvaluator& evaluator, const SurrogateParams& params) {
  return run_proposal(evaluator, propose_surrogate(evaluator, params));
}

}  // namespace attribfast
