// Pooled corpus sweeps: one call attributes many texts, their variants evaluated in shared batches.
#include <pybind11/stl.h>

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
}

}  // namespace attribfast::bindings
