// C++ tests of the core. Pure-math tests always run; engine tests need
//   --ort-lib <libonnxruntime.so> --models <dir with linear_score.onnx>
// (the Python suite builds this binary, writes the models and passes both).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "attribfast/engine.h"
#include "attribfast/gradient.h"
#include "attribfast/math.h"
#include "attribfast/perturbation.h"
#include "attribfast/pooled.h"
#include "check.h"

using namespace attribfast;

// gradient_tests.cpp
void test_gradients(Runtime& rt, const std::string& models);

namespace {

void test_quadrature() {
  auto gl = math::quadrature("gausslegendre", 2);
  EXPECT_NEAR(gl.alphas[0], 0.5 - 0.5 / std::sqrt(3.0), 1e-15);
  EXPECT_NEAR(gl.alphas[1], 0.5 + 0.5 / std::sqrt(3.0), 1e-15);
  EXPECT_NEAR(gl.weights[0], 0.5, 1e-15);
  // 5-point Gauss-Legendre integrates x^9 exactly on [0, 1].
  auto gl5 = math::quadrature("gausslegendre", 5);
  double integral = 0;
  for (int i = 0; i < 5; ++i) integral += gl5.weights[i] * std::pow(gl5.alphas[i], 9);
  EXPECT_NEAR(integral, 0.1, 1e-14);
  auto left = math::quadrature("riemann_left", 4);
  EXPECT(left.alphas == (std::vector<double>{0.0, 0.25, 0.5, 0.75}));
  auto right = math::quadrature("riemann_right", 4);
  EXPECT(right.alphas == (std::vector<double>{0.25, 0.5, 0.75, 1.0}));
  auto middle = math::quadrature("riemann_middle", 4);
  EXPECT_NEAR(middle.alphas[0], 0.125, 1e-15);
  EXPECT_NEAR(middle.alphas[3], 0.875, 1e-15);
  auto captum_trapezoid = math::quadrature("riemann_trapezoid", 4);
  EXPECT_NEAR(std::accumulate(captum_trapezoid.weights.begin(), captum_trapezoid.weights.end(), 0.0), 0.75, 1e-15);
  auto trapezoid = math::quadrature("trapezoid", 4);
  EXPECT_NEAR(std::accumulate(trapezoid.weights.begin(), trapezoid.weights.end(), 0.0), 1.0, 1e-15);
  EXPECT(throws<InvalidInputError>([] { math::quadrature("simpson", 4); }));
  EXPECT(throws<InvalidInputError>([] { math::quadrature("riemann_left", 1); }));
  EXPECT(throws<InvalidInputError>([] { math::quadrature("gausslegendre", math::kMaxQuadratureSteps + 1); }));
  // Many points: still a rule that integrates x^k on [0, 1] to 1 / (k + 1).
  auto big = math::quadrature("gausslegendre", 3001);
  for (int k : {0, 1, 10, 60}) {
    double sum = 0;
    for (size_t i = 0; i < big.alphas.size(); ++i) sum += big.weights[i] * std::pow(big.alphas[i], k);
    EXPECT_NEAR(sum, 1.0 / (k + 1), 1e-13);
  }
  EXPECT(big.alphas[1500] == 0.5);
  // The cancellation check runs between blocks of nodes, and its exception stops the work.
  int calls = 0;
  EXPECT(throws<CancelledError>([&] {
    math::quadrature("gausslegendre", 1000, [&] {
      if (++calls == 3) throw CancelledError("cancelled");
    });
  }));
  EXPECT(calls == 3);
}

void test_parameters() {
  const double nan = std::nan("");
  EXPECT(throws<InvalidInputError>([&] { math::check_real("ridge", nan, 0.0, false); }));
  EXPECT(throws<InvalidInputError>([&] { math::check_real("ridge", HUGE_VAL, 0.0, false); }));
  EXPECT(throws<InvalidInputError>([&] { math::check_real("kernel_width", 0.0, 0.0, true); }));
  EXPECT(!throws<InvalidInputError>([&] { math::check_real("ridge", 0.0, 0.0, false); }));
  std::vector<double> x{0, 1, 1, 0}, y{1, 2}, w{1, 1};
  EXPECT(throws<InvalidInputError>([&] { math::weighted_least_squares(x, y, w, 2, 2, 1, nan); }));
  // Group ids past the token count are refused before g + 1 or a table of size max(g) + 1.
  EXPECT(count_groups({0, 0, 1, -1}, 4) == 2);
  EXPECT(throws<InvalidInputError>([] { count_groups({INT64_MAX, 0, 0}, 3); }));
  EXPECT(throws<InvalidInputError>([] { count_groups({int64_t{1} << 40, 0, 0}, 3); }));
  EXPECT(throws<InvalidInputError>([] { count_groups({3, 0, 1}, 3); }));
  EXPECT(throws<InvalidInputError>([] { count_groups({-2, 0, 1}, 3); }));
  // Results leave as float32: a finite double beyond its range is a typed error, not an inf.
  AttributionResult result;
  result.n_positions = 2;
  result.n_targets = 1;
  result.matrix = {1.0, -6e38};
  EXPECT(throws<AttributionOverflowError>([&] { check_float32_range(result); }));
  result.matrix = {1.0, -3e38};
  result.standard_error = {HUGE_VAL, 0.0};  // one permutation: no spread measured, on purpose
  EXPECT(!throws<AttributionOverflowError>([&] { check_float32_range(result); }));
}

void test_windows() {
  using W = std::vector<std::pair<int64_t, int64_t>>;
  EXPECT(math::occlusion_windows(5, 2, 2) == (W{{0, 2}, {2, 4}, {4, 5}}));
  EXPECT(math::occlusion_windows(4, 2, 1) == (W{{0, 2}, {1, 3}, {2, 4}}));
  EXPECT(math::occlusion_windows(3, 1, 1) == (W{{0, 1}, {1, 2}, {2, 3}}));
  EXPECT(math::occlusion_windows(7, 3, 3) == (W{{0, 3}, {3, 6}, {6, 7}}));
  EXPECT(math::occlusion_windows(4, 4, INT64_MAX) == (W{{0, 4}}));
  EXPECT(throws<InvalidInputError>([] { math::occlusion_windows(3, 4, 1); }));
  // A stride past the window leaves tokens uncovered (and once started windows past the end).
  EXPECT(throws<InvalidInputError>([] { math::occlusion_windows(11, 1, 8); }));
  EXPECT(throws<InvalidInputError>([] { math::occlusion_windows(4, 1, 2); }));
  EXPECT(throws<InvalidInputError>([] { math::occlusion_windows(0, 1, 1); }));
}

void test_sampling() {
  math::Rng a(42), b(42);
  EXPECT(a.next() == b.next());
  auto p = a.permutation(10);
  auto sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 10; ++i) EXPECT(sorted[i] == i);
  EXPECT_NEAR(math::shapley_kernel_weight(4, 1), 3.0 / (4 * 1 * 3), 1e-15);
  EXPECT_NEAR(math::shapley_kernel_weight(4, 1), math::shapley_kernel_weight(4, 3), 1e-15);
  EXPECT(math::shapley_kernel_weight(4, 0) == 0.0);
  auto coalitions = math::kernel_shap_coalitions(6, 100, 7);
  for (int i = 0; i < 100; ++i) {
    int k = 0;
    for (int j = 0; j < 6; ++j) k += coalitions[i * 6 + j];
    EXPECT(k >= 1 && k <= 5);
  }
  const uint8_t all[3] = {1, 1, 1}, none[3] = {0, 0, 0};
  EXPECT_NEAR(math::lime_similarity(all, 3, 1.0), 1.0, 1e-15);
  EXPECT_NEAR(math::lime_similarity(none, 3, 1.0), std::exp(-0.5), 1e-15);
}

