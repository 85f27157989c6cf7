"""The server-side SVG charts: every text escaped, titles and tooltips present, bars scaled to the largest value."""

from __future__ import annotations

import re
from decimal import Decimal

from appliance.web import charts


def test_a_bar_chart_escapes_its_texts_and_scales_to_the_largest_bar() -> None:
    svg = str(charts.bar_chart([("<b>", 10), ("Q&A", Decimal("5.5"))], title='Sales "&" <x>', desc="d<", unit=" USD",
                               label_every=1))
    assert "<b>" not in svg and "&lt;b&gt;: 10 USD" in svg and "Q&amp;A: 5.5 USD" in svg
    assert 'Sales &#34;&amp;&#34; &lt;x&gt;</title>' in svg and "d&lt;</desc>" in svg
    heights = [float(h) for h in re.findall(r'class="chart-bar"[^>]* height="([\d.]+)"', svg)]
    assert heights == [150.0, 82.5]  # the plot is 150 high; 5.5 is 55% of 10


def test_a_line_chart_has_a_point_and_tooltip_per_value() -> None:
    svg = str(charts.line_chart([("2026-12-01", Decimal("100.25")), ("2026-12-02", Decimal(0)),
                                 ("<day>", Decimal(50))], title="Value", desc="Value over time"))
    assert svg.count('<circle class="chart-point"') == 3 and "2026-12-01: 100.25</title>" in svg
    assert "&lt;day&gt;" in svg and "<day>" not in svg and '<polyline class="chart-line" points="' in svg
