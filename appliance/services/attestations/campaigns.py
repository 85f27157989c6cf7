"""Campaigns and tasks: one task per access person; access persons and their initial-holdings task; the
code of ethics' versions (each new one starts an acknowledgement campaign); closing a leaver's tasks."""

from __future__ import annotations

import datetime as dt
import hashlib
import zoneinfo
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from appliance.errors import Conflict, Invalid, NotFound
from appliance.rbac.actors import Actor
from appliance.services.attestations import periods
from appliance.services.text import CONTROL_MESSAGE, has_control_characters
from appliance.settings import Settings
from appliance.store.base import utcnow
from appliance.store.models import AttestationCampaign, AttestationTask, CodeVersion, Employee

OUTSTANDING = ("open", "returned")
STATUSES = ("open", "submitted", "approved", "returned", "late", "closed")
AUTOMATIC = "automatic"
MAX_CODE_BYTES = 20 * 1024 * 1024
MEDIA_TYPES = ("text/plain", "application/pdf")


def today() -> dt.date:
    return utcnow().date()


def firm_today(settings: Settings) -> dt.date:
    """Today in the firm's time zone (display.time_zone): the day someone becomes an access person."""
    return utcnow().astimezone(zoneinfo.ZoneInfo(settings.display.time_zone)).date()


