// Gradient methods on analytic ONNX models: sampled gradients (hand values) and pooled sweeps (equal
// to per-text runs).
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "attribfast/gradient.h"
#include "attribfast/pooled.h"
#include "check.h"

using namespace attribfast;

namespace {

// square_gradient.onnx: score S^2 and "gradient" 2 / S at every element, S the sum of the row's
// embeddings. Input x = e1, e2 = (1, 1), (2, 0): S = 4. Noise +0.25 everywhere (sample 0: S = 5)
// and -0.5 (sample 1: S = 2), so the values below follow by hand.
void test_sampled_gradients(Runtime& rt, const std::string& models) {
  Session session(rt, models + "/square_gradient.onnx", SessionConfig{});
  const std::vector<float> table{-1, -1, 1, 1, 2, 0};
  GradientProblem problem;
  problem.ids = {1, 2};
  problem.suffixes = {{}, {}};  // two targets, the same score
  problem.embeddings = table.data();
  problem.vocab_size = 3;
  problem.hidden_size = 2;
  problem.baseline.assign(4, 0.0f);
  BatchPolicy policy;
  policy.batch_size = 3;
  SampledGradientParams params;
  params.noise = {0.25f, 0.25f, 0.25f, 0.25f, -0.5f, -0.5f, -0.5f, -0.5f};
  params.baselines = {-1, -1, -1, -1};
  params.baseline_index = {0, 0};
  params.alphas = {1.0, 1.0};
  params.weights = {1.0};
  params.absolute = true;  // saliency: |2 / S| = 0.4 and 1.0 per element
  auto run = [&](const SampledGradientParams& p) {
    GradientRunner runner(session, problem, policy, nullptr, nullptr);
    return sampled_gradients(runner, p);
  };
  auto smooth = run(params);
  for (int cell = 0; cell < 4; ++cell) {
    EXPECT_NEAR(smooth.matrix[cell], 2 * 0.7, 1e-6);
    // Per-sample sums 0.8 and 2.0: standard deviation 0.6 sqrt(2), over sqrt(2) samples.
    EXPECT_NEAR(smooth.standard_error[cell], 0.6, 1e-6);
  }
  EXPECT_NEAR(smooth.clean_scores[1], 16.0, 1e-5);
  EXPECT(smooth.rows_run == 2 + 2 * 2 && smooth.samples == 2);
  params.nt_type = NoiseTunnelType::kSmoothGradSq;
  EXPECT_NEAR(run(params).matrix[0], 2 * 0.58, 1e-6);
  params.nt_type = NoiseTunnelType::kVarGrad;
  auto var = run(params);
  EXPECT_NEAR(var.matrix[3], 2 * (0.58 - 0.49), 1e-6);
  EXPECT(var.standard_error.empty());
  params.nt_type = NoiseTunnelType::kSmoothGrad;
  params.aggregation = Aggregation::kL2;
  EXPECT_NEAR(run(params).matrix[2], std::sqrt(2 * 0.49), 1e-6);
  // GradientSHAP's form: (x_s - b) * grad(b + alpha_s (x_s - b)), b = (-1, -1) per token. The point's
  // sum is -4 + alpha (S_s + 4): 0.5 for alpha 0.5 (grad 4), -2.5 for alpha 0.25 (grad -0.8).
  params.aggregation = Aggregation::kSum;
  params.absolute = false;
  params.alphas = {0.5, 0.25};
  auto shap = run(params);
  // Token 0: (x_0 - b) sums to 4.5 and 3 in the two samples: (18 - 2.4) / 2.
  EXPECT_NEAR(shap.matrix[0], 7.8, 1e-5);
  EXPECT_NEAR(shap.matrix[1 * 2 + 1], 7.8, 1e-5);
  // Bad shapes and values are typed errors.
  auto bad = params;
  bad.baseline_index = {0, 1};
  EXPECT(throws<InvalidInputError>([&] { run(bad); }));
  bad = params;
  bad.noise.pop_back();
  EXPECT(throws<InvalidInputError>([&] { run(bad); }));
  bad = params;
  bad.baselines[2] = std::nanf("");
  EXPECT(throws<InvalidInputError>([&] { run(bad); }));
  bad = params;
  bad.alphas = {0.5};
  EXPECT(throws<InvalidInputError>([&] { run(bad); }));
}


// Pooled gradient sweeps on square_gradient.onnx: texts of 1-3 tokens and two targets (the second
// appends token 1), mixed in shared batches, give each text's own result exactly (padding adds
// zeros to S), for every gradient method, adaptive IG rounds included.
void test_pooled_gradients(Runtime& rt, const std::string& models) {
  Session session(rt, models + "/square_gradient.onnx", SessionConfig{});
  const std::vector<float> table{-1, -1, 1, 1, 2, 0};
  const std::vector<std::vector<int64_t>> texts{{1, 2}, {2}, {1, 2, 1}};
  auto problem_of = [&](const std::vector<int64_t>& ids) {
    GradientProblem problem;
    problem.ids = ids;
    problem.suffixes = {{}, {1}};
    problem.embeddings = table.data();
    problem.vocab_size = 3;
    problem.hidden_size = 2;
    problem.baseline.assign(ids.size() * 2, 0.25f);
    return problem;
  };
  BatchPolicy policy;
  policy.batch_size = 8;
  auto same = [](const AttributionResult& a, const AttributionResult& b) {
    bool ok = a.matrix.size() == b.matrix.size() && a.rows_run == b.rows_run && a.steps == b.steps;
    for (size_t k = 0; ok && k < a.matrix.size(); ++k) ok = std::fabs(a.matrix[k] - b.matrix[k]) <= 1e-9;
    for (size_t k = 0; ok && k < a.clean_scores.size(); ++k) ok = a.clean_scores[k] == b.clean_scores[k];
    for (size_t k = 0; ok && k < a.standard_error.size(); ++k) {
      ok = std::fabs(a.standard_error[k] - b.standard_error[k]) <= 1e-9;
    }
    return ok;
  };
  IntegratedGradientsParams fixed;
  fixed.n_steps = 3;
  IntegratedGradientsParams adaptive = fixed;
  adaptive.tolerance = 1e-4;
  adaptive.max_steps = 48;
  auto sampled_params = [&](size_t i) {
    SampledGradientParams params;
    const int64_t size = static_cast<int64_t>(texts[i].size()) * 2;
    for (int64_t k = 0; k < 2 * size; ++k) params.noise.push_back(0.1f * static_cast<float>((k + i) % 5) - 0.2f);
    params.baselines.assign(size, 0.0f);
    params.baseline_index = {0, 0};
    params.alphas = {0.3, 0.9};
    params.weights = {1.0};
    return params;
  };
  using Make = std::function<std::unique_ptr<GradientSweep>(size_t, GradientRunner&)>;
  const std::vector<Make> methods{
      [&](size_t, GradientRunner& r) { return integrated_gradients_sweep(r, fixed); },
      [&](size_t, GradientRunner& r) { return integrated_gradients_sweep(r, adaptive); },
      [&](size_t, GradientRunner& r) { return gradient_at_input_sweep(r, Aggregation::kSum, false); },
      [&](size_t, GradientRunner& r) { return gradient_at_input_sweep(r, Aggregation::kL2, true); },
      [&](size_t i, GradientRunner& r) { return sampled_gradients_sweep(r, sampled_params(i)); },
  };
  bool several_rounds = false;
  for (const auto& make : methods) {
    std::vector<GradientProblem> problems;
    for (const auto& ids : texts) problems.push_back(problem_of(ids));
    int64_t batches = 0;
    ProgressFn count = [&](int64_t, int64_t) { ++batches; };
    const auto pooled = pooled_gradient_sweep(session, problems, policy, nullptr, count, make);
    EXPECT(pooled.size() == texts.size());
    int64_t alone_batches = 0;
    for (size_t i = 0; i < texts.size(); ++i) {
      ProgressFn count_alone = [&](int64_t, int64_t) { ++alone_batches; };
      GradientRunner runner(session, problem_of(texts[i]), policy, nullptr, count_alone);
      const auto expected = run_sweep(runner, *make(i, runner));
      EXPECT(same(pooled[i], expected));
      for (int64_t steps : expected.steps) several_rounds = several_rounds || steps > fixed.n_steps;
    }
    EXPECT(batches < alone_batches);  // the texts' rows shared batches
  }
  EXPECT(several_rounds);  // the adaptive case pooled later rounds too
  // A bad token in one text fails the sweep before any run; cancellation stops it.
  std::vector<GradientProblem> problems{problem_of(texts[0]), problem_of({1, 7})};
  EXPECT(throws<InvalidInputError>([&] { pooled_gradient_sweep(session, problems, policy, nullptr, nullptr, methods[0]); }));
  problems[1] = problem_of(texts[1]);
  RunControl control(session.runtime());
  control.cancel();
  EXPECT(throws<CancelledError>([&] { pooled_gradient_sweep(session, problems, policy, &control, nullptr, methods[0]); }));
}

}  // namespace

void test_gradients(Runtime& rt, const std::string& models) {
  test_sampled_gradients(rt, models);
  test_pooled_gradients(rt, models);
}
