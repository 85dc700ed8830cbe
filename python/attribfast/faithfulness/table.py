"""Faithfulness figures as tables and plots."""

from __future__ import annotations

# The order rows appear in, and whether a higher value means a more faithful attribution.
ROWS = {
    "deletion_area": False,
    "deletion_lerf_area": True,
    "insertion_area": True,
    "insertion_lerf_area": False,
    "comprehensiveness": True,
    "sufficiency": False,
    "normalized_comprehensiveness": True,
    "normalized_sufficiency": True,
    "loo_spearman": True,
}


def figure_names(figures: dict) -> list[str]:
    values = figures.get("values", {})
    return [name for name in ROWS if name in values] + [name for name in values if name not in ROWS]


def figures_table(figures: dict, targets):
    """DataFrame: one row per figure (index), one column per target."""
    import pandas as pd

    names = figure_names(figures)
    frame = pd.DataFrame([figures["values"][name] for name in names], index=names, columns=list(targets))
    frame.index.name = "metric"
    frame.columns.name = "target"
    return frame


def plot_curves(curves_by_label: dict, x, ax=None, title: str | None = None, curve: str = "deletion"):
    """One line per label (a method) of a curve over the fraction of features removed; (Figure, Axes)."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    else:
        fig = ax.figure
    for label, values in curves_by_label.items():
        ax.plot(x, values, marker="o", markersize=3, label=label)
    ax.set_xlabel("fraction of features " + ("removed" if curve.startswith("deletion") else "inserted"))
    ax.set_ylabel("score")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(title or f"{curve} curves")
    return fig, ax