void test_least_squares() {
  // y = 1 + 2 x0 - 3 x1 exactly, with uneven weights: recovered exactly.
  std::vector<double> x{0, 0, 1, 0, 0, 1, 1, 1, 1, 0.5}, y, w{1, 2, 3, 4, 5};
  for (int i = 0; i < 5; ++i) y.push_back(1 + 2 * x[2 * i] - 3 * x[2 * i + 1]);
  auto beta = math::weighted_least_squares(x, y, w, 5, 2, 1, 0.0);
  EXPECT_NEAR(beta[0], 2.0, 1e-9);
  EXPECT_NEAR(beta[1], -3.0, 1e-9);
  EXPECT_NEAR(beta[2], 1.0, 1e-9);
}

// table[v][t] = 0.5 v - t, as written by the Python suite into linear_score.onnx (10 x 3).
double table(int64_t v, int64_t t) { return 0.5 * v - t; }

ScoreProblem linear_problem(const std::vector<int64_t>& ids) {
  ScoreProblem problem;
  problem.ids = ids;
  problem.suffixes = {{}};
  problem.column_targets = {{0, 1, 2}};
  problem.horizons = {-1};
  problem.n_targets = 3;
  return problem;
}

// Prefix-reuse grouping: boundaries are multiples of the bucket, never past n - 1, 0 below min_prefix.
void test_prefix_groups() {
  auto boundaries = [](const std::vector<BoundaryGroup>& groups) {
    std::vector<int64_t> out;
    for (const auto& g : groups) out.push_back(g.boundary);
    return out;
  };
  // n = 10, bucket 4: a change at 0 runs the full graph; at the last position (9) and the clean
  // input (first change n) both share boundary 8; a window [3, 5) spans the bucket edge at 4 and
  // starts in bucket 0; [4, 6) starts at boundary 4.
  const std::vector<int64_t> first{9, 0, 10, 3, 4, 7, 8};
  const auto groups = group_by_boundary(first, 10, 4, 1);
  EXPECT(boundaries(groups) == (std::vector<int64_t>{0, 4, 8}));
  EXPECT(groups[0].rows == (std::vector<size_t>{1, 3}));  // changes at 0 and 3
  EXPECT(groups[1].rows == (std::vector<size_t>{4, 5}));
  EXPECT(groups[2].rows == (std::vector<size_t>{0, 2, 6}));  // order within a group is kept
  // Bucket 1: every row's boundary is its own first change, clamped to n - 1.
  const auto exact = group_by_boundary({5, 10, 1}, 10, 1, 1);
  EXPECT(boundaries(exact) == (std::vector<int64_t>{1, 5, 9}));
  // min_prefix 3: boundaries 1 and 2 fall back to the full graph.
  EXPECT(boundaries(group_by_boundary({1, 2, 3}, 10, 1, 3)) == (std::vector<int64_t>{0, 3}));
  // A one-token input has nothing to reuse.
  EXPECT(boundaries(group_by_boundary({0, 1}, 1, 1, 1)) == (std::vector<int64_t>{0}));
  EXPECT(group_by_boundary({}, 4, 2, 1).empty());
  EXPECT(throws<InvalidInputError>([] { group_by_boundary({1}, 4, 0, 1); }));
  EXPECT(throws<InvalidInputError>([] { group_by_boundary({1}, 0, 1, 1); }));
  // The cache counts against the memory budget: a wide cache and a long past leave fewer rows.
  BatchPolicy policy;
  policy.max_batch_tokens = 0;
  policy.memory_budget = 1 << 24;
  const int64_t narrow = choose_suffix_batch_size(policy, 16, 8, 64);
  const int64_t wide = choose_suffix_batch_size(policy, 16, 200, 1 << 14);
  EXPECT(wide < narrow);
  EXPECT(wide >= 1);
  EXPECT(narrow <= choose_batch_size(policy, 16));
  // By hand: 16 new tokens over 200 past positions, a cache 100 floats wide. A row takes its
  // activations plus its expanded cache; the shared clean cache (216 x 100 floats) comes off first.
  policy.hidden_size = 8;
  policy.num_heads = 2;
  const int64_t total = 216, per_row = 4 * (16 * 8 + 2 * 2 * total) * 16 + 4 * 100 * total;
  const int64_t resident = 4 * 100 * total;
  policy.memory_budget = resident + 5 * per_row;
  EXPECT(choose_suffix_batch_size(policy, 16, 200, 100) == 5);
  policy.memory_budget = resident + 5 * per_row - 1;
  EXPECT(choose_suffix_batch_size(policy, 16, 200, 100) == 4);
  policy.memory_budget = resident / 2;  // not even the cache fits: one row at a time, never zero
  EXPECT(choose_suffix_batch_size(policy, 16, 200, 100) == 1);
  policy.batch_size = 3;  // an explicit batch size wins
  EXPECT(choose_suffix_batch_size(policy, 16, 200, 1 << 14) == 3);
}

