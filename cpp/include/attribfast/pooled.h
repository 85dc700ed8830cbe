// Many texts in one sweep: one ScoreEvaluator per text, and the variants every text's method
// proposes evaluated together in shared batches sorted by length.
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

#include "attribfast/perturbation.h"

namespace attribfast {

// The proposal of text `text` of the sweep, from its evaluator (e.g. propose_occlusion).
using ProposeFn = std::function<Proposal(size_t text, ScoreEvaluator& evaluator)>;

// One result per problem, equal to the per-text method call up to float32 batching. All problems
// run on `session`; rows of texts whose graph inputs have the same names and extra shapes share
// batches. Prefix reuse is off: every row runs the full forward graph. Progress counts the rows of
// the whole sweep, and the control cancels it. Each result's seconds is its share of the sweep's
// time (by token positions computed).
std::vector<AttributionResult> pooled_sweep(const Session& session, std::vector<ScoreProblem> problems,
                                            const BatchPolicy& policy, const RunControl* control,
                                            ProgressFn progress, const ProposeFn& propose);

}  // namespace attribfast
