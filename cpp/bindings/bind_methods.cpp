// Attribution methods and their pure math, exposed to the Python pipeline.
#include <pybind11/stl.h>

#include "attribfast/gradient.h"
#include "attribfast/math.h"
#include "attribfast/perturbation.h"
#include "common.h"

namespace attribfast::bindings {

namespace {

template <typename T>
py::array_t<T> matrix_of(const std::vector<T>& values, int64_t rows, int64_t cols) {
  py::array_t<T> out({rows, cols});
  if (!values.empty()) std::copy(values.begin(), values.end(), out.mutable_data());
  return out;
}

void set_extra_data(ExtraInput& extra, const py::array& data) {
  py::array keep;
  TensorView view = view_of(data, &keep);
  if (view.shape.empty()) throw InvalidInputError("extra input '" + extra.name + "' needs a leading set dimension");
  extra.element_type = view.element_type;
  extra.row_shape.assign(view.shape.begin() + 1, view.shape.end());
  const auto* bytes = static_cast<const unsigned char*>(view.data);
  extra.data.assign(bytes, bytes + keep.nbytes());
}

ExtraInput make_extra(const std::string& name, const py::array& data) {
  ExtraInput extra;
  extra.name = name;
  set_extra_data(extra, data);
  return extra;
}

// Runs a perturbation method with the GIL released; the evaluator lives on the worker thread.
template <typename Method>
AttributionResult run_score_method(const Session& session, const ScoreProblem& problem, const BatchPolicy& policy,
                                   const py::object& progress, Method method) {
  return run_off_gil(session.runtime(), progress, [&](RunControl& control, const ProgressFn& report) {
    ScoreEvaluator evaluator(session, problem, policy, &control, report);
    return method(evaluator);
  });
}

template <typename Method>
AttributionResult run_gradient_method(const Session& session, GradientProblem problem,
                                      const py::array_t<float, py::array::c_style | py::array::forcecast>& embeddings,
                                      const py::array_t<float, py::array::c_style | py::array::forcecast>& baseline,
                                      const BatchPolicy& policy, const py::object& progress, Method method) {
  if (embeddings.ndim() != 2) throw InvalidInputError("the embedding matrix must be 2-D [vocab, hidden]");
  problem.embeddings = embeddings.data();
  problem.vocab_size = embeddings.shape(0);
  problem.hidden_size = embeddings.shape(1);
  problem.baseline.assign(baseline.data(), baseline.data() + baseline.size());
  return run_off_gil(session.runtime(), progress, [&](RunControl& control, const ProgressFn& report) {
    GradientRunner runner(session, problem, policy, &control, report);
    return method(runner);
  });
}

Aggregation aggregation_of(const std::string& name) {
  if (name == "sum") return Aggregation::kSum;
  if (name == "l2") return Aggregation::kL2;
  throw InvalidInputError("unknown aggregation '" + name + "' (possible: sum, l2)");
}

}  // namespace

void bind_methods(py::module_& m) {
  py::class_<ExtraInput>(m, "ExtraInput")
      .def(py::init(&make_extra), py::arg("name"), py::arg("data"))
      .def_readonly("name", &ExtraInput::name);

  py::class_<BatchPolicy>(m, "BatchPolicy")
      .def(py::init<>())
      .def_readwrite("batch_size", &BatchPolicy::batch_size)
      .def_readwrite("memory_budget", &BatchPolicy::memory_budget)
      .def_readwrite("hidden_size", &BatchPolicy::hidden_size)
      .def_readwrite("num_heads", &BatchPolicy::num_heads)
      .def_readwrite("max_batch_size", &BatchPolicy::max_batch_size)
      .def_readwrite("max_batch_tokens", &BatchPolicy::max_batch_tokens);
  m.def("choose_batch_size", &choose_batch_size, py::arg("policy"), py::arg("seq_len"));

  py::class_<ScoreProblem>(m, "ScoreProblem")
      .def(py::init<>())
      .def_readwrite("ids_input", &ScoreProblem::ids_input)
      .def_readwrite("mask_input", &ScoreProblem::mask_input)
      .def_readwrite("score_output", &ScoreProblem::score_output)
      .def_readwrite("pad_id", &ScoreProblem::pad_id)
      .def_readwrite("ids", &ScoreProblem::ids)
      .def_readwrite("suffixes", &ScoreProblem::suffixes)
      .def_readwrite("extras", &ScoreProblem::extras)
      .def_readwrite("column_targets", &ScoreProblem::column_targets)
      .def_readwrite("horizons", &ScoreProblem::horizons)
      .def_readwrite("n_targets", &ScoreProblem::n_targets);

  py::class_<GradientProblem>(m, "GradientProblem")
      .def(py::init<>())
      .def_readwrite("embeds_input", &GradientProblem::embeds_input)
      .def_readwrite("mask_input", &GradientProblem::mask_input)
      .def_readwrite("score_output", &GradientProblem::score_output)
      .def_readwrite("gradient_output", &GradientProblem::gradient_output)
      .def_readwrite("ids", &GradientProblem::ids)
      .def_readwrite("suffixes", &GradientProblem::suffixes)
      .def_readwrite("extras", &GradientProblem::extras);

  py::class_<AttributionResult>(m, "AttributionResult")
      .def_property_readonly("matrix", [](const AttributionResult& r) { return matrix_of(r.matrix, r.n_positions, r.n_targets); })
      .def_property_readonly("standard_error", [](const AttributionResult& r) -> py::object {
        if (r.standard_error.empty()) return py::none();
        return matrix_of(r.standard_error, r.n_positions, r.n_targets);
      })
      .def_property_readonly("clean_scores", [](const AttributionResult& r) { return py::array_t<double>(r.clean_scores.size(), r.clean_scores.data()); })
      .def_property_readonly("delta", [](const AttributionResult& r) -> py::object {
        if (r.delta.empty()) return py::none();
        return py::array_t<double>(r.delta.size(), r.delta.data());
      })
      .def_property_readonly("steps", [](const AttributionResult& r) -> py::object {
        if (r.steps.empty()) return py::none();
        return py::array_t<int64_t>(r.steps.size(), r.steps.data());
      })
      .def_readonly("rows_run", &AttributionResult::rows_run)
      .def_readonly("samples", &AttributionResult::samples)
      .def_readonly("seconds", &AttributionResult::seconds);

  m.def("occlusion", [](const Session& s, const ScoreProblem& problem, int64_t window, int64_t stride, int64_t baseline_id,
                        const BatchPolicy& policy, const py::object& progress) {
    OcclusionParams params{window, stride, baseline_id};
    return run_score_method(s, problem, policy, progress, [&](ScoreEvaluator& e) { return occlusion(e, params); });
  }, py::arg("session"), py::arg("problem"), py::arg("window"), py::arg("stride"), py::arg("baseline_id"),
     py::arg("policy"), py::arg("progress") = py::none());

  m.def("feature_ablation", [](const Session& s, const ScoreProblem& problem, std::vector<int64_t> groups,
                               int64_t baseline_id, const BatchPolicy& policy, const py::object& progress) {
    AblationParams params{std::move(groups), baseline_id};
    return run_score_method(s, problem, policy, progress, [&](ScoreEvaluator& e) { return feature_ablation(e, params); });
  }, py::arg("session"), py::arg("problem"), py::arg("groups"), py::arg("baseline_id"), py::arg("policy"),
     py::arg("progress") = py::none());

  m.def("shapley_sampling", [](const Session& s, const ScoreProblem& problem, std::vector<int64_t> groups,
                               int64_t baseline_id, int64_t n_permutations, uint64_t seed, int64_t max_evaluations,
                               double max_seconds, std::vector<int64_t> permutations, const BatchPolicy& policy,
                               const py::object& progress) {
    ShapleyParams params{std::move(groups), baseline_id, n_permutations, seed, max_evaluations, max_seconds,
                         std::move(permutations)};
    return run_score_method(s, problem, policy, progress, [&](ScoreEvaluator& e) { return shapley_sampling(e, params); });
  }, py::arg("session"), py::arg("problem"), py::arg("groups"), py::arg("baseline_id"), py::arg("n_permutations"),
     py::arg("seed"), py::arg("max_evaluations"), py::arg("max_seconds"), py::arg("permutations"), py::arg("policy"),
     py::arg("progress") = py::none());

  auto surrogate_params = [](const std::string& kind, std::vector<int64_t> groups, int64_t baseline_id,
                             int64_t n_samples, uint64_t seed, double kernel_width, double ridge) {
    SurrogateParams params;
    if (kind == "kernel_shap") params.kind = SurrogateKind::kKernelShap;
    else if (kind == "lime") params.kind = SurrogateKind::kLime;
    else throw InvalidInputError("unknown surrogate '" + kind + "' (possible: kernel_shap, lime)");
    params.groups = std::move(groups);
    params.baseline_id = baseline_id;
    params.n_samples = n_samples;
    params.seed = seed;
    params.kernel_width = kernel_width;
    params.ridge = ridge;
    return params;
  };
  m.def("surrogate", [surrogate_params](const Session& s, const ScoreProblem& problem, const std::string& kind,
                                        std::vector<int64_t> groups, int64_t baseline_id, int64_t n_samples, uint64_t seed,
                                        double kernel_width, double ridge, const BatchPolicy& policy,
                                        const py::object& progress) {
    auto params = surrogate_params(kind, std::move(groups), baseline_id, n_samples, seed, kernel_width, ridge);
    return run_score_method(s, problem, policy, progress, [&](ScoreEvaluator& e) { return surrogate(e, params); });
  }, py::arg("session"), py::arg("problem"), py::arg("kind"), py::arg("groups"), py::arg("baseline_id"),
     py::arg("n_samples"), py::arg("seed"), py::arg("kernel_width"), py::arg("ridge"), py::arg("policy"),
     py::arg("progress") = py::none());
  m.def("surrogate_samples", [surrogate_params](const std::string& kind, int64_t m_features, int64_t n_samples,
                                                uint64_t seed, double kernel_width) {
    std::vector<int64_t> groups(m_features);
    for (int64_t i = 0; i < m_features; ++i) groups[i] = i;
    auto samples = surrogate_samples(surrogate_params(kind, groups, 0, n_samples, seed, kernel_width, 0.0), m_features);
    const int64_t n = static_cast<int64_t>(samples.weights.size());
    return py::make_tuple(matrix_of(samples.coalitions, n, m_features),
                          py::array_t<double>(samples.weights.size(), samples.weights.data()));
  }, py::arg("kind"), py::arg("n_features"), py::arg("n_samples"), py::arg("seed"), py::arg("kernel_width") = 1.0);

  using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
  m.def("integrated_gradients", [](const Session& s, const GradientProblem& problem, const FloatArray& embeddings,
                                   const FloatArray& baseline, const std::string& method, int64_t n_steps, double tolerance,
                                   int64_t max_steps, const std::string& aggregation, const BatchPolicy& policy,
                                   const py::object& progress) {
    IntegratedGradientsParams params{method, n_steps, tolerance, max_steps, aggregation_of(aggregation)};
    return run_gradient_method(s, problem, embeddings, baseline, policy, progress,
                               [&](GradientRunner& r) { return integrated_gradients(r, params); });
  }, py::arg("session"), py::arg("problem"), py::arg("embeddings"), py::arg("baseline"), py::arg("method"),
     py::arg("n_steps"), py::arg("tolerance"), py::arg("max_steps"), py::arg("aggregation"), py::arg("policy"),
     py::arg("progress") = py::none());
  m.def("gradient_at_input", [](const Session& s, const GradientProblem& problem, const FloatArray& embeddings,
                                const std::string& kind, const std::string& aggregation, const BatchPolicy& policy,
                                const py::object& progress) {
    if (kind != "saliency" && kind != "input_x_gradient") {
      throw InvalidInputError("unknown gradient method '" + kind + "' (possible: saliency, input_x_gradient)");
    }
    const Aggregation agg = aggregation_of(aggregation);
    // Gradients at the input need no baseline; a zero one keeps the runner's shape checks simple.
    FloatArray zero_baseline(std::vector<py::ssize_t>{
        static_cast<py::ssize_t>(problem.ids.size()), embeddings.ndim() == 2 ? embeddings.shape(1) : 0});
    std::fill(zero_baseline.mutable_data(), zero_baseline.mutable_data() + zero_baseline.size(), 0.0f);
    return run_gradient_method(s, problem, embeddings, zero_baseline, policy, progress, [&](GradientRunner& r) {
      return kind == "saliency" ? saliency(r, agg) : input_x_gradient(r, agg);
    });
  }, py::arg("session"), py::arg("problem"), py::arg("embeddings"), py::arg("kind"), py::arg("aggregation"),
     py::arg("policy"), py::arg("progress") = py::none());

  // Pure math, exposed for tests and for reproducing samples.
  m.def("quadrature", [](const std::string& method, int n_steps) {
    auto q = math::quadrature(method, n_steps);
    return py::make_tuple(py::array_t<double>(q.alphas.size(), q.alphas.data()),
                          py::array_t<double>(q.weights.size(), q.weights.data()));
  }, py::arg("method"), py::arg("n_steps"));
  m.def("quadrature_methods", &math::quadrature_methods);
  m.def("occlusion_windows", &math::occlusion_windows, py::arg("n"), py::arg("window"), py::arg("stride"));
  m.def("permutations", [](int64_t m_features, int64_t count, uint64_t seed) {
    math::Rng rng(seed);
    std::vector<int64_t> flat;
    for (int64_t i = 0; i < count; ++i) {
      auto p = rng.permutation(m_features);
      flat.insert(flat.end(), p.begin(), p.end());
    }
    return matrix_of(flat, count, m_features);
  }, py::arg("n_features"), py::arg("count"), py::arg("seed"));
  m.def("shapley_kernel_weight", &math::shapley_kernel_weight, py::arg("m"), py::arg("k"));
  m.def("weighted_least_squares", [](const py::array_t<double, py::array::c_style | py::array::forcecast>& x,
                                     const py::array_t<double, py::array::c_style | py::array::forcecast>& y,
                                     const py::array_t<double, py::array::c_style | py::array::forcecast>& w, double ridge) {
    if (x.ndim() != 2 || y.ndim() != 2 || w.ndim() != 1 || y.shape(0) != x.shape(0) || w.shape(0) != x.shape(0)) {
      throw InvalidInputError("expected x [n, m], y [n, k], w [n]");
    }
    std::vector<double> xv(x.data(), x.data() + x.size()), yv(y.data(), y.data() + y.size()), wv(w.data(), w.data() + w.size());
    auto beta = math::weighted_least_squares(xv, yv, wv, x.shape(0), x.shape(1), y.shape(1), ridge);
    return matrix_of(beta, x.shape(1) + 1, y.shape(1));
  }, py::arg("x"), py::arg("y"), py::arg("w"), py::arg("ridge") = 0.0);
}

}  // namespace attribfast::bindings