void test_pooled(const Session& session);

void test_engine(const std::string& library, const std::string& models) {
  EXPECT(throws<LibraryError>([] { Runtime::load("/nonexistent/libonnxruntime.so"); }));
  Runtime& rt = Runtime::load(library);
  EXPECT(&Runtime::load(library) == &rt);
  EXPECT(rt.api_version() == 16);
  EXPECT(!rt.version().empty());
  EXPECT(throws<ModelLoadError>([&] { Session(rt, models + "/missing.onnx", SessionConfig{}); }));
  const char garbage[] = "not a model";
  EXPECT(throws<ModelLoadError>([&] { Session(rt, garbage, sizeof(garbage), SessionConfig{}); }));

  Session session(rt, models + "/linear_score.onnx", SessionConfig{});
  EXPECT(session.inputs().size() == 2 && session.inputs()[0].symbolic_shape[0] == "batch");
  const std::vector<int64_t> ids{1, 4, 4, 7, 2};
  const int64_t baseline = 0;
  BatchPolicy policy;
  policy.batch_size = 2;
  {
    ScoreEvaluator evaluator(session, linear_problem(ids), policy, nullptr, nullptr);
    auto result = occlusion(evaluator, OcclusionParams{1, 1, baseline});
    for (size_t p = 0; p < ids.size(); ++p)
      for (int t = 0; t < 3; ++t) EXPECT_NEAR(result.matrix[p * 3 + t], table(ids[p], t) - table(baseline, t), 1e-5);
    // The two windows over the repeated 4 give distinct variants; nothing is deduplicated here,
    // so clean + 5 windows were run.
    EXPECT(result.rows_run == 6);
  }
  {
    // Window 2, stride 1: each position averages the windows that cover it.
    ScoreEvaluator evaluator(session, linear_problem(ids), policy, nullptr, nullptr);
    auto result = occlusion(evaluator, OcclusionParams{2, 1, baseline});
    auto drop = [&](int64_t p, int t) { return table(ids[p], t) - table(baseline, t); };
    EXPECT_NEAR(result.matrix[0 * 3 + 0], drop(0, 0) + drop(1, 0), 1e-5);
    EXPECT_NEAR(result.matrix[1 * 3 + 1], (drop(0, 1) + 2 * drop(1, 1) + drop(2, 1)) / 2, 1e-5);
  }
  {
    // Groups {0,1} {2} {3,4}: each member gets its group's drop.
    ScoreEvaluator evaluator(session, linear_problem(ids), policy, nullptr, nullptr);
    auto result = feature_ablation(evaluator, AblationParams{{0, 0, 1, 2, 2}, baseline});
    const double group0 = table(1, 2) + table(4, 2) - 2 * table(baseline, 2);
    EXPECT_NEAR(result.matrix[0 * 3 + 2], group0, 1e-5);
    EXPECT_NEAR(result.matrix[1 * 3 + 2], group0, 1e-5);
  }
  {
    // Additive model: every permutation gives the same marginals, so Shapley is exact, error 0.
    ScoreEvaluator evaluator(session, linear_problem(ids), policy, nullptr, nullptr);
    ShapleyParams params;
    params.groups = {0, 1, 2, 3, 4};
    params.n_permutations = 4;
    auto result = shapley_sampling(evaluator, params);
    for (size_t p = 0; p < ids.size(); ++p) {
      EXPECT_NEAR(result.matrix[p * 3 + 1], table(ids[p], 1) - table(baseline, 1), 1e-5);
      EXPECT_NEAR(result.standard_error[p * 3 + 1], 0.0, 1e-5);
    }
    EXPECT(result.samples == 4);
  }
  {
    ScoreEvaluator evaluator(session, linear_problem(ids), policy, nullptr, nullptr);
    SurrogateParams params;
    params.groups = {0, 1, 2, 3, 4};
    params.n_samples = 64;
    auto result = surrogate(evaluator, params);
    for (size_t p = 0; p < ids.size(); ++p) EXPECT_NEAR(result.matrix[p * 3], table(ids[p], 0) - table(baseline, 0), 1e-4);
  }
  {
    // Explicit variants, each with one segment: segment 0 scores column 0 of the input alone,
    // segment 1 column 1 with token 3 appended. A repeated variant runs once with the union of its
    // segments; columns of segments a variant skipped are NaN.
    ScoreProblem problem = linear_problem(ids);
    problem.suffixes = {{}, {3}};
    problem.column_targets = {{0, -1, -1}, {-1, 1, -1}};
    problem.horizons = {-1, -1};
    problem.n_targets = 2;
    ScoreEvaluator evaluator(session, problem, policy, nullptr, nullptr);
    const std::vector<int64_t> a{0, 4, 4, 7, 2}, b{1, 0, 0, 7, 2};
    auto scores = evaluator.evaluate({a, b, a}, {0, 1, 1});
    auto sum = [&](const std::vector<int64_t>& v, int t) {
      double total = 0;
      for (int64_t id : v) total += table(id, t);
      return total;
    };
    EXPECT_NEAR(scores[0 * 2 + 0], sum(a, 0), 1e-5);
    EXPECT_NEAR(scores[0 * 2 + 1], sum(a, 1) + table(3, 1), 1e-5);
    EXPECT(std::isnan(scores[1 * 2 + 0]));
    EXPECT_NEAR(scores[1 * 2 + 1], sum(b, 1) + table(3, 1), 1e-5);
    EXPECT_NEAR(scores[2 * 2 + 1], scores[0 * 2 + 1], 0.0);
    EXPECT(evaluator.rows_run() == 5);  // clean x 2 segments, a x 2, b x 1
    EXPECT(throws<InvalidInputError>([&] { evaluator.evaluate({a}, {2}); }));
    EXPECT(throws<InvalidInputError>([&] { evaluator.evaluate({a, b}, {0}); }));
  }
  {
    ScoreEvaluator evaluator(session, linear_problem(ids), policy, nullptr, nullptr);
    EXPECT(throws<InvalidInputError>([&] { occlusion(evaluator, OcclusionParams{1, 3, baseline}); }));
    EXPECT(throws<InvalidInputError>([&] { feature_ablation(evaluator, AblationParams{{INT64_MAX, 0, 0, 0, 0}, 0}); }));
  }
  {
    RunControl control(rt);
    control.cancel();
    ScoreEvaluator evaluator(session, linear_problem(ids), policy, &control, nullptr);
    EXPECT(throws<CancelledError>([&] { occlusion(evaluator, OcclusionParams{1, 1, baseline}); }));
  }
  {
    // Wrong input name and wrong dtype are typed errors.
    std::vector<int64_t> data{1, 2};
    TensorView view{ort::kInt64, data.data(), {1, 2}};
    EXPECT(throws<InvalidInputError>([&] { session.run({{"nope", view}}, {"scores"}); }));
    TensorView as_float{ort::kFloat32, data.data(), {1, 2}};
    EXPECT(throws<InvalidInputError>([&] {
      session.run({{"input_ids", as_float}, {"attention_mask", view}}, {"scores"});
    }));
  }
  {
    // Two threads on one session give identical results.
    std::vector<double> first, second;
    auto work = [&](std::vector<double>* out) {
      for (int repeat = 0; repeat < 20; ++repeat) {
        ScoreEvaluator evaluator(session, linear_problem(ids), policy, nullptr, nullptr);
        *out = occlusion(evaluator, OcclusionParams{1, 1, baseline}).matrix;
      }
    };
    std::thread a(work, &first), b(work, &second);
    a.join();
    b.join();
    EXPECT(first == second && !first.empty());
  }
  test_pooled(session);
}

