"""Charts drawn on the server as inline SVG: readable without JavaScript, allowed by the CSP (no style
attribute, no script: colours come from classes in app.css), printable, and accessible — each chart is an
``img`` with a title and a description that states its figures in words, each bar or point has its own
tooltip, and the page puts the same figures in a table beside it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from decimal import Decimal

from markupsafe import Markup, escape

_ids = itertools.count(1)
WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 640, 180, 48, 22, 8

Number = int | Decimal


def _scale(values: Sequence[Number]) -> float:
    top = max((Decimal(v) for v in values), default=Decimal(0))
    return float(top) if top > 0 else 1.0


def _top_text(values: Sequence[Number]) -> str:
    top = max((Decimal(v) for v in values), default=Decimal(0))
    return f"{top if top > 0 else 1:,}"


# Coordinates are floats written to one decimal, and text goes through escape(): one C-level str.format per
# element instead of Markup.format's Python formatter (a 90-point chart cost ~15 ms that way on a busy machine).

def _frame(chart_id: str, title: str, desc: str, body: list[str], top_label: str) -> Markup:
    plot_h = HEIGHT - PAD_BOTTOM - PAD_TOP
    cid = escape(chart_id)
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{cid}-t {cid}-d" '
             'xmlns="http://www.w3.org/2000/svg">',
             f'<title id="{cid}-t">{escape(title)}</title><desc id="{cid}-d">{escape(desc)}</desc>',
             f'<line class="chart-axis" x1="{PAD_LEFT}" y1="{PAD_TOP + plot_h}" x2="{WIDTH}" y2="{PAD_TOP + plot_h}"/>',
             f'<text class="chart-label" x="{PAD_LEFT - 4}" y="{PAD_TOP + 10}" text-anchor="end">'
             f'{escape(top_label)}</text>',
             f'<text class="chart-label" x="{PAD_LEFT - 4}" y="{PAD_TOP + plot_h}" text-anchor="end">0</text>']
    return Markup("".join([*parts, *body, "</svg>"]))  # noqa: S704 - every value above is escaped, or a number


def bar_chart(points: Sequence[tuple[str, Number]], *, title: str, desc: str, unit: str = "",
              top_label: str | None = None, label_every: int = 7) -> Markup:
    """One bar per (label, value); every ``label_every``-th label written under the axis."""
    chart_id = f"chart{next(_ids)}"
    plot_w, plot_h = WIDTH - PAD_LEFT, HEIGHT - PAD_BOTTOM - PAD_TOP
    top = _scale([v for _l, v in points])
    step = plot_w / max(len(points), 1)
    width = round(step * 8 / 10, 1)
    body = []
    for n, (label, value) in enumerate(points):
        h = round(float(value) / top * plot_h, 1)
        x = round(PAD_LEFT + step * n + step / 10, 1)
        text = escape(label)
        body.append(f'<rect class="chart-bar" x="{x:.1f}" y="{PAD_TOP + plot_h - h:.1f}" width="{width:.1f}" '
                    f'height="{h:.1f}"><title>{text}: {escape(f"{value:,}")}{escape(unit)}</title></rect>')
        if n % label_every == 0 or (n == len(points) - 1 and n % label_every > label_every // 2):
            body.append(f'<text class="chart-label" x="{x + width / 2:.1f}" y="{HEIGHT - 6}" '
                        f'text-anchor="middle">{text}</text>')
    return _frame(chart_id, title, desc, body, top_label if top_label is not None else
                  _top_text([v for _l, v in points]))


def line_chart(points: Sequence[tuple[str, Number]], *, title: str, desc: str, unit: str = "",
               top_label: str | None = None, label_every: int = 15) -> Markup:
    """A line through (label, value) points, each point with its tooltip."""
    chart_id = f"chart{next(_ids)}"
    plot_w, plot_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_BOTTOM - PAD_TOP
    top = _scale([v for _l, v in points])
    step = plot_w / max(len(points) - 1, 1)
    coords = []
    body = []
    for n, (label, value) in enumerate(points):
        x = PAD_LEFT + step * n
        y = PAD_TOP + plot_h - float(value) / top * plot_h
        coords.append(f"{x:.1f},{y:.1f}")
        text = escape(label)
        body.append(f'<circle class="chart-point" cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{text}: '
                    f'{escape(value)}{escape(unit)}</title></circle>')
        if n % label_every == 0 or (n == len(points) - 1 and n % label_every > label_every // 2):
            body.append(f'<text class="chart-label" x="{x:.1f}" y="{HEIGHT - 6}" text-anchor="middle">{text}</text>')
    line = f'<polyline class="chart-line" points="{" ".join(coords)}"/>' if len(coords) > 1 else ""
    return _frame(chart_id, title, desc, [line, *body], top_label if top_label is not None else
                  _top_text([v for _l, v in points]))
