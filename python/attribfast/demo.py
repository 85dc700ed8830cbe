"""The demo: the seed heatmap's arithmetic prompt attributed to its five expressions by the shipped model.

Reading of the seed implemented here: rows are the 13 tokens of the prompt "-$16,000√-0.8=" (one
character a token, "-$" one token, as the seed's rows); columns are the five expressions, each
scored as the line that follows the prompt (the log-probability of "\n" + expression under the
arithmetic language model, teacher-forced, summed over its tokens). A cell is how much the token
raises (green) or lowers (red) that log-probability, by integrated gradients from the pad embedding.

With contrast=True each column is "this expression rather than the others": the attribution of
log p(expression) - mean log p(other expressions), from the same run. The plain columns are nearly
alike (a token that makes any next line likelier raises all five); the contrast removes that shared
part and leaves what a token does for one expression over the rest.
"""

from __future__ import annotations

import os
from pathlib import Path

SEED_PROMPT = "-$16,000√-0.8="
SEED_EXPRESSIONS = ("9 + 3 = 12", "7 x 5 = 35", "4900 / 100 = 49", "9 - 3 = 6", "6 - 6 = 0")


def shipped_bundle() -> Path:
    """The arithmetic model's bundle: installed with the package, or in a source checkout."""
    here = Path(__file__).resolve().parent
    candidates = [here / "models" / "arith", here.parent.parent / "models" / "arith" / "bundle"]
    for candidate in candidates:
        if (candidate / "attribfast.json").is_file():
            return candidate
    from .errors import BundleError

    raise BundleError("the shipped arithmetic model was not found (looked in " + ", ".join(map(str, candidates)) + ")")


def run_demo(out: str | os.PathLike | None = None, bundle: str | os.PathLike | None = None, contrast: bool = False):
    """Attributes the seed prompt to its five expressions, draws the heatmap (out; default
    heatmap.png, or heatmap-contrast.png with contrast), prints the matrix and returns the result.
    contrast: each column is the expression rather than the others (contrast="others")."""
    import matplotlib

    matplotlib.use("Agg")
    from .methods import IntegratedGradients
    from .model import load

    model = load(bundle or shipped_bundle())
    # The model writes one expression per line: each expression is scored as the prompt's next line.
    targets = {expression: "\n" + expression for expression in SEED_EXPRESSIONS}
    method = IntegratedGradients(n_steps=64)
    result = model.attribute(SEED_PROMPT, targets=targets, method=method, contrast="others" if contrast else None)
    out = out or ("heatmap-contrast.png" if contrast else "heatmap.png")
    fig, ax = result.plot()
    if contrast:
        ax.set_title("Contrastive attribution: log p(expression) - mean log p(other expressions), integrated gradients")
        print(f"prompt: {SEED_PROMPT!r}; each column: this expression rather than the others (log-prob differences):")
        score_name = "log p - mean log p(others)"
    else:
        ax.set_title("Token attribution: prompt tokens -> log p(expression as the next line), integrated gradients")
        print(f"prompt: {SEED_PROMPT!r}; each expression scored as the next line (log-probabilities):")
        score_name = "log p"
    fig.savefig(out, dpi=150)
    for label, score, delta in zip(SEED_EXPRESSIONS, result.target_scores, result.deltas, strict=True):
        print(f"  {label:>16}  {score_name} = {score:8.4f}   IG convergence delta = {delta:+.2e}")
    width = max(len(t) for t in result.tokens) + 2
    print(" " * width + "".join(f"{label:>17}" for label in SEED_EXPRESSIONS))
    for token, row in zip(result.tokens, result.matrix, strict=True):
        print(f"{token:<{width}}" + "".join(f"{v:17.4f}" for v in row))
    print(f"heatmap written to {out}")
    return result
