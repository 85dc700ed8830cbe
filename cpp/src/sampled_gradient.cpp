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

}  // namespace

AttributionResult sampled_gradients(GradientRunner& runner, const SampledGradientParams& params) {
  const int64_t n = runner.n_positions();
  const int64_t hidden = runner.hidden_size();
  const int64_t n_targets = runner.n_targets();
  const int64_t size = n * hidden;
  const int64_t n_samples = static_cast<int64_t>(params.noise.size()) / std::max<int64_t>(size, 1);
  const int64_t n_points = static_cast<int64_t>(params.weights.size());
  const int64_t n_baselines = static_cast<int64_t>(params.baselines.size()) / std::max<int64_t>(size, 1);
  if (n_samples < 1 || static_cast<int64_t>(params.noise.size()) != n_samples * size) {
    throw InvalidInputError("the noise must have shape [n_samples >= 1, " + std::to_string(n) + ", " +
                            std::to_string(hidden) + "]");
  }
  if (n_baselines < 1 || static_cast<int64_t>(params.baselines.size()) != n_baselines * size) {
    throw InvalidInputError("the baselines must have shape [k >= 1, " + std::to_string(n) + ", " +
                            std::to_string(hidden) + "]");
  }
  if (static_cast<int64_t>(params.baseline_index.size()) != n_samples) {
    throw InvalidInputError("baseline_index needs one entry per sample");
  }
  for (int64_t index : params.baseline_index) {
    if (index < 0 || index >= n_baselines) {
      throw InvalidInputError("baseline index " + std::to_string(index) + " is outside [0, " +
                              std::to_string(n_baselines) + ")");
    }
  }
  if (n_points < 1 || static_cast<int64_t>(params.alphas.size()) != n_samples * n_points) {
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
  std::vector<float> inputs(params.noise.size());
  for (int64_t s = 0; s < n_samples; ++s) {
    for (int64_t k = 0; k < size; ++k) inputs[s * size + k] = x[k] + params.noise[s * size + k];
  }
  runner.set_samples({inputs.data(), params.baselines.data(), params.baseline_index.data()});
  runner.plan_rows(n_targets * (1 + n_samples * n_points));

  AttributionResult result;
  result.n_positions = n;
  result.n_targets = n_targets;
  result.clean_scores.assign(n_targets, 0.0);
  result.samples = n_samples;
  // f(input) per target: the noisy rows never score the input itself.
  std::vector<GradientRunner::Row> clean;
  for (int64_t t = 0; t < n_targets; ++t) clean.push_back({t, 1.0});
  runner.run(clean, [&](size_t r, double score, const float*) { result.clean_scores[clean[r].target] = score; });

  std::vector<double> sum(n_targets * size, 0.0), sum_squares(n_targets * size, 0.0);
  // Per sample, position and target: the hidden-summed attribution (smoothgrad) or its squares
  // (smoothgrad_sq), for the standard error.
  const bool with_error = params.aggregation == Aggregation::kSum && params.nt_type != NoiseTunnelType::kVarGrad;
  std::vector<double> per_sample(with_error ? n_samples * n * n_targets : 0);
  const int64_t chunk = std::clamp<int64_t>(kChunkValues / std::max<int64_t>(1, n_targets * size), 1, n_samples);
  std::vector<double> path;
  for (int64_t first = 0; first < n_samples; first += chunk) {
    const int64_t count = std::min(chunk, n_samples - first);
    std::vector<GradientRunner::Row> rows;
    std::vector<double> row_weight;
    for (int64_t s = first; s < first + count; ++s) {
      for (int64_t t = 0; t < n_targets; ++t) {
        for (int64_t k = 0; k < n_points; ++k) {
          rows.push_back({t, params.alphas[s * n_points + k], s});
          row_weight.push_back(params.weights[k]);
        }
      }
    }
    // G_s per (sample in chunk, target): the weighted gradient sum, [n, hidden].
    path.assign(count * n_targets * size, 0.0);
    runner.run(rows, [&](size_t r, double, const float* grad) {
      const auto& row = rows[r];
      double* acc = &path[((row.sample - first) * n_targets + row.target) * size];
      const double w = row_weight[r];
      for (int64_t k = 0; k < size; ++k) acc[k] += w * grad[k];
    });
    for (int64_t s = first; s < first + count; ++s) {
      const float* xs = &inputs[s * size];
      const float* bs = &params.baselines[params.baseline_index[s] * size];
      for (int64_t t = 0; t < n_targets; ++t) {
        const double* g = &path[((s - first) * n_targets + t) * size];
        for (int64_t p = 0; p < n; ++p) {
          double total = 0.0;
          for (int64_t h = 0; h < hidden; ++h) {
            const int64_t k = p * hidden + h;
            const double a = params.absolute ? std::fabs(g[k]) : (static_cast<double>(xs[k]) - bs[k]) * g[k];
            sum[t * size + k] += a;
            sum_squares[t * size + k] += a * a;
            total += params.nt_type == NoiseTunnelType::kSmoothGrad ? a : a * a;
          }
          if (with_error) per_sample[(s * n + p) * n_targets + t] = total;
        }
      }
    }
  }

  result.matrix.assign(n * n_targets, 0.0);
  std::vector<double> values(hidden);
  for (int64_t t = 0; t < n_targets; ++t) {
    for (int64_t p = 0; p < n; ++p) {
      for (int64_t h = 0; h < hidden; ++h) {
        const int64_t k = t * size + p * hidden + h;
        const double mean = sum[k] / n_samples, mean_square = sum_squares[k] / n_samples;
        values[h] = params.nt_type == NoiseTunnelType::kSmoothGrad     ? mean
                    : params.nt_type == NoiseTunnelType::kSmoothGradSq ? mean_square
                                                                       : mean_square - mean * mean;
      }
      double reduced = 0.0;
      for (double v : values) reduced += params.aggregation == Aggregation::kSum ? v : v * v;
      result.matrix[p * n_targets + t] = params.aggregation == Aggregation::kSum ? reduced : std::sqrt(reduced);
    }
  }
  if (with_error) {
    result.standard_error.assign(n * n_targets, std::numeric_limits<double>::infinity());
    if (n_samples > 1) {
      for (int64_t cell = 0; cell < n * n_targets; ++cell) {
        double mean = 0.0, spread = 0.0;
        for (int64_t s = 0; s < n_samples; ++s) mean += per_sample[s * n * n_targets + cell];
        mean /= n_samples;
        for (int64_t s = 0; s < n_samples; ++s) {
          const double d = per_sample[s * n * n_targets + cell] - mean;
          spread += d * d;
        }
        result.standard_error[cell] = std::sqrt(spread / (n_samples - 1) / n_samples);
      }
    }
  }
  check_float32_range(result);
  result.rows_run = runner.rows_run();
  result.seconds = runner.seconds();
  return result;
}

}  // namespace attribfast
