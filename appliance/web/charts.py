"""Charts drawn on the server as inline SVG: readable without JavaScript, allowed by the CSP (no style
attribute, no script: colours come from classes in app.css), printable, and accessible — each chart is an
``img`` with a title and a description that states its figures in words, each bar or point has its own
tooltip, and the page puts the same figures in a table beside it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from decimal import Decimal

from markupsafe import Markup

_ids = itertools.count(1)
WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 640, 180, 48, 22, 8

Number = int | Decimal


def _scale(values: Sequence[Number]) -> Decimal:
    top = max((Decimal(v) for v in values), default=Decimal(0))
    return top if top > 0 else Decimal(1)


def _frame(chart_id: str, title: str, desc: str, body: list[Markup], top_label: str) -> Markup:
    plot_h = HEIGHT - PAD_BOTTOM - PAD_TOP
    parts = [Markup('<svg class="chart" viewBox="0 0 {} {}" role="img" aria-labelledby="{}-t {}-d" '
                    'xmlns="http://www.w3.org/2000/svg">').format(WIDTH, HEIGHT, chart_id, chart_id),
             Markup('<title id="{}-t">{}</title><desc id="{}-d">{}</desc>').format(chart_id, title, chart_id, desc),
             Markup('<line class="chart-axis" x1="{}" y1="{}" x2="{}" y2="{}"/>').format(
                 PAD_LEFT, PAD_TOP + plot_h, WIDTH, PAD_TOP + plot_h),
             Markup('<text class="chart-label" x="{}" y="{}" text-anchor="end">{}</text>').format(
                 PAD_LEFT - 4, PAD_TOP + 10, top_label),
             Markup('<text class="chart-label" x="{}" y="{}" text-anchor="end">0</text>').format(
                 PAD_LEFT - 4, PAD_TOP + plot_h)]
    return Markup("").join([*parts, *body, Markup("</svg>")])


def bar_chart(points: Sequence[tuple[str, Number]], *, title: str, desc: str, unit: str = "",
              top_label: str | None = None, label_every: int = 7) -> Markup:
    """One bar per (label, value); every ``label_every``-th label written under the axis."""
    chart_id = f"chart{next(_ids)}"
    plot_w, plot_h = WIDTH - PAD_LEFT, HEIGHT - PAD_BOTTOM - PAD_TOP
    top = _scale([v for _l, v in points])
    step = Decimal(plot_w) / max(len(points), 1)
    body = []
    for n, (label, value) in enumerate(points):
        h = (Decimal(value) / top * plot_h).quantize(Decimal("0.1"))
        x = (PAD_LEFT + step * n + step / 10).quantize(Decimal("0.1"))
        width = (step * 8 / 10).quantize(Decimal("0.1"))
        body.append(Markup('<rect class="chart-bar" x="{}" y="{}" width="{}" height="{}"><title>{}: {}{}</title>'
                           "</rect>").format(x, PAD_TOP + plot_h - h, width, h, label, f"{value:,}", unit))
        if n % label_every == 0 or (n == len(points) - 1 and n % label_every > label_every // 2):
            body.append(Markup('<text class="chart-label" x="{}" y="{}" text-anchor="middle">{}</text>').format(
                (x + width / 2).quantize(Decimal("0.1")), HEIGHT - 6, label))
    return _frame(chart_id, title, desc, body, top_label if top_label is not None else f"{top:,}")


def line_chart(points: Sequence[tuple[str, Number]], *, title: str, desc: str, unit: str = "",
               top_label: str | None = None, label_every: int = 15) -> Markup:
    """A line through (label, value) points, each point with its tooltip."""
    chart_id = f"chart{next(_ids)}"
    plot_w, plot_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_BOTTOM - PAD_TOP
    top = _scale([v for _l, v in points])
    step = Decimal(plot_w) / max(len(points) - 1, 1)
    coords = []
    body = []
    for n, (label, value) in enumerate(points):
        x = (PAD_LEFT + step * n).quantize(Decimal("0.1"))
        y = (PAD_TOP + plot_h - Decimal(value) / top * plot_h).quantize(Decimal("0.1"))
        coords.append(f"{x},{y}")
        body.append(Markup('<circle class="chart-point" cx="{}" cy="{}" r="3"><title>{}: {}{}</title></circle>')
                    .format(x, y, label, value, unit))
        if n % label_every == 0 or (n == len(points) - 1 and n % label_every > label_every // 2):
            body.append(Markup('<text class="chart-label" x="{}" y="{}" text-anchor="middle">{}</text>').format(
                x, HEIGHT - 6, label))
    line = Markup('<polyline class="chart-line" points="{}"/>').format(" ".join(coords)) if len(coords) > 1 \
        else Markup("")
    return _frame(chart_id, title, desc, [line, *body], top_label if top_label is not None else f"{top:,}")
