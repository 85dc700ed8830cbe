"""Heatmaps at the image level: rendered colours, label boxes from the renderer, colour bar placement."""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pytest
from attribfast import Attribution
from attribfast.errors import InvalidInputError
from attribfast.plot import MAX_FIGURE_INCHES, figure_size, heatmap, symmetric_limit

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# RdYlGn's centre: the colour of a cell near 0 relative to the colour limit.
PALE = np.array(matplotlib.colormaps["RdYlGn"](0.5)[:3]) * 255
EXPRESSIONS = ["9 + 3 = 12", "7 x 5 = 35", "4900 / 100 = 49", "9 - 3 = 6", "6 - 6 = 0"]


def outlier_matrix() -> Attribution:
    """60 tokens x 8 targets of moderate values and one -17.8 outlier (the case in issue 14)."""
    matrix = np.random.default_rng(3).normal(0, 0.6, (60, 8)).astype(np.float32)
    matrix[17, 3] = -17.8
    return Attribution(
        matrix=matrix, tokens=[f"tok{i}" for i in range(60)], targets=[f"expr {j}" for j in range(8)], method="x"
    )


def render(fig) -> np.ndarray:
    """The figure as saved: RGB pixels, row 0 at the top."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="rgba", dpi=fig.dpi)
    width, height = (int(round(v)) for v in fig.bbox.size)
    return np.frombuffer(buffer.getvalue(), np.uint8).reshape(height, width, 4)[..., :3].astype(float)


def cell_colours(fig, ax, shape) -> np.ndarray:
    """Rendered colour of every cell, sampled near its top-left corner (clear of the annotation)."""
    pixels = render(fig)
    height = pixels.shape[0]
    out = np.zeros((*shape, 3))
    for i in range(shape[0]):
        for j in range(shape[1]):
            x, y = ax.transData.transform((j - 0.3, i - 0.3))
            out[i, j] = pixels[int(height - y), int(x)]
    return out


def pale_fraction(colours: np.ndarray) -> float:
    return float(np.mean(np.linalg.norm(colours - PALE, axis=-1) < 40))


def test_symmetric_limit_values_and_errors():
    values = np.array([[-4.0, 1.0], [2.0, 3.0]])
    assert symmetric_limit(values) == 4.0
    assert symmetric_limit(values, 2.5) == 2.5
    assert symmetric_limit(values, "p50") == pytest.approx(2.5)  # median of |values| 1, 2, 3, 4
    assert symmetric_limit(values, "p100") == 4.0
    assert symmetric_limit(np.zeros((2, 2)), "p99") == 1.0
    for bad in (0, -1.0, float("inf"), float("nan"), True, "p0", "p101", "q99", "99", [1]):
        with pytest.raises(InvalidInputError):
            symmetric_limit(values, bad)


def test_outlier_turns_the_default_pale_and_the_robust_range_keeps_it_readable():
    result = outlier_matrix()
    fig, ax = result.plot()
    default = cell_colours(fig, ax, result.shape)
    assert pale_fraction(default) > 0.9, "the global range should wash the moderate cells out (issue 14)"
    plt.close(fig)

    fig, ax = result.plot(vmax="p99")
    robust = cell_colours(fig, ax, result.shape)
    assert pale_fraction(robust) < 0.4, pale_fraction(robust)
    limit = ax.images[0].norm.vmax
    assert limit == pytest.approx(np.percentile(np.abs(result.matrix), 99)) and limit < 3
    # The outlier saturates at the red end, and the colour bar says the range was clipped.
    red_end = np.array(matplotlib.colormaps["RdYlGn"](0.0)[:3]) * 255
    assert np.linalg.norm(robust[17, 3] - red_end) < 20
    assert fig.axes[-1].get_ylabel() == "Token Attribution" and fig.axes[-1].collections
    assert any(t.get_text() == "-17.8000" for t in ax.texts), "annotations keep the raw value"
    plt.close(fig)


def test_column_scale_colours_each_column_against_its_own_limit():
    result = outlier_matrix()
    fig, ax = result.plot(scale="column")
    colours = cell_colours(fig, ax, result.shape)
    ends = np.array([matplotlib.colormaps["RdYlGn"](v)[:3] for v in (0.0, 1.0)]) * 255
    for j in range(result.shape[1]):
        column = result.matrix[:, j]
        peak = int(np.argmax(np.abs(column)))
        end = ends[0] if column[peak] < 0 else ends[1]
        assert np.linalg.norm(colours[peak, j] - end) < 20, j
        assert f"±{np.abs(column).max():.3g}" in ax.get_xticklabels()[j].get_text()
    # Column 3 holds the outlier, so only it stays pale; the others are readable.
    assert pale_fraction(colours[:, 3]) > 0.9
    assert pale_fraction(np.delete(colours, 3, axis=1)) < 0.5
    plt.close(fig)


def label_boxes(fig, axis) -> list:
    renderer = fig.canvas.get_renderer()
    return [t.get_window_extent(renderer) for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]


def overlap(a, b, tolerance: float = 0.5) -> bool:
    return a.x0 + tolerance < b.x1 and b.x0 + tolerance < a.x1 and a.y0 + tolerance < b.y1 and b.y0 + tolerance < a.y1


def assert_readable(fig, ax) -> None:
    """No two tick labels overlap; labels, the heatmap and its colour bar lie inside the figure."""
    render(fig)  # draw, so that every position is final
    inside = fig.bbox.padded(1)
    for axis in (ax.xaxis, ax.yaxis):
        boxes = label_boxes(fig, axis)
        assert boxes, "no tick labels drawn"
        for k, box in enumerate(boxes):
            assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1
            assert not any(overlap(box, other) for other in boxes[k + 1 :]), f"overlapping {axis.axis_name} labels"
    colorbar = ax.images[0].colorbar.ax
    for part in (ax, colorbar):
        box = part.get_tightbbox(fig.canvas.get_renderer())
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1


@pytest.mark.parametrize(
    ("rows", "cols", "token_length"),
    [(13, 5, 1), (60, 8, 6), (300, 3, 5), (40, 30, 8), (8, 4, 40)],
)
def test_tick_labels_never_overlap_and_stay_in_the_figure(rows, cols, token_length):
    rng = np.random.default_rng(rows)
    tokens = [f"{i:0{token_length}d}" for i in range(rows)]
    targets = [f"a fairly long target label {j}" for j in range(cols)]
    fig, ax = heatmap(rng.normal(size=(rows, cols)), tokens, targets)
    assert tuple(fig.get_size_inches()) <= MAX_FIGURE_INCHES
    assert_readable(fig, ax)
    shown = [t.get_text() for t in ax.get_yticklabels()]
    positions = [int(p) for p in ax.get_yticks()]
    assert shown == [tokens[p] if len(tokens[p]) <= 30 else tokens[p][:29] + "…" for p in positions]
    if rows >= 300:
        assert 20 < len(shown) < rows, "long inputs thin their labels, not drop them all"
    plt.close(fig)


@pytest.mark.parametrize("layout", [None, "constrained"])
def test_ax_draws_only_on_the_given_axes_with_its_colour_bar(layout):
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 6), layout=layout)
    slot = left.get_position()
    labels = [f"token number {i}" for i in range(13)]
    matrix = np.random.default_rng(0).normal(size=(13, 5))
    heatmap(matrix, labels, EXPRESSIONS, ax=left)
    heatmap(matrix, labels, EXPRESSIONS, ax=right)
    render(fig)
    assert len(fig.axes) == 4 and len(left.images) == 1 and len(right.images) == 1
    renderer = fig.canvas.get_renderer()
    for ax in (left, right):
        assert_readable(fig, ax)
    # Everything of the left heatmap (labels, colour bar) stays clear of the right one.
    left_parts = [left.get_tightbbox(renderer), left.images[0].colorbar.ax.get_tightbbox(renderer)]
    right_parts = [right.get_tightbbox(renderer), right.images[0].colorbar.ax.get_tightbbox(renderer)]
    assert not any(overlap(a, b) for a in left_parts for b in right_parts)
    colorbar = left.images[0].colorbar.ax.get_window_extent(renderer)
    heat = left.get_window_extent(renderer)
    assert heat.x1 <= colorbar.x0 and colorbar.y0 >= heat.y0 - 1 and colorbar.y1 <= heat.y1 + 1, "bar beside its axes"
    if layout is None:  # no layout engine: the given slot is all the heatmap may use
        box = slot.transformed(fig.transFigure)
        for part in left_parts:
            assert box.x0 - 1 <= part.x0 and part.x1 <= box.x1 + 1
    plt.close(fig)


def test_annotations_only_when_cells_hold_them_and_size_is_capped():
    assert figure_size(1000, 100, 80) == MAX_FIGURE_INCHES
    assert figure_size(13, 5, 2) == pytest.approx((3.0 + 0.16 + 6.25, 1.8 + 0.42 * 13))
    fig, ax = outlier_matrix().plot()
    assert len(ax.texts) == 60 * 8  # 60 rows still fit at the capped height
    plt.close(fig)
    fig, ax = heatmap(np.ones((400, 4)), [str(i) for i in range(400)], list("abcd"))
    assert len(ax.texts) == 0
    plt.close(fig)


def test_bad_plot_requests_raise_typed_errors():
    result = outlier_matrix()
    with pytest.raises(InvalidInputError, match="scale"):
        result.plot(scale="row")
    with pytest.raises(InvalidInputError, match="percentile"):
        result.plot(vmax="p0")
    with pytest.raises(InvalidInputError, match="finite"):
        heatmap(np.array([[np.nan]]), ["a"], ["b"])
    with pytest.raises(InvalidInputError, match="labels"):
        heatmap(np.zeros((2, 2)), ["a"], ["b", "c"])
    plt.close("all")
