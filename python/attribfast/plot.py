"""Heatmaps of attribution matrices in the seed's style: tokens x targets, RdYlGn centred at 0."""

from __future__ import annotations

import numpy as np

COLORBAR_LABEL = "Token Attribution"
# Below these cell sizes (points) annotations would overlap, so they are left out.
MIN_CELL_HEIGHT_PT = 9.0
MIN_CELL_WIDTH_PT = 34.0


def symmetric_limit(matrix: np.ndarray, vmax: float | None = None) -> float:
    """The colour limit: vmax, else the largest |value| (1.0 for an all-zero matrix)."""
    if vmax is not None:
        if not vmax > 0:
            raise ValueError("vmax must be positive")
        return float(vmax)
    peak = float(np.max(np.abs(matrix))) if matrix.size else 0.0
    return peak if peak > 0 else 1.0


def figure_size(n_rows: int, n_cols: int, longest_label: int = 10) -> tuple[float, float]:
    width = min(3.0 + 0.08 * longest_label + 1.25 * n_cols, 26.0)
    height = min(1.8 + 0.42 * n_rows, 24.0)
    return width, height


def heatmap(matrix, row_labels, column_labels, *, ax=None, annotate=True, cmap="RdYlGn", vmax=None, title=None):
    """Draws the matrix on ax (a new figure if None); returns (Figure, Axes)."""
    import matplotlib.pyplot as plt
    from matplotlib import colors

    matrix = np.asarray(matrix, dtype=np.float64)
    n_rows, n_cols = matrix.shape
    if ax is None:
        longest = max((len(str(label)) for label in row_labels), default=1)
        fig, ax = plt.subplots(figsize=figure_size(n_rows, n_cols, longest), layout="constrained")
    else:
        fig = ax.figure
    limit = symmetric_limit(matrix, vmax)
    norm = colors.Normalize(vmin=-limit, vmax=limit)
    image = ax.imshow(matrix, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(n_cols), labels=[str(c) for c in column_labels])
    ax.set_yticks(range(n_rows), labels=[str(r) for r in row_labels])
    column_width_pt = 72 * fig.get_size_inches()[0] * 0.75 / max(n_cols, 1)
    if max((len(str(c)) for c in column_labels), default=0) * 6.5 > column_width_pt:  # ~6.5 pt a character
        ax.tick_params(axis="x", labelrotation=35)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    ax.set_xticks(np.arange(n_cols + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n_rows + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=0.8)
    ax.tick_params(which="minor", length=0)
    colorbar = fig.colorbar(image, ax=ax)
    colorbar.set_label(COLORBAR_LABEL)
    if title:
        ax.set_title(title)
    if annotate and _cells_fit(fig, ax, n_rows, n_cols):
        height_pt = _cell_size_pt(fig, ax, n_rows, n_cols)[1]
        fontsize = max(6.0, min(10.0, 0.55 * height_pt))
        colormap = plt.get_cmap(cmap)
        for i in range(n_rows):
            for j in range(n_cols):
                value = matrix[i, j]
                r, g, b, _ = colormap(norm(value))
                luminance = 0.299 * r + 0.587 * g + 0.114 * b
                ax.text(
                    j,
                    i,
                    f"{value:.4f}",
                    ha="center",
                    va="center",
                    fontsize=fontsize,
                    color="black" if luminance > 0.5 else "white",
                )
    return fig, ax


def _cell_size_pt(fig, ax, n_rows: int, n_cols: int) -> tuple[float, float]:
    box = ax.get_position()
    width_in, height_in = fig.get_size_inches()
    return box.width * width_in * 72 / max(n_cols, 1), box.height * height_in * 72 / max(n_rows, 1)


def _cells_fit(fig, ax, n_rows: int, n_cols: int) -> bool:
    fig.draw_without_rendering()  # settle the layout so the axes' size is final
    width, height = _cell_size_pt(fig, ax, n_rows, n_cols)
    return width >= MIN_CELL_WIDTH_PT and height >= MIN_CELL_HEIGHT_PT
