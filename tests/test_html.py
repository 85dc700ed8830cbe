"""The HTML view: its text, values and legend, and (where Chromium is installed) how a real browser
lays it out and paints it."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import matplotlib
import matplotlib.image
import numpy as np
import pytest
from attribfast import Attribution
from attribfast.errors import InvalidInputError
from attribfast.htmlview import LEGEND_STOPS, _segments, decimals

PARAGRAPH = (
    "The committee reviewed the proposal carefully and decided that the unprecedented infrastructure "
    "investment would transform transportation across the metropolitan region, although several members "
    "worried about maintenance costs, environmental consequences and the displacement of long-standing "
    "neighbourhood businesses during construction."
)
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium); no browser to render with"
)


def paragraph(n_targets: int = 3, seed: int = 1) -> Attribution:
    """Subword-like tokens of PARAGRAPH (words over 7 characters split in two) with exact offsets."""
    tokens, offsets = [], []
    for match in re.finditer(r"\S+", PARAGRAPH):
        word, position = match.group(), match.start()
        for k, piece in enumerate([word] if len(word) <= 7 else [word[:5], word[5:]]):
            tokens.append(("\u2423" if k == 0 and position else "") + piece)
            offsets.append((position, position + len(piece)))
            position += len(piece)
    matrix = np.random.default_rng(seed).normal(0, 0.5, (len(tokens), n_targets))
    return Attribution(
        matrix=matrix,
        tokens=tokens,
        targets=[f" target {j}" for j in range(n_targets)],
        method="occlusion",
        text=PARAGRAPH,
        offsets=np.array(offsets),
        target_scores=-np.arange(1, n_targets + 1, dtype=float),
    )


def colour_of(value: float, limit: float) -> np.ndarray:
    return np.array(matplotlib.colormaps["RdYlGn"](0.5 + 0.5 * np.clip(value / limit, -1, 1))[:3]) * 255


def test_text_keeps_its_whitespace():
    result = paragraph()
    assert "".join(gap + shown for gap, shown in _segments(result)) == PARAGRAPH
    page = result.to_html()
    # Words are separated by real spaces; the pieces of one word are grouped so they wrap together.
    split_words = sum(len(w) > 7 for w in PARAGRAPH.split())
    assert page.count('<span class="af-w">') == split_words * len(result.targets)
    assert "\u2423" not in re.sub(r'title="[^"]*"', "", page)


def test_tokens_without_offsets_use_their_space_markers_and_specials_stand_apart():
    result = Attribution(
        matrix=np.zeros((5, 1)),
        tokens=["[CLS]", "hello", "\u2423wor", "ld", "[SEP]"],
        targets=["t"],
        method="x",
        special=np.array([True, False, False, False, True]),
    )
    assert [gap for gap, _ in _segments(result)] == ["", " ", " ", "", " "]
    assert [shown for _, shown in _segments(result)] == ["[CLS]", "hello", "wor", "ld", "[SEP]"]
    spaced = Attribution(
        matrix=np.zeros((3, 1)),
        tokens=["a", "\u2423", "b"],
        targets=["t"],
        method="x",
        text="a b",
        offsets=np.array([[0, 1], [1, 2], [2, 3]]),
    )
    assert _segments(spaced) == [("", "a"), (" ", "\u2423"), (" ", "b")]  # a space token has a box of its own
    assert result.to_html().count("af-tok af-special") == 2


def test_every_value_is_printed_and_coloured_on_one_scale():
    result = paragraph()
    page = result.to_html()
    limit = np.abs(result.matrix).max()
    values = re.findall(r'<span class="af-v">([^<]*)</span>', page)
    places = decimals(limit)
    assert values == [f"{v:+.{places}f}" for v in result.matrix.T.ravel()]
    backgrounds = re.findall(r'class="af-tok" style="background:#([0-9a-f]{6})', page)
    for hex_colour, value in zip(backgrounds, result.matrix.T.ravel(), strict=True):
        rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (0, 2, 4)])
        assert np.abs(rgb - colour_of(value, limit)).max() <= 1
    legend = re.search(r'class="af-legend"><span>([^<]*)</span>.*?linear-gradient\(to right, ([^)]*)\)', page)
    assert legend.group(1) == f"−{limit:.{places}f}" and len(legend.group(2).split(", ")) == LEGEND_STOPS
    assert decimals(1.36) == 2 and decimals(0.004) == 5 and decimals(250.0) == 0


def test_column_scale_and_robust_limit_in_html():
    result = paragraph()
    matrix = result.matrix.copy()
    matrix[3, 1] = -40.0
    spiky = Attribution(**{**result.__dict__, "matrix": matrix})
    robust = spiky.to_html(vmax="p95")
    limit = np.percentile(np.abs(matrix), 95)
    assert f"−{limit:.{decimals(limit)}f}" in robust
    by_column = spiky.to_html(scale="column")
    assert "colour limit ±40" in by_column and html.escape("× each target's colour limit") in by_column
    with pytest.raises(InvalidInputError):
        spiky.to_html(scale="row")
    with pytest.raises(InvalidInputError):
        Attribution(matrix=np.array([[np.nan]]), tokens=["a"], targets=["t"], method="x").to_html()


class _Balance(HTMLParser):
    VOID = {"meta", "br", "wbr"}

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, tag


def test_save_html_writes_a_balanced_standalone_page(tmp_path):
    result = Attribution(matrix=np.ones((2, 1)), tokens=["<b>", "&"], targets=["</div>"], method="x")
    path = tmp_path / "view.html"
    result.save_html(path)
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page
    assert "&lt;b&gt;" in page and "&amp;" in page and "“&lt;/div&gt;”" in page
    parser = _Balance()
    parser.feed(page)
    assert parser.stack == []
    assert result._repr_html_() == result.to_html() and result.to_html() in page


def chromium(*args: str, tmp_path) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"]
    command += ["--force-device-scale-factor=1", f"--user-data-dir={tmp_path / 'profile'}", *args]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return run


# Test-only: measures the laid-out page in the browser and writes the numbers into the DOM.
PROBE = """<script>
const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
const out = {
  scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
  tokens: [...document.querySelectorAll('.af-tok')].map(box),
  values: [...document.querySelectorAll('.af-v')].map(box),
  lines: [...document.querySelectorAll('.af-text')].map(
    t => new Set([...t.querySelectorAll('.af-tok')].map(e => Math.round(e.getBoundingClientRect().top))).size),
  bar: document.querySelector('.af-bar') && box(document.querySelector('.af-bar')),
};
const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script>"""


@needs_chromium
def test_chromium_lays_out_wrapped_text_with_readable_values_and_a_legend(tmp_path):
    result = paragraph()
    width, height = 640, 1400
    page = tmp_path / "view.html"
    result.save_html(page)
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = chromium(f"--window-size={width},{height}", "--dump-dom", probe.as_uri(), tmp_path=tmp_path).stdout
    probed = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert probed, "the layout probe did not run"
    layout = json.loads(html.unescape(probed.group(1)))

    assert layout["scrollWidth"] <= layout["innerWidth"], "the text runs off the page"
    assert all(lines >= 3 for lines in layout["lines"]), layout["lines"]
    n_cells = result.matrix.size
    assert len(layout["values"]) == n_cells and len(layout["tokens"]) == n_cells
    for left, top, right, bottom in layout["values"]:
        assert right - left > 5 and bottom - top > 5 and 0 <= left and right <= width
    tokens = layout["tokens"]
    for k, (l1, t1, r1, b1) in enumerate(tokens):
        for l2, t2, r2, b2 in tokens[k + 1 :]:
            assert not (l1 < r2 - 0.5 and l2 < r1 - 0.5 and t1 < b2 - 0.5 and t2 < b1 - 0.5), "tokens overlap"

    shot = tmp_path / "view.png"
    chromium(f"--window-size={width},{height}", f"--screenshot={shot}", page.as_uri(), tmp_path=tmp_path)
    pixels = matplotlib.image.imread(shot)[..., :3] * 255
    assert pixels.shape[:2] == (height, width)
    assert np.all(pixels[:, -4:] > 250), "something is painted at the right edge: cut off"
    assert layout["bar"], "no colour legend"
    left, top, right, bottom = layout["bar"]
    middle = int((top + bottom) / 2)
    for fraction, value in ((0.02, -1.0), (0.5, 0.0), (0.98, 1.0)):
        painted = pixels[middle, int(left + fraction * (right - left))]
        assert np.abs(painted - colour_of(value, 1.0)).max() < 30, (fraction, painted)
    limit = np.abs(result.matrix).max()
    for k in (0, 7, 40):
        left, top, _, bottom = tokens[k]
        painted = pixels[int((top + bottom) / 2), int(left) + 1]
        assert np.abs(painted - colour_of(result.matrix[k, 0], limit)).max() < 12, k
