// Many texts in one sweep: one ScoreEvaluator per text, and the variants every text's method
// proposes evaluated together in shared batches sorted by length.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include "attribfast/gradient.h"
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

// The sweep of text `text` of a gradient sweep, over its runner (e.g. integrated_gradients_sweep).
using MakeSweep = std::function<std::unique_ptr<GradientSweep>(size_t text, GradientRunner& runner)>;

// Gradient methods over many texts: one GradientRunner per problem, and each round of every text's
// sweep run together in shared batches sorted by length (texts with the same graph inputs and extra
// shapes share batches, padded at the end). Adaptive rounds pool too: the texts that need another
// round run it together. One result per problem, equal to the per-text call up to float32
// batching; each result's seconds is its share of the sweep's time (by rows run).
std::vector<AttributionResult> pooled_gradient_sweep(const Session& session, std::vector<GradientProblem> problems,
                                                     const BatchPolicy& policy, const RunControl* control,
                                                     ProgressFn progress, const MakeSweep& make);

}  // namespace attribfast