def parse_day(value: Any, field: str) -> dt.date | None:
    """YYYY-MM-DD (or None) from a request, refused by name otherwise."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.date):
        return value
    try:
        if not isinstance(value, str) or len(value) != 10:
            raise ValueError(value)
        return dt.date.fromisoformat(value)
    except ValueError:
        raise Invalid(f"{field} must be a date (YYYY-MM-DD)", field=field) from None


def status_of(task: AttestationTask, on: dt.date | None = None) -> str:
    """The status shown everywhere: the stored one, or ``late`` for an outstanding task past its due date."""
    if task.status in OUTSTANDING and (on or today()) > task.due:
        return "late"
    return task.status


def days_late(task: AttestationTask, on: dt.date | None = None) -> int | None:
    """Days past due: still outstanding (to ``on``), or filed late (to the first submission); None if on time."""
    if task.status == "closed":
        return None
    if task.first_submitted_at is not None:
        filed = task.first_submitted_at.date()
        return (filed - task.due).days if filed > task.due else None
    days = ((on or today()) - task.due).days
    return days if days > 0 else None


def _actor_label(actor: Actor | None) -> str:
    return actor.label[:200] if actor is not None else AUTOMATIC


def _access_persons(session: Session) -> list[Employee]:
    return list(session.execute(select(Employee).where(Employee.access_person.is_(True), Employee.status == "active")
                                .order_by(Employee.id)).scalars())


def create(session: Session, settings: Settings, actor: Actor | None, *, kind: Any, period: Any = None,
           due: dt.date | None = None, on: dt.date | None = None) -> AttestationCampaign:
    """A campaign and a task for every active access person. One campaign per kind and period (a code
    version's acknowledgement: per version); initial holdings: a task for each access person who has none."""
    kind = periods.check_kind(kind)
    parsed = periods.parse_period(kind, period)
    on = on or today()
    version: CodeVersion | None = None
    if kind == "code_acknowledgement":
        version = latest_code(session)
        if version is None:
            raise Invalid("upload the code of ethics first: an acknowledgement campaign is for its latest version",
                          field="kind")
        if session.execute(select(AttestationCampaign.id).where(
                AttestationCampaign.code_version_id == version.id)).first():
            raise Conflict(f"code version {version.version} already has an acknowledgement campaign")
    elif kind != "initial_holdings" and session.execute(select(AttestationCampaign.id).where(
            AttestationCampaign.kind == kind, AttestationCampaign.period == parsed.label)).first():
        raise Conflict(f"a {kind} campaign for {parsed.label} already exists")
    campaign_due = due or periods.default_due(settings, kind, parsed, on)
    campaign = AttestationCampaign(
        kind=kind, period=parsed.label, period_start=parsed.start, period_end=parsed.end, as_of=parsed.as_of,
        due=campaign_due, code_version_id=version.id if version else None,
        title=periods.title(kind, parsed, version.version if version else None),
        created_by=actor.user_id if actor is not None else None, created_label=_actor_label(actor))
    session.add(campaign)
    session.flush()
    people = _access_persons(session)
    if kind == "initial_holdings":
        have = _with_initial_task(session)
        people = [p for p in people if p.id not in have]
    for person in people:
        _add_task(session, settings, campaign, person, due=due, on=on)
    session.flush()
    return campaign


def _with_initial_task(session: Session) -> set[int]:
    return set(session.execute(select(AttestationTask.employee_id).join(
        AttestationCampaign, AttestationCampaign.id == AttestationTask.campaign_id).where(
        AttestationCampaign.kind == "initial_holdings")).scalars())


def _add_task(session: Session, settings: Settings, campaign: AttestationCampaign, person: Employee, *,
              due: dt.date | None, on: dt.date) -> AttestationTask:
    if campaign.kind == "initial_holdings":
        since = person.access_person_since or on
        task_due = due or periods.initial_due(settings, since)
        as_of: dt.date | None = since
    else:
        assert campaign.due is not None
        task_due, as_of = campaign.due, campaign.as_of
    task = AttestationTask(campaign_id=campaign.id, employee_id=person.id, due=task_due, as_of=as_of)
    session.add(task)
    return task


def standing_initial_campaign(session: Session) -> AttestationCampaign:
    """The campaign automatic initial-holdings tasks join (made on first need)."""
    campaign = session.execute(select(AttestationCampaign).where(
        AttestationCampaign.kind == "initial_holdings", AttestationCampaign.created_label == AUTOMATIC).order_by(
        AttestationCampaign.id)).scalars().first()
    if campaign is None:
        campaign = AttestationCampaign(kind="initial_holdings", period="", title="Initial holdings reports",
                                       created_label=AUTOMATIC)
        session.add(campaign)
        session.flush()
    return campaign


def ensure_initial_tasks(session: Session, settings: Settings, employee_ids: list[int] | None = None
                         ) -> list[AttestationTask]:
    """An initial-holdings task for every active access person who has none yet (someone who just became
    one). Idempotent: called after the roster, the CLI, the API and the UI change the flag, and by the job."""
    stmt = select(Employee).where(Employee.access_person.is_(True), Employee.status == "active")
    if employee_ids is not None:
        stmt = stmt.where(Employee.id.in_(employee_ids))
    have = _with_initial_task(session)
    missing = [e for e in session.execute(stmt.order_by(Employee.id)).scalars() if e.id not in have]
    if not missing:
        return []
    campaign = standing_initial_campaign(session)
    on = today()
    tasks = [_add_task(session, settings, campaign, e, due=None, on=on) for e in missing]
    session.flush()
    return tasks


@dataclass(frozen=True)
class AccessChange:
    """What :func:`set_access_person` did: the initial-holdings tasks it created, the tasks it closed."""

    created: list[AttestationTask]
    closed: int


def set_access_person(session: Session, settings: Settings, employee: Employee, flag: bool,
                      since: dt.date | None = None) -> AccessChange:
    """Make someone an access person (since ``since``, default today in the firm's time zone; never a day
    ahead) or stop; starting creates their initial-holdings task, stopping closes their outstanding tasks
    (reason ``no_longer_access_person``). Checks everything before changing anything."""
    if since is not None and not flag:
        raise Invalid("access_person_since is only for an access person", field="access_person_since")
    if since is not None and since > firm_today(settings):
        raise Invalid(f"access_person_since {since.isoformat()} is in the future: the day they became one is "
                      "today or earlier", field="access_person_since")
    if flag and employee.status != "active":
        raise Conflict("an offboarded employee cannot become an access person")
    if flag:
        corrected = employee.access_person and since is not None and since != employee.access_person_since
        if not employee.access_person or corrected:
            employee.access_person = True
            employee.access_person_since = since or employee.access_person_since or firm_today(settings)
            session.flush()
        if corrected:
            _move_initial_task(session, settings, employee)
        return AccessChange(ensure_initial_tasks(session, settings, [employee.id]), 0)
    if employee.access_person:
        employee.access_person = False
        employee.access_person_since = None
        session.flush()
        return AccessChange([], close_outstanding(session, employee.id, "no_longer_access_person"))
    return AccessChange([], 0)


def _move_initial_task(session: Session, settings: Settings, employee: Employee) -> None:
    """A corrected since-date moves the automatic initial-holdings task that nothing was submitted for yet: the
    holdings as of the new day, due the configured days after it (its reminders start again). A task already
    submitted, returned or closed keeps what it was answered or closed against."""
    since = employee.access_person_since
    assert since is not None
    for task in session.execute(select(AttestationTask).join(
            AttestationCampaign, AttestationCampaign.id == AttestationTask.campaign_id).where(
            AttestationTask.employee_id == employee.id, AttestationTask.status == "open",
            AttestationTask.first_submitted_at.is_(None), AttestationCampaign.kind == "initial_holdings",
            AttestationCampaign.created_label == AUTOMATIC)).scalars():
        task.as_of, task.due = since, periods.initial_due(settings, since)
        task.reminded_before_at = task.reminded_after_at = None
    session.flush()


def close_outstanding(session: Session, employee_id: int, reason: str) -> int:
    """Close (never delete) an employee's open or returned tasks: offboarded | no_longer_access_person. A
    closed task is off the late list; what was already submitted stays as it is."""
    now = utcnow()
    tasks = list(session.execute(select(AttestationTask).where(
        AttestationTask.employee_id == employee_id, AttestationTask.status.in_(OUTSTANDING))).scalars())
    for task in tasks:
        task.status, task.closed_reason, task.closed_at = "closed", reason, now
    session.flush()
    return len(tasks)


# -- reading ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Progress:
    campaign: AttestationCampaign
    total: int
    by_status: dict[str, int]


def get(session: Session, campaign_id: int) -> AttestationCampaign:
    campaign = session.get(AttestationCampaign, campaign_id)
    if campaign is None:
        raise NotFound("not found")
    return campaign


def tasks_of(session: Session, campaign_id: int) -> list[tuple[AttestationTask, Employee]]:
    return [(t, e) for t, e in session.execute(select(AttestationTask, Employee).join(
        Employee, Employee.id == AttestationTask.employee_id).where(AttestationTask.campaign_id == campaign_id)
        .order_by(Employee.name, AttestationTask.id)).all()]


def listing(session: Session, *, limit: int = 200) -> list[Progress]:
    campaigns = list(session.execute(select(AttestationCampaign).order_by(AttestationCampaign.id.desc()).limit(
        limit)).scalars())
    if not campaigns:
        return []
    counts: dict[int, Counter[str]] = {c.id: Counter() for c in campaigns}
    on = today()
    for task in session.execute(select(AttestationTask).where(
            AttestationTask.campaign_id.in_(list(counts)))).scalars():
        counts[task.campaign_id][status_of(task, on)] += 1
    return [Progress(c, sum(counts[c.id].values()), dict(counts[c.id])) for c in campaigns]


def progress(session: Session, campaign: AttestationCampaign) -> Progress:
    counter: Counter[str] = Counter()
    on = today()
    for task in session.execute(select(AttestationTask).where(AttestationTask.campaign_id == campaign.id)).scalars():
        counter[status_of(task, on)] += 1
    return Progress(campaign, sum(counter.values()), dict(counter))


# -- the code of ethics -----------------------------------------------------------------------------------

def latest_code(session: Session) -> CodeVersion | None:
    return session.execute(select(CodeVersion).order_by(CodeVersion.version.desc())).scalars().first()


def code_versions(session: Session) -> list[CodeVersion]:
    return list(session.execute(select(CodeVersion).order_by(CodeVersion.version.desc())).scalars())


def code_version(session: Session, version_id: int) -> CodeVersion:
    row = session.get(CodeVersion, version_id)
    if row is None:
        raise NotFound("not found")
    return row


def _media_type(content: bytes, filename: str) -> str:
    if content.startswith(b"%PDF-"):
        return "application/pdf"
    if filename.lower().endswith(".pdf"):
        raise Invalid("the file is named .pdf but is not a PDF (it does not start with %PDF-)", field="file")
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("the code of ethics is a PDF or UTF-8 text", field="file") from None
    if has_control_characters(text.replace("\n", "").replace("\r", "").replace("\t", "").replace("\f", "")):
        raise Invalid(f"the text {CONTROL_MESSAGE}", field="file")
    return "text/plain"


def upload_code(session: Session, settings: Settings, actor: Actor | None, *, title: Any, content: bytes,
                filename: str = "", due: dt.date | None = None) -> tuple[CodeVersion, AttestationCampaign]:
    """Store a new version of the code (text or PDF, with its SHA-256) and start its acknowledgement
    campaign: every access person acknowledges it."""
    if not isinstance(title, str) or not title.strip() or len(title.strip()) > 200 or has_control_characters(title):
        raise Invalid("title is required (up to 200 characters)", field="title")
    if not content:
        raise Invalid("the file is empty", field="file")
    if len(content) > MAX_CODE_BYTES:
        raise Invalid(f"the file is larger than {MAX_CODE_BYTES // (1024 * 1024)} MiB", field="file")
    media_type = _media_type(content, filename)
    digest = hashlib.sha256(content).hexdigest()
    latest = latest_code(session)
    if latest is not None and latest.sha256 == digest:
        raise Conflict(f"this file is already version {latest.version}")
    number = (session.execute(select(func.max(CodeVersion.version))).scalar_one() or 0) + 1
    version = CodeVersion(version=number, title=" ".join(title.split()), filename=(filename or "")[-200:],
                          media_type=media_type, content=content, sha256=digest, size=len(content),
                          uploaded_by=actor.user_id if actor is not None else None, uploaded_label=_actor_label(actor))
    session.add(version)
    session.flush()
    campaign = create(session, settings, actor, kind="code_acknowledgement", period=None, due=due)
    return version, campaign