// A pooled sweep over texts of different lengths equals per-text calls, and its batches mix texts.
void test_pooled(const Session& session) {
  const std::vector<std::vector<int64_t>> texts{{1, 4, 4, 7, 2}, {3, 5}, {9, 6, 8}};
  BatchPolicy policy;
  policy.batch_size = 4;
  std::vector<ScoreProblem> problems;
  for (const auto& ids : texts) problems.push_back(linear_problem(ids));
  auto near = [](const std::vector<double>& a, const std::vector<double>& b) {
    bool same = a.size() == b.size();
    for (size_t k = 0; same && k < a.size(); ++k) same = std::fabs(a[k] - b[k]) <= 1e-6;
    return same;
  };
  int64_t batches = 0, last_done = 0;
  ProgressFn count = [&](int64_t done, int64_t) {
    ++batches;
    last_done = done;
  };
  const OcclusionParams window{2, 1, 0};
  const auto pooled = pooled_sweep(session, problems, policy, nullptr, count,
                                   [&](size_t, ScoreEvaluator& e) { return propose_occlusion(e, window); });
  EXPECT(pooled.size() == texts.size());
  int64_t rows = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    ScoreEvaluator alone(session, linear_problem(texts[i]), policy, nullptr, nullptr);
    const auto expected = occlusion(alone, window);
    EXPECT(near(pooled[i].matrix, expected.matrix) && near(pooled[i].clean_scores, expected.clean_scores));
    EXPECT(pooled[i].rows_run == expected.rows_run);
    rows += expected.rows_run;
  }
  // 5 + 2 + 3 rows (each text's clean input and windows) in batches of 4: 3 shared batches, where
  // per-text sweeps need 2 + 1 + 1 = 4.
  EXPECT(last_done == rows && rows == 10 && batches == 3);
  ShapleyParams shapley;
  shapley.n_permutations = 3;
  shapley.seed = 7;
  SurrogateParams lime;
  lime.kind = SurrogateKind::kLime;
  lime.n_samples = 16;
  lime.seed = 3;
  lime.ridge = 1e-3;
  auto groups_of = [&](size_t i) {
    std::vector<int64_t> groups(texts[i].size());
    std::iota(groups.begin(), groups.end(), 0);
    return groups;
  };
  const auto pooled_shapley = pooled_sweep(session, problems, policy, nullptr, nullptr, [&](size_t i, ScoreEvaluator& e) {
    ShapleyParams own = shapley;
    own.groups = groups_of(i);
    return propose_shapley_sampling(e, own);
  });
  const auto pooled_lime = pooled_sweep(session, problems, policy, nullptr, nullptr, [&](size_t i, ScoreEvaluator& e) {
    SurrogateParams own = lime;
    own.groups = groups_of(i);
    return propose_surrogate(e, own);
  });
  for (size_t i = 0; i < texts.size(); ++i) {
    ShapleyParams own = shapley;
    own.groups = groups_of(i);
    ScoreEvaluator alone(session, linear_problem(texts[i]), policy, nullptr, nullptr);
    const auto expected = shapley_sampling(alone, own);
    EXPECT(near(pooled_shapley[i].matrix, expected.matrix));
    EXPECT(near(pooled_shapley[i].standard_error, expected.standard_error) && pooled_shapley[i].samples == 3);
    SurrogateParams own_lime = lime;
    own_lime.groups = groups_of(i);
    ScoreEvaluator alone_lime(session, linear_problem(texts[i]), policy, nullptr, nullptr);
    EXPECT(near(pooled_lime[i].matrix, surrogate(alone_lime, own_lime).matrix));
  }
  shapley.max_evaluations = 10;  // a budget cannot be pooled: the sweep runs every permutation at once
  EXPECT(throws<InvalidInputError>([&] {
    pooled_sweep(session, problems, policy, nullptr, nullptr, [&](size_t i, ScoreEvaluator& e) {
      ShapleyParams own = shapley;
      own.groups = groups_of(i);
      return propose_shapley_sampling(e, own);
    });
  }));
  EXPECT(throws<InvalidInputError>([&] {
    pooled_sweep(session, {}, policy, nullptr, nullptr, [&](size_t, ScoreEvaluator& e) { return propose_occlusion(e, window); });
  }));
  RunControl control(session.runtime());
  control.cancel();
  EXPECT(throws<CancelledError>([&] {
    pooled_sweep(session, problems, policy, &control, nullptr,
                 [&](size_t, ScoreEvaluator& e) { return propose_occlusion(e, window); });
  }));
}

}  // namespace

int main(int argc, char** argv) {
  std::string library, models;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--ort-lib") == 0) library = argv[i + 1];
    if (std::strcmp(argv[i], "--models") == 0) models = argv[i + 1];
  }
  test_quadrature();
  test_windows();
  test_parameters();
  test_sampling();
  test_least_squares();
  test_prefix_groups();
  if (!library.empty()) {
    test_engine(library, models);
    test_gradients(Runtime::load(library), models);
  }
  std::printf("%d checks, %d failed%s\n", g_checks, g_failures, library.empty() ? " (engine tests skipped: no --ort-lib)" : "");
  return g_failures == 0 ? 0 : 1;
}
