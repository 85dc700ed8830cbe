#include "attribfast/pooled.h"

#include <chrono>
#include <map>
#include <memory>
#include <string>

namespace attribfast {

namespace {

// What rows must share to run in one batch: the graph's input and output names, the score
// columns, and each extra input's name, type and row shape.
std::string batch_key(const ScoreProblem& problem) {
  std::string key = problem.ids_input + '\n' + problem.mask_input + '\n' + problem.score_output + '\n' +
                    std::to_string(problem.column_targets[0].size());
  for (const auto& extra : problem.extras) {
    key += '\n' + extra.name + ':' + std::to_string(extra.element_type);
    for (int64_t d : extra.row_shape) key += ',' + std::to_string(d);
  }
  return key;
}

}  // namespace

std::vector<AttributionResult> pooled_sweep(const Session& session, std::vector<ScoreProblem> problems,
                                            const BatchPolicy& policy, const RunControl* control,
                                            ProgressFn progress, const ProposeFn& propose) {
  if (problems.empty()) throw InvalidInputError("a pooled sweep needs at least one text");
  const auto start = std::chrono::steady_clock::now();
  BatchRunner runner(session, policy, control, std::move(progress));
  std::vector<std::unique_ptr<ScoreEvaluator>> evaluators;
  std::map<std::string, int64_t> groups;
  for (auto& problem : problems) {
    problem.prefix_reuse = PrefixReuse{};
    evaluators.push_back(std::make_unique<ScoreEvaluator>(session, std::move(problem), policy, control, nullptr));
    const auto key = batch_key(evaluators.back()->problem());
    evaluators.back()->set_batch_group(groups.emplace(key, static_cast<int64_t>(groups.size())).first->second);
  }
  const size_t n_texts = evaluators.size();
  // Requests hold pointers into the proposals' variants and their own score buffers, which stay
  // in place while these vectors (reserved) hold them.
  std::vector<Proposal> proposals;
  std::vector<ScoreEvaluator::Request> requests;
  proposals.reserve(n_texts);
  requests.reserve(n_texts);
  std::vector<ScoreRow> rows;
  for (size_t i = 0; i < n_texts; ++i) {
    if (control) control->throw_if_cancelled();
    proposals.push_back(propose(i, *evaluators[i]));
    requests.push_back(evaluators[i]->prepare(proposals[i].variants));
    rows.insert(rows.end(), requests[i].rows.begin(), requests[i].rows.end());
  }
  runner.expect_rows(static_cast<int64_t>(rows.size()));
  runner.run(rows, BatchRunner::Pass{});
  std::vector<AttributionResult> results;
  results.reserve(n_texts);
  int64_t positions = 0;
  for (const auto& evaluator : evaluators) positions += evaluator->token_positions();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (size_t i = 0; i < n_texts; ++i) {
    results.push_back(proposals[i].reduce(evaluators[i]->finish(requests[i])));
    results.back().seconds = positions > 0 ? seconds * results.back().token_positions / positions : 0.0;
  }
  return results;
}

std::vector<AttributionResult> pooled_gradient_sweep(const Session& session, std::vector<GradientProblem> problems,
                                                     const BatchPolicy& policy, const RunControl* control,
                                                     ProgressFn progress, const MakeSweep& make) {
  if (problems.empty()) throw InvalidInputError("a pooled sweep needs at least one text");
  const auto start = std::chrono::steady_clock::now();
  GradientBatcher batcher(session, policy, control, std::move(progress));
  const size_t n_texts = problems.size();
  std::vector<std::unique_ptr<GradientRunner>> runners;
  std::vector<std::unique_ptr<GradientSweep>> sweeps;
  std::vector<GradientRunner::Consumer> consumers;
  for (size_t i = 0; i < n_texts; ++i) {
    if (control) control->throw_if_cancelled();
    runners.push_back(std::make_unique<GradientRunner>(session, std::move(problems[i]), policy, control, nullptr));
    sweeps.push_back(make(i, *runners.back()));
    GradientSweep* sweep = sweeps.back().get();
    consumers.emplace_back([sweep](size_t r, double score, const float* grad) { sweep->consume(r, score, grad); });
  }
  // Progress totals: all rows up front where every sweep knows them, else each round's as it starts.
  int64_t planned = 0;
  for (const auto& sweep : sweeps) {
    const int64_t rows = sweep->planned_rows();
    planned = planned >= 0 && rows > 0 ? planned + rows : -1;
  }
  if (planned > 0) batcher.plan_rows(planned);
  std::vector<bool> done(n_texts, false);
  for (;;) {
    std::vector<GradientBatcher::Work> work;
    int64_t rows = 0;
    for (size_t i = 0; i < n_texts; ++i) {
      if (done[i]) continue;
      const auto& round = sweeps[i]->next_rows();
      if (round.empty()) {
        done[i] = true;
        continue;
      }
      work.push_back({runners[i].get(), &round, &consumers[i]});
      rows += static_cast<int64_t>(round.size());
    }
    if (work.empty()) break;
    if (planned <= 0) batcher.expect_rows(rows);
    batcher.run(work);
  }
  std::vector<AttributionResult> results;
  results.reserve(n_texts);
  int64_t total_rows = 0;
  for (size_t i = 0; i < n_texts; ++i) {
    results.push_back(sweeps[i]->finish());
    total_rows += results.back().rows_run;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (auto& result : results) result.seconds = total_rows > 0 ? seconds * result.rows_run / total_rows : 0.0;
  return results;
}

}  // namespace attribfast
