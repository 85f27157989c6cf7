"""The examination pack: what an examiner asks for about a period, firm-wide, on removable media — the
holdings report at the period's end, the transactions report of the period, the access-person roster, the
late-report list, the coverage gaps, the code of ethics versions and their acknowledgements, the campaigns'
tasks, every certification submitted (its frozen snapshot) and its reviews, and the alerts with their notes,
evidence and resolutions. Each report as CSV (machine-usable) and print-ready HTML (human-readable).

The directory is signed like an audit export (audit/media/signed.py: the audit signing key, the same manifest
and signature files, the same destination checks) and `vigatra reports verify DIR` checks it offline."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.rbac.actors import Actor
from appliance.services.attestations.campaigns import days_late
from appliance.services.context import Appliance
from appliance.services.filings import rows as report_rows
from appliance.services.filings import submissions
from appliance.services.filings.document import Document, html
from appliance.services.filings.holdings import holdings_as_of, totals
from appliance.services.filings.periods import Period
from appliance.store.base import utcnow
from appliance.store.models import (
    Alert,
    AlertEvidence,
    AlertNote,
    AttestationCampaign,
    AttestationReview,
    AttestationTask,
    CodeAcknowledgement,
    CodeVersion,
    Employee,
)

FORMAT = "vigatra-examination-pack"
FORMAT_VERSION = 1


def firm_name(app: Appliance) -> str:
    return app.settings.display.firm_name or app.settings.appliance_id or "Vigatra appliance"


def holdings_document(session: Session, actor: Actor, app: Appliance, day: dt.date) -> Document:
    report = holdings_as_of(session, actor, app, day)
    rows, gaps = report_rows.holding_rows(session, actor, report)
    total = totals(report.holdings)
    summary = (f"Total {total.value:.2f} {report.currency} over {total.priced} priced holding(s)"
               + (f"; not complete: {total.unpriced} holding(s) unpriced and left out." if total.unpriced else "."))
    return Document("Holdings report", firm_name(app), f"as of the end of {day.isoformat()} (UTC)", utcnow(),
                    report_rows.HOLDING_COLUMNS, rows, [report.method, summary], [g.text for g in gaps], group_by=1)


def transactions_document(session: Session, actor: Actor, app: Appliance, period: Period) -> Document:
    report = report_rows.transaction_report(session, actor, app.settings, period)
    note = ("Completed transactions of the period (pending, failed and cancelled transfers moved nothing), and the "
            "transactions employees added by hand to their certifications (provenance 'manual'). 'price' and "
            f"'principal_amount' are in {report.currency} at the transaction's time (valuation service); "
            "'trade_price' is the trade's own price in 'trade_currency'.")
    return Document("Transactions report", firm_name(app), period.text(), utcnow(), report.header, report.rows,
                    [note], [g.text for g in report.gaps], group_by=1)


def roster_document(session: Session, app: Appliance) -> Document:
    return Document("Access persons", firm_name(app), f"as of {utcnow().date().isoformat()}", utcnow(),
                    report_rows.ROSTER_COLUMNS, report_rows.roster_rows(session),
                    ["Employees flagged as access persons under the code of ethics, with the date they became one "
                     "(the initial holdings report is due 10 days after it) and the accounts the appliance reads."])


def late_document(session: Session, app: Appliance, period: Period | None = None) -> Document:
    label = period.text() if period is not None else f"as of {utcnow().date().isoformat()}"
    return Document("Late reports", firm_name(app), label, utcnow(), submissions.LATE_COLUMNS,
                    submissions.late_rows(session),
                    ["Reports still not submitted after their due date (days late to today), and reports submitted "
                     "after it (days late to the first submission). Closed tasks are not listed."])


def _csv_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str) if value is not None else ""


def _tables(session: Session, period: Period) -> dict[str, list[list[Any]]]:
    """The pack's record tables (CSV only): code versions, acknowledgements, tasks, submissions, reviews,
    alerts with notes and evidence."""
    out: dict[str, list[list[Any]]] = {}
    names = {e.id: (e.external_id or "", e.name) for e in session.execute(select(Employee)).scalars()}
    out["code-versions.csv"] = [["version", "title", "filename", "media_type", "sha256", "bytes", "uploaded_by",
                                 "uploaded_at", "file_in_pack"]]
    for v in session.execute(select(CodeVersion).order_by(CodeVersion.version)).scalars():
        out["code-versions.csv"].append([v.version, v.title, v.filename, v.media_type, v.sha256, v.size,
                                         v.uploaded_label, v.uploaded_at, code_file_name(v)])
    out["acknowledgements.csv"] = [["code_version", "employee_external_id", "employee", "typed_name",
                                    "acknowledged_at"]]
    versions = {v.id: v.version for v in session.execute(select(CodeVersion)).scalars()}
    for ack in session.execute(select(CodeAcknowledgement).order_by(CodeAcknowledgement.id)).scalars():
        out["acknowledgements.csv"].append([versions.get(ack.code_version_id),
                                            *names.get(ack.employee_id, ("", "")), ack.typed_name,
                                            ack.acknowledged_at])
    out["tasks.csv"] = [["campaign_id", "campaign", "kind", "period", "employee_external_id", "employee", "due",
                         "as_of", "status", "closed_reason", "first_submitted_at", "submitted_at", "reviewed_at",
                         "days_late"]]
    today = utcnow().date()
    for task, campaign in session.execute(
            select(AttestationTask, AttestationCampaign).join(
                AttestationCampaign, AttestationCampaign.id == AttestationTask.campaign_id)
            .order_by(AttestationCampaign.id, AttestationTask.id)).all():
        if not period.first <= task.due <= period.last + dt.timedelta(days=45) and campaign.period != period.label:
            continue
        out["tasks.csv"].append([campaign.id, campaign.title, campaign.kind, campaign.period,
                                 *names.get(task.employee_id, ("", "")), task.due, task.as_of, task.status,
                                 task.closed_reason, task.first_submitted_at, task.submitted_at, task.reviewed_at,
                                 days_late(task, today)])
    out["submissions.csv"] = [["submission_id", "campaign", "kind", "period", "employee_external_id", "employee",
                               "number", "submitted_at", "nothing_to_report", "typed_name", "status",
                               "snapshot_sha256", "snapshot_file"]]
    for sub, _task, campaign, _person in submissions.submissions_of(session, period):
        out["submissions.csv"].append([sub.id, campaign.title, campaign.kind, campaign.period,
                                       *names.get(sub.employee_id, ("", "")), sub.number, sub.submitted_at,
                                       sub.nothing_to_report, sub.typed_name, sub.status, sub.snapshot_sha256,
                                       f"submission-{sub.id}.json"])
    out["reviews.csv"] = [["submission_id", "reviewer", "decision", "comment", "decided_at"]]
    for r in session.execute(select(AttestationReview).order_by(AttestationReview.id)).scalars():
        if period.since <= r.decided_at < period.until + dt.timedelta(days=45):
            out["reviews.csv"].append([r.submission_id, r.reviewer_label, r.decision, r.comment, r.decided_at])
    out["alerts.csv"] = [["alert_id", "employee_external_id", "employee", "kind", "severity", "status", "title",
                          "occurred_at", "created_at", "resolved_at", "resolution", "reason", "detail"]]
    alert_ids: list[int] = []
    for a in session.execute(select(Alert).where(Alert.created_at < period.until, (Alert.resolved_at.is_(None)) | (
            Alert.resolved_at >= period.since)).order_by(Alert.id)).scalars():
        alert_ids.append(a.id)
        person = names.get(a.employee_id, ("", "")) if a.employee_id is not None else ("", "")
        out["alerts.csv"].append([a.id, *person, a.kind, a.severity, a.status, a.title, a.occurred_at, a.created_at,
                                  a.resolved_at, a.resolution, a.reason, _csv_json(a.detail)])
    out["alert-notes.csv"] = [["alert_id", "author", "created_at", "text"]]
    out["alert-evidence.csv"] = [["alert_id", "type", "reference", "note", "added_by", "added_at"]]
    for start in range(0, len(alert_ids), 500):
        chunk = alert_ids[start:start + 500]
        for n in session.execute(select(AlertNote).where(AlertNote.alert_id.in_(chunk))
                                 .order_by(AlertNote.id)).scalars():
            out["alert-notes.csv"].append([n.alert_id, n.author_label, n.created_at, n.text])
        for e in session.execute(select(AlertEvidence).where(AlertEvidence.alert_id.in_(chunk))
                                 .order_by(AlertEvidence.id)).scalars():
            out["alert-evidence.csv"].append([e.alert_id, e.type, e.reference, e.note, e.added_label, e.added_at])
    return out


def code_file_name(version: CodeVersion) -> str:
    return f"code-of-ethics-v{version.version}.{'pdf' if version.media_type == 'application/pdf' else 'txt'}"


def build(session: Session, actor: Actor, app: Appliance, period: Period) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The pack's files (name -> bytes) and what its manifest says about them."""
    from appliance.services.filings import csvout

    files: dict[str, bytes] = {}
    day = min(period.last, utcnow().date())  # a period not over yet: the holdings of today
    documents = {
        f"holdings-{day.isoformat()}": holdings_document(session, actor, app, day),
        f"transactions-{period.slug}": transactions_document(session, actor, app, period),
        "access-persons": roster_document(session, app),
        "late-reports": late_document(session, app),
    }
    for stem, doc in documents.items():
        files[f"{stem}.csv"] = doc.csv()
        files[f"{stem}.html"] = html(doc).encode("utf-8")
    gaps = documents[f"transactions-{period.slug}"].gaps
    files["coverage-gaps.csv"] = csvout.render([["coverage_gap"], *([g] for g in gaps)])
    for name, table in _tables(session, period).items():
        files[name] = csvout.render(table)
    for version in session.execute(select(CodeVersion).order_by(CodeVersion.version)).scalars():
        files[code_file_name(version)] = bytes(version.content)
    for sub, _task, _campaign, _person in submissions.submissions_of(session, period):
        files[f"submission-{sub.id}.json"] = (json.dumps(sub.snapshot, indent=2, sort_keys=True, default=str)
                                              + "\n").encode("utf-8")
    files["README.txt"] = _readme(app, period, sorted(files)).encode("utf-8")
    about = {"format_version": FORMAT_VERSION, "firm": firm_name(app), "appliance_id": app.settings.appliance_id,
             "period": {"label": period.label, "from": period.first.isoformat(), "to": period.last.isoformat()},
             "created_at": utcnow().isoformat(timespec="seconds"),
             "reports": {stem: len(doc.rows) for stem, doc in documents.items()}}
    return files, about


def _readme(app: Appliance, period: Period, names: list[str]) -> str:
    lines = [f"Examination pack of {firm_name(app)} for {period.text()}", "",
             "Every report is here as CSV (numbers as numbers, ISO 8601 dates, UTC) and as a printable HTML page.",
             "manifest.json lists every file with its SHA-256; manifest.sig is the appliance's Ed25519 signature",
             "over manifest.json's exact bytes; public_key.pem is its public key. To check the pack on any machine:",
             "", "    vigatra reports verify THIS_DIRECTORY [--public-key appliance.pem]", "",
             "or: openssl pkeyutl -verify -pubin -inkey public_key.pem -rawin -in manifest.json -sigfile manifest.sig",
             "then sha256sum each file against the manifest.", "", "Files:"]
    return "\n".join(lines + [f"  {n}" for n in [*names, "README.txt"]]) + "\n"
