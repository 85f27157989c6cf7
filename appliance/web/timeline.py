"""A coverage timeline drawn on the server as inline SVG (like charts.py: no style attribute, no script, colours
from classes in app.css): one lane per connection and stream, a bar per span of time known complete or known
missing, each with its own tooltip; the figure has a title and a description, and the page puts the same spans
in a table beside it."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

_ids = itertools.count(1)
WIDTH, LABEL_W, LANE_H, BAR_H, PAD_TOP, AXIS_H = 640, 170, 22, 14, 4, 20


@dataclass(frozen=True)
class Span:
    start: dt.datetime
    end: dt.datetime
    kind: str  # covered | gap | filled (a gap since filled)
    text: str  # the tooltip: what the span is, in words, with its times


@dataclass(frozen=True)
class Lane:
    label: str
    spans: Sequence[Span]


def coverage_timeline(lanes: Sequence[Lane], *, start: dt.datetime, end: dt.datetime, title: str, desc: str,
                      start_label: str, end_label: str) -> Markup:
    """Lanes of spans between ``start`` and ``end`` (spans outside are clipped)."""
    chart_id = f"timeline{next(_ids)}"
    plot_w = WIDTH - LABEL_W - 8
    height = PAD_TOP + LANE_H * max(len(lanes), 1) + AXIS_H
    span_s = max((end - start).total_seconds(), 1.0)

    def x(at: dt.datetime) -> float:
        clipped = min(max(at, start), end)
        return round(LABEL_W + (clipped - start).total_seconds() / span_s * plot_w, 1)

    parts = [Markup('<svg class="chart timeline" viewBox="0 0 {} {}" role="img" aria-labelledby="{}-t {}-d" '
                    'xmlns="http://www.w3.org/2000/svg">').format(WIDTH, height, chart_id, chart_id),
             Markup('<title id="{}-t">{}</title><desc id="{}-d">{}</desc>').format(chart_id, title, chart_id, desc)]
    for n, lane in enumerate(lanes):
        top = PAD_TOP + LANE_H * n
        parts.append(Markup('<text class="chart-label" x="{}" y="{}" text-anchor="end">{}</text>').format(
            LABEL_W - 6, top + BAR_H - 3, lane.label))
        parts.append(Markup('<rect class="timeline-track" x="{}" y="{}" width="{}" height="{}"/>').format(
            LABEL_W, top, plot_w, BAR_H))
        for span in lane.spans:
            if span.end <= start or span.start >= end:
                continue
            left, right = x(span.start), x(span.end)
            parts.append(Markup('<rect class="timeline-{}" x="{}" y="{}" width="{}" height="{}"><title>{}</title>'
                                "</rect>").format(span.kind, left, top, max(round(right - left, 1), 1.5), BAR_H,
                                                  span.text))
    axis_y = PAD_TOP + LANE_H * max(len(lanes), 1)
    parts += [Markup('<line class="chart-axis" x1="{}" y1="{}" x2="{}" y2="{}"/>').format(
                  LABEL_W, axis_y, WIDTH - 8, axis_y),
              Markup('<text class="chart-label" x="{}" y="{}" text-anchor="start">{}</text>').format(
                  LABEL_W, axis_y + 14, start_label),
              Markup('<text class="chart-label" x="{}" y="{}" text-anchor="end">{}</text>').format(
                  WIDTH - 8, axis_y + 14, end_label),
              Markup("</svg>")]
    return Markup("").join(parts)
