// Attribution methods and their pure math, exposed to the Python pipeline.
#include <pybind11/stl.h>

#include <type_traits>

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

// The largest token count, hidden size or feature count a binding accepts: far beyond any model,
// small enough that products of two stay in int64 and tables of them are not absurd.
constexpr int64_t kMaxDimension = 1 << 24;
constexpr int64_t kInt64Min = std::numeric_limits<int64_t>::min();

// A checked int64 field: set through int_arg, so Python sees an InvalidInputError naming it.
template <typename Class>
void bind_int(py::class_<Class>& cls, const char* name, int64_t Class::*field, int64_t lo, int64_t hi = kInt64Max) {
  cls.def_property(name, [field](const Class& c) { return c.*field; },
                   [field, name, lo, hi](Class& c, const py::object& value) { c.*field = int_arg(value, name, lo, hi); });
}

// A checked list (or list of lists) of int64.
template <typename Class, typename Vector>
void bind_ints(py::class_<Class>& cls, const char* name, Vector Class::*field, int64_t lo, int64_t hi = kInt64Max) {
  cls.def_property(name, [field](const Class& c) { return c.*field; },
                   [field, name, lo, hi](Class& c, const py::object& values) {
                     if constexpr (std::is_same_v<Vector, std::vector<int64_t>>) {
                       c.*field = int_list_arg(values, name, lo, hi);
                     } else {
                       c.*field = int_lists_arg(values, name, lo, hi);
                     }
                   });
}

}  // namespace

