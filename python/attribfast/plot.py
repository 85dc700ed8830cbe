"""Heatmaps of attribution matrices in the seed's style: tokens x targets, RdYlGn centred at 0.

Readability rules, applied after the layout is known (sizes in points): tick labels shrink to
MIN_FONT_PT and then thin out (every k-th label) rather than overlap; x labels turn vertical when
they are wider than a column; annotations are dropped when a cell cannot hold them; a new figure
is at most MAX_FIGURE_INCHES. With ax=, everything (labels, colour bar) stays inside that axes'
box: a figure with a layout engine places the colour bar itself, one without gets it fitted here.
"""

from __future__ import annotations

import math
import re

import numpy as np

from .errors import InvalidInputError

COLORBAR_LABEL = "Token Attribution"
SCALES = ("global", "column")
# Below these cell sizes (points) annotations would overlap, so they are left out.
MIN_CELL_HEIGHT_PT = 9.0
MIN_CELL_WIDTH_PT = 34.0
MAX_FIGURE_INCHES = (16.0, 16.0)
MIN_FONT_PT = 6.0
LABEL_LINE = 1.3  # a label needs this many times its font size across
MAX_LABEL_CHARS = 30
_PERCENTILE = re.compile(r"p(\d+(?:\.\d+)?)")


def symmetric_limit(values: np.ndarray, vmax: float | str | None = None) -> float:
    """The colour limit L (colours span [-L, L]): vmax if a number; the given percentile of |values|
    if a string "pNN" (e.g. "p99", robust to a few outliers); else the largest |value|. 1.0 when
    that is 0 (an all-zero matrix)."""
    values = np.abs(np.asarray(values, dtype=np.float64))
    if vmax is None or isinstance(vmax, str):
        q = 100.0 if vmax is None else _percentile(vmax)
        peak = float(np.percentile(values, q)) if values.size else 0.0
        return peak if peak > 0 else 1.0
    if isinstance(vmax, bool) or not isinstance(vmax, int | float | np.number) or not vmax > 0 or math.isinf(vmax):
        raise InvalidInputError(f"vmax must be a positive number, 'pNN' (a percentile) or None, got {vmax!r}")
    return float(vmax)


def _percentile(text: str) -> float:
    match = _PERCENTILE.fullmatch(text)
    if not match or not 0 < float(match.group(1)) <= 100:
        raise InvalidInputError(f"vmax as text must be a percentile 'pNN' with 0 < NN <= 100, got {text!r}")
    return float(match.group(1))


def figure_size(n_rows: int, n_cols: int, longest_label: int = 10) -> tuple[float, float]:
    width = min(3.0 + 0.08 * min(longest_label, MAX_LABEL_CHARS) + 1.25 * n_cols, MAX_FIGURE_INCHES[0])
    height = min(1.8 + 0.42 * n_rows, MAX_FIGURE_INCHES[1])
    return width, height


