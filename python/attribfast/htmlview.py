"""The HTML view of an Attribution: per target, the input text as written (its own whitespace, so it
wraps like text), each token on its colour with its value printed beneath it, and a colour legend.

Colours are the heatmap's (RdYlGn centred at 0, same colour limit rules: see plot.symmetric_limit).
"""

from __future__ import annotations

import html
import math

import numpy as np

from .errors import InvalidInputError
from .plot import SCALES, symmetric_limit, text_colour

LEGEND_STOPS = 11
STYLE = """
.af-view{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;font-size:15px;color:#222;
  max-width:100%;box-sizing:border-box}
.af-view .af-title{margin:0 0 6px}
.af-view .af-legend{display:flex;flex-wrap:wrap;align-items:center;gap:6px;margin:0 0 10px;font-size:12px}
.af-view .af-bar{display:inline-block;width:200px;height:12px;border:1px solid #888;border-radius:2px}
.af-view .af-target{margin:8px 0 14px}
.af-view .af-head{font-weight:600;margin:0 0 4px}
.af-view .af-head .af-score{font-weight:400;color:#555;font-size:13px}
.af-view .af-text{line-height:1.2;overflow-wrap:anywhere}
.af-view .af-w{display:inline-flex;flex-wrap:wrap;max-width:100%;vertical-align:top}
.af-view .af-tok{display:inline-flex;flex-direction:column;align-items:center;vertical-align:top;
  border-radius:3px;padding:1px 3px;margin:2px 0;max-width:100%}
.af-view .af-v{font-size:10px;font-variant-numeric:tabular-nums}
.af-view .af-special .af-t{font-style:italic;font-size:12px}
.af-view .af-faith{border-collapse:collapse;font-size:12px;margin:6px 0}
.af-view .af-faith td,.af-view .af-faith th{border:1px solid #ccc;padding:2px 6px;text-align:right}
"""


def decimals(limit: float) -> int:
    """Decimals that give the colour limit three significant digits (0 to 6): the values beneath
    the tokens share one fixed width, short for tiny values too."""
    return int(min(max(2 - math.floor(math.log10(limit)), 0), 6))


def _segments(attribution) -> list[tuple[str, str]]:
    """(whitespace before, text shown) per token. With offsets, both come from the original text;
    without, the readable token, whose leading "␣" (a byte-level space) becomes the gap."""
    a = attribution
    out: list[tuple[str, str]] = []
    previous_end = None
    apart = False  # the previous token stands alone: a special token, or one that is only whitespace
    for row, token in enumerate(a.tokens):
        special = a.special is not None and bool(a.special[row])
        start, end = (int(v) for v in a.offsets[row]) if a.offsets is not None else (0, 0)
        blank = False
        if a.offsets is not None and a.text and end > start and not special:
            raw = a.text[start:end]
            lead = raw[: len(raw) - len(raw.lstrip())]
            between = a.text[previous_end:start] if previous_end is not None and previous_end <= start else ""
            gap, shown, blank = between + lead, raw.strip() or token, not raw.strip()
            previous_end = end
        elif token.startswith("\u2423") and len(token) > 1:
            gap, shown = " ", token[1:]
        else:
            gap, shown = "", token
        if row > 0 and (special or apart) and not gap:
            gap = " "
        out.append((gap if row > 0 else "", shown))
        apart = special or blank
    return out


def _words(pieces: list[tuple[str, str]]) -> str:
    """Joins (whitespace before, token HTML) pieces: tokens with no whitespace between them form a
    word that moves to the next line whole, or wraps inside itself when longer than a line."""
    out, word = [], []
    for k, (gap, piece) in enumerate(pieces):
        if k and gap:
            out.append(word[0] if len(word) == 1 else f'<span class="af-w">{"".join(word)}</span>')
            out.append("<br>" if "\n" in gap else " ")
            word = []
        word.append(piece)
    out.append(word[0] if len(word) == 1 else f'<span class="af-w">{"".join(word)}</span>')
    return "".join(out)