void bind_methods(py::module_& m) {
  py::class_<ExtraInput>(m, "ExtraInput")
      .def(py::init(&make_extra), py::arg("name"), py::arg("data"))
      .def_readonly("name", &ExtraInput::name);

  py::class_<BatchPolicy> batch_policy(m, "BatchPolicy");
  batch_policy.def(py::init<>());
  // batch_size 0 and max_batch_tokens 0 mean "choose" and "no limit"; the rest are positive.
  bind_int(batch_policy, "batch_size", &BatchPolicy::batch_size, 0);
  bind_int(batch_policy, "memory_budget", &BatchPolicy::memory_budget, 1);
  bind_int(batch_policy, "hidden_size", &BatchPolicy::hidden_size, 1, kMaxDimension);
  bind_int(batch_policy, "num_heads", &BatchPolicy::num_heads, 1, kMaxDimension);
  bind_int(batch_policy, "max_batch_size", &BatchPolicy::max_batch_size, 1);
  bind_int(batch_policy, "max_batch_tokens", &BatchPolicy::max_batch_tokens, 0);
  batch_policy.def_readwrite("reuse_prefix", &BatchPolicy::reuse_prefix);
  m.def("choose_batch_size", [](const BatchPolicy& p, const py::object& seq_len) {
    return choose_batch_size(p, int_arg(seq_len, "seq_len", 1, kMaxDimension));
  }, py::arg("policy"), py::arg("seq_len"));

  // Token ids are any int64 (the model rejects ids outside its vocabulary); -1 marks a padding
  // column in column_targets and "every position" in horizons.
  py::class_<ScoreProblem> score_problem(m, "ScoreProblem");
  score_problem.def(py::init<>())
      .def_readwrite("ids_input", &ScoreProblem::ids_input)
      .def_readwrite("mask_input", &ScoreProblem::mask_input)
      .def_readwrite("score_output", &ScoreProblem::score_output)
      .def_readwrite("extras", &ScoreProblem::extras);
  bind_int(score_problem, "pad_id", &ScoreProblem::pad_id, kInt64Min);
  bind_ints(score_problem, "ids", &ScoreProblem::ids, kInt64Min);
  bind_ints(score_problem, "suffixes", &ScoreProblem::suffixes, kInt64Min);
  bind_ints(score_problem, "column_targets", &ScoreProblem::column_targets, -1);
  bind_ints(score_problem, "horizons", &ScoreProblem::horizons, -1);
  bind_int(score_problem, "n_targets", &ScoreProblem::n_targets, 1);
  // The prefix-reuse graphs (causal LMs): the problem keeps both sessions alive while it lives.
  score_problem.def(
      "set_prefix_reuse",
      [](ScoreProblem& problem, const Session& prefix, const Session& suffix, const py::object& bucket,
         const py::object& min_prefix, const std::string& score_output) {
        problem.prefix_reuse.prefix = &prefix;
        problem.prefix_reuse.suffix = &suffix;
        problem.prefix_reuse.bucket = int_arg(bucket, "bucket", 0);
        problem.prefix_reuse.min_prefix = int_arg(min_prefix, "min_prefix", 1);
        problem.prefix_reuse.score_output = score_output;
      },
      py::arg("prefix"), py::arg("suffix"), py::arg("bucket") = 0, py::arg("min_prefix") = 1,
      py::arg("score_output") = "suffix_scores", py::keep_alive<1, 2>(), py::keep_alive<1, 3>());
  score_problem.def_property_readonly("reuses_prefix",
                                      [](const ScoreProblem& problem) { return problem.prefix_reuse.enabled(); });

  py::class_<GradientProblem> gradient_problem(m, "GradientProblem");
  gradient_problem.def(py::init<>())
      .def_readwrite("embeds_input", &GradientProblem::embeds_input)
      .def_readwrite("mask_input", &GradientProblem::mask_input)
      .def_readwrite("score_output", &GradientProblem::score_output)
      .def_readwrite("gradient_output", &GradientProblem::gradient_output)
      .def_readwrite("extras", &GradientProblem::extras);
  bind_ints(gradient_problem, "ids", &GradientProblem::ids, kInt64Min);
  bind_ints(gradient_problem, "suffixes", &GradientProblem::suffixes, kInt64Min);
  bind_ints(gradient_problem, "target_group", &GradientProblem::target_group, 0);
  bind_ints(gradient_problem, "target_slot", &GradientProblem::target_slot, 0);

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
      .def_property_readonly("baseline_scores", [](const AttributionResult& r) -> py::object {
        if (r.baseline_scores.empty()) return py::none();
        return py::array_t<double>(r.baseline_scores.size(), r.baseline_scores.data());
      })
      .def_readonly("rows_run", &AttributionResult::rows_run)
      .def_readonly("token_positions", &AttributionResult::token_positions)
      .def_readonly("samples", &AttributionResult::samples)
      .def_readonly("seconds", &AttributionResult::seconds);

  m.def("occlusion", [](const Session& s, const ScoreProblem& problem, const py::object& window,
                        const py::object& stride, const py::object& baseline_id, const BatchPolicy& policy,
                        const py::object& progress) {
    OcclusionParams params{int_arg(window, "window", 1), int_arg(stride, "stride", 1),
                           int_arg(baseline_id, "baseline_id")};
    return run_score_method(s, problem, policy, progress, [&](ScoreEvaluator& e) { return occlusion(e, params); });
  }, py::arg("session"), py::arg("problem"), py::arg("window"), py::arg("stride"), py::arg("baseline_id"),
     py::arg("policy"), py::arg("progress") = py::none());

  m.def("feature_ablation", [](const Session& s, const ScoreProblem& problem, const py::object& groups,
                               const py::object& baseline_id, const BatchPolicy& policy, const py::object& progress) {
    AblationParams params{int_list_arg(groups, "groups", -1), int_arg(baseline_id, "baseline_id")};
    return run_score_method(s, problem, policy, progress, [&](ScoreEvaluator& e) { return feature_ablation(e, params); });
  }, py::arg("session"), py::arg("problem"), py::arg("groups"), py::arg("baseline_id"), py::arg("policy"),
     py::arg("progress") = py::none());

  m.def("shapley_sampling", [](const Session& s, const ScoreProblem& problem, const py::object& groups,
                               const py::object& baseline_id, const py::object& n_permutations, const py::object& seed,
                               const py::object& max_evaluations, const py::object& max_seconds,
                               const py::object& permutations, const BatchPolicy& policy, const py::object& progress) {
    ShapleyParams params{int_list_arg(groups, "groups", -1),
                         int_arg(baseline_id, "baseline_id"),
                         int_arg(n_permutations, "n_permutations", 1),
                         seed_arg(seed, "seed"),
                         int_arg(max_evaluations, "max_evaluations"),
                         real_arg(max_seconds, "max_seconds"),
                         int_list_arg(permutations, "permutations")};
    return run_score_method(s, problem, policy, progress, [&](ScoreEvaluator& e) { return shapley_sampling(e, params); });
  }, py::arg("session"), py::arg("problem"), py::arg("groups"), py::arg("baseline_id"), py::arg("n_permutations"),
     py::arg("seed"), py::arg("max_evaluations"), py::arg("max_seconds"), py::arg("permutations"), py::arg("policy"),
     py::arg("progress") = py::none());

  // Explicit variants [n_variants, n] scored in one batched sweep (faithfulness curves): returns
  // (scores [n_variants, n_targets], clean scores, rows run, token positions, seconds).
  m.def("score_variants", [](const Session& s, const ScoreProblem& problem,
                             const py::array_t<int64_t, py::array::c_style | py::array::forcecast>& variants,
                             const py::object& segments, const BatchPolicy& policy, const py::object& progress) {
    if (variants.ndim() != 2 || variants.shape(1) != static_cast<py::ssize_t>(problem.ids.size())) {
      throw InvalidInputError("variants must be 2-D [n_variants, " + std::to_string(problem.ids.size()) + "]");
    }
    const int64_t count = variants.shape(0), n = variants.shape(1);
    std::vector<std::vector<int64_t>> rows(count);
    for (int64_t v = 0; v < count; ++v) rows[v].assign(variants.data() + v * n, variants.data() + (v + 1) * n);
    const auto segment_of = segments.is_none() ? std::vector<int64_t>{} : int_list_arg(segments, "segments", -1);
    struct Scored {
      std::vector<double> scores, clean;
      int64_t rows_run = 0, token_positions = 0;
      double seconds = 0.0;
    };
    auto scored = run_off_gil(s.runtime(), progress, [&](RunControl& control, const ProgressFn& report) {
      ScoreEvaluator evaluator(s, problem, policy, &control, report);
      Scored out;
      out.scores = evaluator.evaluate(rows, segment_of);
      out.clean = evaluator.clean_scores();
      out.rows_run = evaluator.rows_run();
      out.token_positions = evaluator.token_positions();
      out.seconds = evaluator.seconds();
      return out;
    });
    return py::make_tuple(matrix_of(scored.scores, count, problem.n_targets),
                          py::array_t<double>(scored.clean.size(), scored.clean.data()), scored.rows_run,
                          scored.token_positions, scored.seconds);
  }, py::arg("session"), py::arg("problem"), py::arg("variants"), py::arg("segments"), py::arg("policy"),
     py::arg("progress") = py::none());

  auto surrogate_params = [](const std::string& kind, std::vector<int64_t> groups, int64_t baseline_id,
                             const py::object& n_samples, const py::object& seed, const py::object& kernel_width,
                             const py::object& ridge) {
    SurrogateParams params;
    if (kind == "kernel_shap") params.kind = SurrogateKind::kKernelShap;
    else if (kind == "lime") params.kind = SurrogateKind::kLime;
    else throw InvalidInputError("unknown surrogate '" + kind + "' (possible: kernel_shap, lime)");
    params.groups = std::move(groups);
    params.baseline_id = baseline_id;
    params.n_samples = int_arg(n_samples, "n_samples", 1, kMaxSamples);
    params.seed = seed_arg(seed, "seed");
    params.kernel_width = real_arg(kernel_width, "kernel_width");
    params.ridge = real_arg(ridge, "ridge");
    return params;
  };
  m.def("surrogate", [surrogate_params](const Session& s, const ScoreProblem& problem, const std::string& kind,
                                        const py::object& groups, const py::object& baseline_id,
                                        const py::object& n_samples, const py::object& seed,
                                        const py::object& kernel_width, const py::object& ridge,
                                        const BatchPolicy& policy, const py::object& progress) {
    auto params = surrogate_params(kind, int_list_arg(groups, "groups", -1), int_arg(baseline_id, "baseline_id"),
                                   n_samples, seed, kernel_width, ridge);
    return run_score_method(s, problem, policy, progress, [&](ScoreEvaluator& e) { return surrogate(e, params); });
  }, py::arg("session"), py::arg("problem"), py::arg("kind"), py::arg("groups"), py::arg("baseline_id"),
     py::arg("n_samples"), py::arg("seed"), py::arg("kernel_width"), py::arg("ridge"), py::arg("policy"),
     py::arg("progress") = py::none());
  m.def("surrogate_samples", [surrogate_params](const std::string& kind, const py::object& n_features,
                                                const py::object& n_samples, const py::object& seed,
                                                const py::object& kernel_width) {
    const int64_t m_features = int_arg(n_features, "n_features", 1, kMaxDimension);
    std::vector<int64_t> groups(m_features);
    for (int64_t i = 0; i < m_features; ++i) groups[i] = i;
    auto samples = surrogate_samples(surrogate_params(kind, groups, 0, n_samples, seed, kernel_width, py::float_(0.0)),
                                     m_features);
    const int64_t n = static_cast<int64_t>(samples.weights.size());
    return py::make_tuple(matrix_of(samples.coalitions, n, m_features),
                          py::array_t<double>(samples.weights.size(), samples.weights.data()));
  }, py::arg("kind"), py::arg("n_features"), py::arg("n_samples"), py::arg("seed"), py::arg("kernel_width") = 1.0);

  using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
  m.def("integrated_gradients", [](const Session& s, const GradientProblem& problem, const FloatArray& embeddings,
                                   const FloatArray& baseline, const std::string& method, const py::object& n_steps,
                                   const py::object& tolerance, const py::object& relative_tolerance,
                                   const py::object& max_steps, const std::string& aggregation,
                                   const BatchPolicy& policy, const py::object& progress) {
    const auto params = integrated_gradients_args(method, n_steps, tolerance, relative_tolerance, max_steps, aggregation);
    return run_gradient_method(s, problem, embeddings, baseline, policy, progress,
                               [&](GradientRunner& r) { return integrated_gradients(r, params); });
  }, py::arg("session"), py::arg("problem"), py::arg("embeddings"), py::arg("baseline"), py::arg("method"),
     py::arg("n_steps"), py::arg("tolerance"), py::arg("relative_tolerance"), py::arg("max_steps"),
     py::arg("aggregation"), py::arg("policy"),
     py::arg("progress") = py::none());
  m.def("gradient_at_input", [](const Session& s, const GradientProblem& problem, const FloatArray& embeddings,
                                const std::string& kind, const std::string& aggregation, const BatchPolicy& policy,
                                const py::object& progress) {
    if (kind != "saliency" && kind != "input_x_gradient") {
      throw InvalidInputError("unknown gradient method '" + kind + "' (possible: saliency, input_x_gradient)");
    }
    const Aggregation agg = aggregation_arg(aggregation);
    // Gradients at the input need no baseline; a zero one keeps the runner's shape checks simple.
    FloatArray zero_baseline(std::vector<py::ssize_t>{
        static_cast<py::ssize_t>(problem.ids.size()), embeddings.ndim() == 2 ? embeddings.shape(1) : 0});
    std::fill(zero_baseline.mutable_data(), zero_baseline.mutable_data() + zero_baseline.size(), 0.0f);
    return run_gradient_method(s, problem, embeddings, zero_baseline, policy, progress, [&](GradientRunner& r) {
      return kind == "saliency" ? saliency(r, agg) : input_x_gradient(r, agg);
    });
  }, py::arg("session"), py::arg("problem"), py::arg("embeddings"), py::arg("kind"), py::arg("aggregation"),
     py::arg("policy"), py::arg("progress") = py::none());

  using DoubleArray = py::array_t<double, py::array::c_style | py::array::forcecast>;
  m.def("sampled_gradients", [](const Session& s, const GradientProblem& problem, const FloatArray& embeddings,
                                const FloatArray& noise, const FloatArray& baselines, const py::object& baseline_index,
                                const DoubleArray& alphas, const DoubleArray& weights, bool absolute,
                                const std::string& nt_type, const std::string& aggregation, const BatchPolicy& policy,
                                const py::object& progress) {
    if (noise.ndim() != 3 || baselines.ndim() != 3 || alphas.ndim() != 2 || weights.ndim() != 1) {
      throw InvalidInputError("expected noise [n_samples, n, hidden], baselines [k, n, hidden], alphas [n_samples, K], "
                              "weights [K]");
    }
    SampledGradientParams params;
    params.noise.assign(noise.data(), noise.data() + noise.size());
    params.baselines.assign(baselines.data(), baselines.data() + baselines.size());
    params.baseline_index = int_list_arg(baseline_index, "baseline_index", 0);
    params.alphas.assign(alphas.data(), alphas.data() + alphas.size());
    params.weights.assign(weights.data(), weights.data() + weights.size());
    params.absolute = absolute;
    params.nt_type = nt_type_arg(nt_type);
    params.aggregation = aggregation_arg(aggregation);
    // The runner's own baseline is unused here (each sample names its own); zeros pass its checks.
    FloatArray zero_baseline(std::vector<py::ssize_t>{
        static_cast<py::ssize_t>(problem.ids.size()), embeddings.ndim() == 2 ? embeddings.shape(1) : 0});
    std::fill(zero_baseline.mutable_data(), zero_baseline.mutable_data() + zero_baseline.size(), 0.0f);
    return run_gradient_method(s, problem, embeddings, zero_baseline, policy, progress,
                               [&](GradientRunner& r) { return run_sweep(r, *sampled_gradients_sweep(r, std::move(params))); });
  }, py::arg("session"), py::arg("problem"), py::arg("embeddings"), py::arg("noise"), py::arg("baselines"),
     py::arg("baseline_index"), py::arg("alphas"), py::arg("weights"), py::arg("absolute"), py::arg("nt_type"),
     py::arg("aggregation"), py::arg("policy"), py::arg("progress") = py::none());

  // Pure math, exposed for tests and for reproducing samples.
  m.def("quadrature", [](const std::string& method, const py::object& n_steps) {
    // Ctrl-C stops a long Gauss-Legendre computation (this runs holding the GIL, on the caller's thread).
    auto q = math::quadrature(method, int_arg(n_steps, "n_steps", 1, math::kMaxQuadratureSteps), [] {
      if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    });
    return py::make_tuple(py::array_t<double>(q.alphas.size(), q.alphas.data()),
                          py::array_t<double>(q.weights.size(), q.weights.data()));
  }, py::arg("method"), py::arg("n_steps"));
  m.def("quadrature_methods", &math::quadrature_methods);
  m.def("occlusion_windows", [](const py::object& n, const py::object& window, const py::object& stride) {
    return math::occlusion_windows(int_arg(n, "n", 1), int_arg(window, "window", 1), int_arg(stride, "stride", 1));
  }, py::arg("n"), py::arg("window"), py::arg("stride"));
  m.def("permutations", [](const py::object& n_features, const py::object& permutations, const py::object& seed) {
    const int64_t m_features = int_arg(n_features, "n_features", 1, kMaxDimension);
    const int64_t count = int_arg(permutations, "count", 0, kMaxDimension);
    math::Rng rng(seed_arg(seed, "seed"));
    std::vector<int64_t> flat;
    for (int64_t i = 0; i < count; ++i) {
      auto p = rng.permutation(m_features);
      flat.insert(flat.end(), p.begin(), p.end());
    }
    return matrix_of(flat, count, m_features);
  }, py::arg("n_features"), py::arg("count"), py::arg("seed"));
  m.def("shapley_kernel_weight", [](const py::object& m_features, const py::object& k) {
    return math::shapley_kernel_weight(int_arg(m_features, "m", 1), int_arg(k, "k"));
  }, py::arg("m"), py::arg("k"));
  m.def("weighted_least_squares", [](const py::array_t<double, py::array::c_style | py::array::forcecast>& x,
                                     const py::array_t<double, py::array::c_style | py::array::forcecast>& y,
                                     const py::array_t<double, py::array::c_style | py::array::forcecast>& w,
                                     const py::object& ridge) {
    if (x.ndim() != 2 || y.ndim() != 2 || w.ndim() != 1 || y.shape(0) != x.shape(0) || w.shape(0) != x.shape(0)) {
      throw InvalidInputError("expected x [n, m], y [n, k], w [n]");
    }
    std::vector<double> xv(x.data(), x.data() + x.size()), yv(y.data(), y.data() + y.size()), wv(w.data(), w.data() + w.size());
    auto beta = math::weighted_least_squares(xv, yv, wv, x.shape(0), x.shape(1), y.shape(1), real_arg(ridge, "ridge"));
    return matrix_of(beta, x.shape(1) + 1, y.shape(1));
  }, py::arg("x"), py::arg("y"), py::arg("w"), py::arg("ridge") = py::float_(0.0));
}

}  // namespace attribfast::bindings