def heatmap(
    matrix,
    row_labels,
    column_labels,
    *,
    ax=None,
    annotate: bool = True,
    cmap: str = "RdYlGn",
    vmax: float | str | None = None,
    scale: str = "global",
    title: str | None = None,
):
    """Draws the matrix on ax (a new figure if None); returns (Figure, Axes).

    vmax: the symmetric colour limit (see symmetric_limit); cells beyond it take the end colours
    and the colour bar shows arrows. scale: "global" (one colour range) or "column" (each column
    coloured against its own limit, printed under its label; the colour bar then reads in units of
    that limit). Annotations always show the raw values.
    """
    import matplotlib.pyplot as plt
    from matplotlib import colors

    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise InvalidInputError(f"heatmap needs a non-empty 2-D matrix, got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise InvalidInputError("heatmap needs finite values; the matrix has NaN or infinity")
    if scale not in SCALES:
        raise InvalidInputError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    n_rows, n_cols = matrix.shape
    rows = [_short(r) for r in row_labels]
    columns = [_short(c) for c in column_labels]
    if len(rows) != n_rows or len(columns) != n_cols:
        raise InvalidInputError(f"{len(rows)} row and {len(columns)} column labels for a {n_rows}x{n_cols} matrix")
    if scale == "column":
        limits = np.array([symmetric_limit(matrix[:, j], vmax) for j in range(n_cols)])
        shown, limit = matrix / limits, 1.0
        columns = [f"{c}\n±{lim:.3g}" for c, lim in zip(columns, limits, strict=True)]
    else:
        limits = None
        limit = symmetric_limit(matrix, vmax)
        shown = matrix

    given = ax is not None
    if given:
        fig = ax.figure
        box = ax.get_position()
    else:
        longest = max(len(r) for r in rows)
        fig, ax = plt.subplots(figsize=figure_size(n_rows, n_cols, longest), layout="constrained")
    norm = colors.Normalize(vmin=-limit, vmax=limit)
    image = ax.imshow(shown, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
    ax.set_xticks(np.arange(n_cols + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n_rows + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=0.8)
    ax.tick_params(which="minor", length=0)
    if title:
        ax.set_title(title)
    extend = _extend(shown, limit)
    if given and fig.get_layout_engine() is None:
        cax = fig.add_axes((box.x1, box.y0, 0.01, box.height))  # placed by _fit_inside
        colorbar = fig.colorbar(image, cax=cax, extend=extend)
    else:
        cax = None
        colorbar = fig.colorbar(image, ax=ax, extend=extend)
    colorbar.set_label(COLORBAR_LABEL if limits is None else f"{COLORBAR_LABEL} (÷ column limit)")

    def settle():
        if cax is None:
            fig.draw_without_rendering()
        else:
            _fit_inside(fig, ax, cax, box)

    # Ticks depend on the cell size, which depends on the space the ticks take: at most two more
    # rounds settle it (one when the first layout already fits, as for the demo).
    _set_ticks(fig, ax, rows, columns, None)
    settle()
    for _ in range(2):
        before = _tick_state(ax)
        width_pt, height_pt = _cell_size_pt(fig, ax, n_rows, n_cols)
        _set_ticks(fig, ax, rows, columns, width_pt)
        _thin_ticks(ax, "y", rows, height_pt)
        _thin_ticks(ax, "x", columns, width_pt)
        if _tick_state(ax) == before:
            break
        settle()

    if annotate:
        _annotate(fig, ax, matrix, shown, norm, plt.get_cmap(cmap))
    return fig, ax


def text_colour(background) -> str:
    """Black or white, whichever reads on the background (an RGB(A) tuple in [0, 1])."""
    r, g, b = background[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _short(label) -> str:
    text = str(label)
    return text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "…"


def _extend(shown: np.ndarray, limit: float) -> str:
    low, high = bool(shown.min() < -limit), bool(shown.max() > limit)
    return {(True, True): "both", (True, False): "min", (False, True): "max"}.get((low, high), "neither")


def _set_ticks(fig, ax, rows: list[str], columns: list[str], column_width_pt: float | None) -> None:
    """Every label at the default font; x labels turn vertical when wider than a column."""
    import matplotlib as mpl

    ax.set_xticks(range(len(columns)), labels=columns)
    ax.set_yticks(range(len(rows)), labels=rows)
    ax.tick_params(axis="x", labelrotation=0, labelsize=mpl.rcParams["xtick.labelsize"])
    ax.tick_params(axis="y", labelsize=mpl.rcParams["ytick.labelsize"])
    if column_width_pt is None:
        return
    renderer = fig.canvas.get_renderer()
    widest = max(t.get_window_extent(renderer).width for t in ax.get_xticklabels()) * 72 / fig.dpi
    if widest + 4 > column_width_pt:
        ax.tick_params(axis="x", labelrotation=90)


def _tick_state(ax) -> tuple:
    x, y = ax.get_xticklabels(), ax.get_yticklabels()
    return tuple(ax.get_xticks()), tuple(ax.get_yticks()), x[0].get_rotation(), x[0].get_size(), y[0].get_size()


def _thin_ticks(ax, axis: str, labels: list[str], cell_pt: float) -> None:
    """Shrinks the tick labels' font towards MIN_FONT_PT, then keeps every k-th label, so that
    neighbouring labels never overlap."""
    import matplotlib as mpl

    rotated = axis == "x" and abs(ax.xaxis.get_ticklabels()[0].get_rotation() - 90) < 1
    if axis == "x" and not rotated:
        return  # horizontal x labels fit their columns (else they were turned vertical)
    size = mpl.rcParams[f"{axis}tick.labelsize"]
    default = mpl.font_manager.FontProperties(size=size).get_size_in_points()
    font = max(MIN_FONT_PT, min(default, cell_pt / LABEL_LINE))
    lines = max(label.count("\n") + 1 for label in labels)
    step = max(1, math.ceil(LABEL_LINE * font * lines / cell_pt))
    positions = list(range(0, len(labels), step))
    getattr(ax, f"set_{axis}ticks")(positions, labels=[labels[i] for i in positions])
    ax.tick_params(axis=axis, labelsize=font)


def _fit_inside(fig, ax, cax, box) -> None:
    """Places the heatmap and its colour bar so that both, with all their labels, fill box (figure
    coordinates: the axes' original position) and nothing spills onto neighbouring axes."""
    renderer = fig.canvas.get_renderer()
    width_px, height_px = fig.bbox.width, fig.bbox.height
    gap, bar = 6 * fig.dpi / 72 / width_px, min(max(0.045 * box.width, 8 * fig.dpi / 72 / width_px), 0.05)
    for _ in range(2):
        inner, outer = ax.get_window_extent(renderer), ax.get_tightbbox(renderer)
        bar_inner, bar_outer = cax.get_window_extent(renderer), cax.get_tightbbox(renderer)
        left = (inner.x0 - outer.x0) / width_px
        right = max(outer.x1 - inner.x1, 0) / width_px + (bar_outer.x1 - bar_inner.x1) / width_px
        bottom = max(inner.y0 - outer.y0, bar_inner.y0 - bar_outer.y0) / height_px
        top = max(outer.y1 - inner.y1, bar_outer.y1 - bar_inner.y1) / height_px
        width = max(box.width - left - right - gap - bar, 0.1 * box.width)
        height = max(box.height - bottom - top, 0.1 * box.height)
        ax.set_position((box.x0 + left, box.y0 + bottom, width, height))
        cax.set_position((box.x0 + left + width + gap, box.y0 + bottom, bar, height))


def _cell_size_pt(fig, ax, n_rows: int, n_cols: int) -> tuple[float, float]:
    box = ax.get_position()
    width_in, height_in = fig.get_size_inches()
    return box.width * width_in * 72 / n_cols, box.height * height_in * 72 / n_rows


def _annotate(fig, ax, matrix, shown, norm, colormap) -> None:
    """Each cell's value to 4 decimals, when the cells are large enough to hold it."""
    n_rows, n_cols = matrix.shape
    width_pt, height_pt = _cell_size_pt(fig, ax, n_rows, n_cols)
    widest = max(len(f"{v:.4f}") for v in (matrix.min(), matrix.max()))
    fontsize = min(10.0, 0.55 * height_pt, (width_pt - 4) / (0.62 * widest))
    if width_pt < MIN_CELL_WIDTH_PT or height_pt < MIN_CELL_HEIGHT_PT or fontsize < MIN_FONT_PT:
        return
    for i in range(n_rows):
        for j in range(n_cols):
            colour = text_colour(colormap(norm(shown[i, j])))
            ax.text(j, i, f"{matrix[i, j]:.4f}", ha="center", va="center", fontsize=fontsize, color=colour)
