// Pooled corpus sweeps: one call attributes many texts, their variants evaluated in shared batches.
#include <pybind11/stl.h>

#include "attribfast/math.h"
#include "attribfast/pooled.h"
#include "common.h"

namespace attribfast::bindings {

namespace {

// Runs the sweep with the GIL released: progress and Ctrl-C cover every text.
py::list run_pooled(const Session& session, const std::vector<ScoreProblem>& problems, const BatchPolicy& policy,
                    const py::object& progress, const ProposeFn& propose) {
  auto results = run_off_gil(session.runtime(), progress, [&](RunControl& control, const ProgressFn& report) {
    return pooled_sweep(session, problems, policy, &control, report, propose);
  });
  py::list out;
  for (auto& result : results) out.append(py::cast(std::move(result)));
  return out;
}

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using DoubleArray = py::array_t<double, py::array::c_style | py::array::forcecast>;

// The problems with the embedding matrix (borrowed: the caller's array outlives the call) and each
// text's baseline [n, hidden] (zeros where the method takes no baseline).
std::vector<GradientProblem> with_embeddings(std::vector<GradientProblem> problems, const FloatArray& embeddings,
                                             const std::vector<FloatArray>* baselines) {
  if (embeddings.ndim() != 2) throw InvalidInputError("the embedding matrix must be 2-D [vocab, hidden]");
  if (baselines && baselines->size() != problems.size()) throw InvalidInputError("baselines needs one array per text");
  for (size_t i = 0; i < problems.size(); ++i) {
    auto& problem = problems[i];
    problem.embeddings = embeddings.data();
    problem.vocab_size = embeddings.shape(0);
    problem.hidden_size = embeddings.shape(1);
    if (baselines) {
      const auto& baseline = (*baselines)[i];
      problem.baseline.assign(baseline.data(), baseline.data() + baseline.size());
    } else {
      problem.baseline.assign(problem.ids.size() * problem.hidden_size, 0.0f);
    }
  }
  return problems;
}

py::list run_pooled_gradients(const Session& session, std::vector<GradientProblem> problems,
                              const BatchPolicy& policy, const py::object& progress, const MakeSweep& make) {
  auto results = run_off_gil(session.runtime(), progress, [&](RunControl& control, const ProgressFn& report) {
    return pooled_gradient_sweep(session, std::move(problems), policy, &control, report, make);
  });
  py::list out;
  for (auto& result : results) out.append(py::cast(std::move(result)));
  return out;
}

// One group vector per text.
std::vector<std::vector<int64_t>> groups_per_text(const py::object& groups, size_t n_texts) {
  auto out = int_lists_arg(groups, "groups", -1);
  if (out.size() != n_texts) throw InvalidInputError("groups needs one list per text");
  return out;
}

}  // namespace

void bind_pooled(py::module_& m) {
  m.def("pooled_occlusion", [](const Session& s, const std::vector<ScoreProblem>& problems, const py::object& window,
                               const py::object& stride, const py::object& baseline_id, const BatchPolicy& policy,
                               const py::object& progress) {
    OcclusionParams params{int_arg(window, "window", 1), int_arg(stride, "stride", 1),
                           int_arg(baseline_id, "baseline_id")};
    return run_pooled(s, problems, policy, progress,
                      [&](size_t, ScoreEvaluator& e) { return propose_occlusion(e, params); });
  }, py::arg("session"), py::arg("problems"), py::arg("window"), py::arg("stride"), py::arg("baseline_id"),
     py::arg("policy"), py::arg("progress") = py::none());

  m.def("pooled_feature_ablation", [](const Session& s, const std::vector<ScoreProblem>& problems,
                                      const py::object& groups, const py::object& baseline_id,
                                      const BatchPolicy& policy, const py::object& progress) {
    const auto per_text = groups_per_text(groups, problems.size());
    const int64_t baseline = int_arg(baseline_id, "baseline_id");
    return run_pooled(s, problems, policy, progress, [&](size_t i, ScoreEvaluator& e) {
      return propose_feature_ablation(e, AblationParams{per_text[i], baseline});
    });
  }, py::arg("session"), py::arg("problems"), py::arg("groups"), py::arg("baseline_id"), py::arg("policy"),
     py::arg("progress") = py::none());

  // A fixed number of permutations per text (no budget), each text's drawn from the same seed as
  // a per-text call draws them.
  m.def("pooled_shapley_sampling", [](const Session& s, const std::vector<ScoreProblem>& problems,
                                      const py::object& groups, const py::object& baseline_id,
                                      const py::object& n_permutations, const py::object& seed,
                                      const BatchPolicy& policy, const py::object& progress) {
    const auto per_text = groups_per_text(groups, problems.size());
    ShapleyParams params;
    params.baseline_id = int_arg(baseline_id, "baseline_id");
    params.n_permutations = int_arg(n_permutations, "n_permutations", 1);
    params.seed = seed_arg(seed, "seed");
    return run_pooled(s, problems, policy, progress, [&](size_t i, ScoreEvaluator& e) {
      ShapleyParams own = params;
      own.groups = per_text[i];
      return propose_shapley_sampling(e, own);
    });
  }, py::arg("session"), py::arg("problems"), py::arg("groups"), py::arg("baseline_id"), py::arg("n_permutations"),
     py::arg("seed"), py::arg("policy"), py::arg("progress") = py::none());

  m.def("pooled_surrogate", [](const Session& s, const std::vector<ScoreProblem>& problems, const std::string& kind,
                               const py::object& groups, const py::object& baseline_id, const py::object& n_samples,
                               const py::object& seed, const py::object& kernel_width, const py::object& ridge,
                               const BatchPolicy& policy, const py::object& progress) {
    const auto per_text = groups_per_text(groups, problems.size());
    SurrogateParams params;
    if (kind == "kernel_shap") params.kind = SurrogateKind::kKernelShap;
    else if (kind == "lime") params.kind = SurrogateKind::kLime;
    else throw InvalidInputError("unknown surrogate '" + kind + "' (possible: kernel_shap, lime)");
    params.baseline_id = int_arg(baseline_id, "baseline_id");
    params.n_samples = int_arg(n_samples, "n_samples", 1, kMaxSamples);
    params.seed = seed_arg(seed, "seed");
    params.kernel_width = real_arg(kernel_width, "kernel_width");
    params.ridge = real_arg(ridge, "ridge");
    return run_pooled(s, problems, policy, progress, [&](size_t i, ScoreEvaluator& e) {
      SurrogateParams own = params;
      own.groups = per_text[i];
      return propose_surrogate(e, own);
    });
  }, py::arg("session"), py::arg("problems"), py::arg("kind"), py::arg("groups"), py::arg("baseline_id"),
     py::arg("n_samples"), py::arg("seed"), py::arg("kernel_width"), py::arg("ridge"), py::arg("policy"),
     py::arg("progress") = py::none());

  // Gradient methods: every round of every text's method in shared batches (pooled.h).
  m.def("pooled_integrated_gradients", [](const Session& s, const std::vector<GradientProblem>& problems,
                                          const FloatArray& embeddings, const std::vector<FloatArray>& baselines,
                                          const std::string& method, const py::object& n_steps,
                                          const py::object& tolerance, const py::object& relative_tolerance,
                                          const py::object& max_steps, const std::string& aggregation,
                                          const BatchPolicy& policy, const py::object& progress) {
    const auto params = integrated_gradients_args(method, n_steps, tolerance, relative_tolerance, max_steps, aggregation);
    return run_pooled_gradients(s, with_embeddings(problems, embeddings, &baselines), policy, progress,
                                [&](size_t, GradientRunner& r) { return integrated_gradients_sweep(r, params); });
  }, py::arg("session"), py::arg("problems"), py::arg("embeddings"), py::arg("baselines"), py::arg("method"),
     py::arg("n_steps"), py::arg("tolerance"), py::arg("relative_tolerance"), py::arg("max_steps"),
     py::arg("aggregation"), py::arg("policy"), py::arg("progress") = py::none());

  m.def("pooled_gradient_at_input", [](const Session& s, const std::vector<GradientProblem>& problems,
                                       const FloatArray& embeddings, const std::string& kind,
                                       const std::string& aggregation, const BatchPolicy& policy,
                                       const py::object& progress) {
    if (kind != "saliency" && kind != "input_x_gradient") {
      throw InvalidInputError("unknown gradient method '" + kind + "' (possible: saliency, input_x_gradient)");
    }
    const Aggregation agg = aggregation_arg(aggregation);
    const bool times_input = kind == "input_x_gradient";
    return run_pooled_gradients(s, with_embeddings(problems, embeddings, nullptr), policy, progress,
                                [&](size_t, GradientRunner& r) { return gradient_at_input_sweep(r, agg, times_input); });
  }, py::arg("session"), py::arg("problems"), py::arg("embeddings"), py::arg("kind"), py::arg("aggregation"),
     py::arg("policy"), py::arg("progress") = py::none());

  // Per text: noise [n_samples, n, hidden], baselines [k, n, hidden], baseline_index [n_samples] and
  // alphas [n_samples, K]; the path weights [K] are shared.
  m.def("pooled_sampled_gradients", [](const Session& s, const std::vector<GradientProblem>& problems,
                                       const FloatArray& embeddings, const std::vector<FloatArray>& noise,
                                       const std::vector<FloatArray>& baselines, const py::object& baseline_index,
                                       const std::vector<DoubleArray>& alphas, const DoubleArray& weights,
                                       bool absolute, const std::string& nt_type, const std::string& aggregation,
                                       const BatchPolicy& policy, const py::object& progress) {
    const size_t n_texts = problems.size();
    const auto index = int_lists_arg(baseline_index, "baseline_index", 0);
    if (noise.size() != n_texts || baselines.size() != n_texts || index.size() != n_texts || alphas.size() != n_texts) {
      throw InvalidInputError("noise, baselines, baseline_index and alphas need one entry per text");
    }
    if (weights.ndim() != 1) throw InvalidInputError("weights must be 1-D [K]");
    const NoiseTunnelType tunnel = nt_type_arg(nt_type);
    const Aggregation agg = aggregation_arg(aggregation);
    std::vector<SampledGradientParams> per_text(n_texts);
    for (size_t i = 0; i < n_texts; ++i) {
      if (noise[i].ndim() != 3 || baselines[i].ndim() != 3 || alphas[i].ndim() != 2) {
        throw InvalidInputError("expected noise [n_samples, n, hidden], baselines [k, n, hidden] and alphas "
                                "[n_samples, K] per text");
      }
      auto& params = per_text[i];
      params.noise.assign(noise[i].data(), noise[i].data() + noise[i].size());
      params.baselines.assign(baselines[i].data(), baselines[i].data() + baselines[i].size());
      params.baseline_index = index[i];
      params.alphas.assign(alphas[i].data(), alphas[i].data() + alphas[i].size());
      params.weights.assign(weights.data(), weights.data() + weights.size());
      params.absolute = absolute;
      params.nt_type = tunnel;
      params.aggregation = agg;
    }
    return run_pooled_gradients(s, with_embeddings(problems, embeddings, nullptr), policy, progress,
                                [&](size_t i, GradientRunner& r) {
                                  return sampled_gradients_sweep(r, std::move(per_text[i]));
                                });
  }, py::arg("session"), py::arg("problems"), py::arg("embeddings"), py::arg("noise"), py::arg("baselines"),
     py::arg("baseline_index"), py::arg("alphas"), py::arg("weights"), py::arg("absolute"), py::arg("nt_type"),
     py::arg("aggregation"), py::arg("policy"), py::arg("progress") = py::none());
}

}  // namespace attribfast::bindings
