"""A report as one document, rendered as CSV or as print-ready HTML.

The HTML is a page of its own (no menu, no script): the firm's name and the period at the head, the method
and the coverage gaps stated before the table, the table's header repeated on every printed page
(``thead``), one employee per printed page. In the UI it links the print stylesheet (static/report-print.css:
the pages' Content-Security-Policy allows no inline style); in the examination pack it carries the same
rules inside the file (opened offline, with no server and no CSP)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from markupsafe import escape

from appliance.audit.chain import format_timestamp
from appliance.services.filings import csvout

STYLESHEET = Path(__file__).resolve().parents[2] / "web" / "static" / "report-print.css"


@dataclass(frozen=True)
class Document:
    title: str
    firm: str
    period: str
    generated_at: dt.datetime
    header: list[str]
    rows: list[list[Any]]
    notes: list[str] = field(default_factory=list)  # the method, totals
    gaps: list[str] = field(default_factory=list)  # coverage gaps stated on the report
    group_by: int | None = None  # the column whose value starts a new printed page (the employee)

    def csv(self) -> bytes:
        return csvout.render([self.header, *self.rows])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        return format_timestamp(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def html(doc: Document, *, stylesheet_url: str | None = None, back_url: str | None = None) -> str:
    """The printable page: linked stylesheet (``stylesheet_url``) or embedded (files in the pack)."""
    style = (f'<link rel="stylesheet" href="{escape(stylesheet_url)}">' if stylesheet_url
             else f"<style>{STYLESHEET.read_text(encoding='utf-8')}</style>")
    head = "".join(f"<th>{escape(h)}</th>" for h in doc.header)
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{escape(doc.title)} · {escape(doc.period)}</title>", style, "</head><body class=\"report\">",
        f'<header class="report-head"><p class="firm">{escape(doc.firm)}</p><h1>{escape(doc.title)}</h1>'
        f'<p class="period">{escape(doc.period)}</p>'
        f'<p class="generated">Generated {escape(format_timestamp(doc.generated_at))} (UTC)</p></header>']
    if back_url:
        parts.append(f'<p class="no-print"><a href="{escape(back_url)}">Back to Reports</a> · print this page with '
                     "your browser (one employee per page, the table header on every page)</p>")
    for note in doc.notes:
        parts.append(f'<p class="note">{escape(note)}</p>')
    parts.append('<section class="gaps"><h2>Coverage gaps</h2>')
    if doc.gaps:
        parts.append("<ul>" + "".join(f"<li>{escape(g)}</li>" for g in doc.gaps) + "</ul>")
    else:
        parts.append("<p>None known for this period.</p>")
    parts.append("</section>")
    groups: list[list[list[Any]]] = []
    for row in doc.rows:
        if doc.group_by is None or not groups or groups[-1][0][doc.group_by] != row[doc.group_by]:
            groups.append([])
        groups[-1].append(row)
    if not groups:
        parts.append('<p class="empty">Nothing to report for this period.</p>')
        groups.append([])
    for group in groups:
        parts.append(f'<table class="report-table"><thead><tr>{head}</tr></thead><tbody>')
        for row in group:
            parts.append("<tr>" + "".join(
                f'<td class="num">{escape(_cell(v))}</td>' if isinstance(v, (int, Decimal)) and not isinstance(v, bool)
                else f"<td>{escape(_cell(v))}</td>" for v in row) + "</tr>")
        parts.append("</tbody></table>")
    parts.append(f'<footer class="report-foot">{escape(doc.firm)} · {escape(doc.title)} · {escape(doc.period)}'
                 "</footer></body></html>")
    return "\n".join(parts)