def _rgb(colour) -> str:
    r, g, b = (int(round(255 * c)) for c in colour[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def render(attribution, *, vmax: float | str | None = None, scale: str = "global", cmap: str = "RdYlGn") -> str:
    """The view as an HTML fragment (its own scoped <style> included)."""
    from matplotlib import colormaps

    if scale not in SCALES:
        raise InvalidInputError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    matrix = np.asarray(attribution.matrix, dtype=np.float64)
    if not np.all(np.isfinite(matrix)):
        raise InvalidInputError("the HTML view needs finite values; the matrix has NaN or infinity")
    colormap = colormaps[cmap]
    if scale == "column":
        limits = [symmetric_limit(matrix[:, j], vmax) for j in range(matrix.shape[1])]
    else:
        limits = [symmetric_limit(matrix, vmax)] * matrix.shape[1]
    segments = _segments(attribution)
    blocks = [
        _target_block(attribution, column, segments, limits[column], colormap, scale)
        for column in range(matrix.shape[1])
    ]
    title = f"{attribution.method} attribution, {len(attribution.tokens)} tokens × {len(attribution.targets)} targets"
    return (
        f'<div class="af-view"><style>{STYLE}</style><p class="af-title">{html.escape(title)}</p>'
        f"{_legend(colormap, None if scale == 'column' else limits[0])}{''.join(blocks)}"
        f"{_faithfulness(attribution)}</div>"
    )


def _faithfulness(attribution) -> str:
    """The faithfulness figures (attribfast.faithfulness) as a small table, if the result has them."""
    if attribution.faithfulness is None:
        return ""
    from .faithfulness.table import figure_names

    values = attribution.faithfulness["values"]
    head = "".join(f"<th>{html.escape(t)}</th>" for t in attribution.targets)
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{v:.4g}</td>" for v in values[name]) + "</tr>"
        for name in figure_names(attribution.faithfulness)
    )
    return (
        '<table class="af-faith"><caption>faithfulness (docs/faithfulness.md)</caption>'
        f"<tr><th>metric</th>{head}</tr>{rows}</table>"
    )


def _target_block(attribution, column: int, segments, limit: float, colormap, scale: str) -> str:
    """One target: its label and score, then the text, token by token on their colours."""
    from matplotlib import colors

    norm = colors.Normalize(-limit, limit)
    places = decimals(limit)
    errors, special = attribution.standard_errors, attribution.special
    spans = []
    for row, (gap, shown) in enumerate(segments):
        value = float(attribution.matrix[row, column])
        colour = colormap(norm(value))
        hover = f"{attribution.tokens[row]}: {value:.6g}"
        if errors is not None:
            hover += f" ± {float(errors[row, column]):.3g}"
        kind = "af-tok af-special" if special is not None and special[row] else "af-tok"
        spans.append(
            (
                gap,
                f'<span class="{kind}" style="background:{_rgb(colour)};color:{text_colour(colour)}" '
                f'title="{html.escape(hover)}"><span class="af-t">{html.escape(shown)}</span>'
                f'<span class="af-v">{value:+.{places}f}</span></span>',
            )
        )
    details = []
    if attribution.target_scores is not None:
        details.append(f"score {attribution.target_scores[column]:.4f}")
    if scale == "column":
        details.append(f"colour limit ±{limit:.3g}")
    extra = f' <span class="af-score">({html.escape(", ".join(details))})</span>' if details else ""
    return (
        f'<div class="af-target"><div class="af-head">“{html.escape(attribution.targets[column])}”{extra}</div>'
        f'<div class="af-text">{_words(spans)}</div></div>'
    )


def _legend(colormap, limit: float | None) -> str:
    """The colour bar as a CSS gradient from -limit to +limit (None: per-target limits)."""
    stops = ", ".join(_rgb(colormap(k / (LEGEND_STOPS - 1))) for k in range(LEGEND_STOPS))
    if limit is None:
        low, high, caption = "−1", "+1", "× each target's colour limit"
    else:
        places = decimals(limit)
        low, high = f"−{limit:.{places}f}", f"+{limit:.{places}f}"
        caption = "token attribution (cells beyond the limit take the end colours)"
    return (
        f'<div class="af-legend"><span>{low}</span>'
        f'<span class="af-bar" style="background:linear-gradient(to right, {stops})"></span>'
        f"<span>{high}</span><span>{html.escape(caption)}</span></div>"
    )


def document(attribution, **options) -> str:
    """A standalone HTML page holding the view."""
    title = html.escape(f"{attribution.method} attribution")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title></head>\n<body>{render(attribution, **options)}</body></html>\n"
    )
