"""Monitored employees: create, edit, offboard, import from CSV, list with connection health."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from appliance.errors import Conflict, Invalid, NotFound
from appliance.services.text import CONTROL_MESSAGE, has_control_characters
from appliance.store.base import utcnow
from appliance.store.models import Connection, Employee

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,63}$")
RED_STATUSES = frozenset({"broken", "reonboarding_required"})
CSV_COLUMNS = ("name", "email", "department", "external_id")


class EmployeeFields(Protocol):
    """What a list shows of an employee: the model, or its columns read as a plain row (the employees list)."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def email(self) -> str: ...
    @property
    def department(self) -> str: ...
    @property
    def external_id(self) -> str | None: ...
    @property
    def status(self) -> str: ...
    @property
    def created_at(self) -> dt.datetime: ...
    @property
    def offboarded_at(self) -> dt.datetime | None: ...
    @property
    def access_person(self) -> bool: ...
    @property
    def access_person_since(self) -> dt.date | None: ...


@dataclass(frozen=True)
class EmployeeRow:
    employee: EmployeeFields
    connections: int
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def red(self) -> bool:
        return any(self.statuses.get(s) for s in RED_STATUSES)


def clean_fields(name: str, email: str, department: str, external_id: str | None
                 ) -> tuple[str, str, str, str | None]:
    for key, label, value in (("name", "name", name), ("email", "e-mail", email),
                              ("department", "department", department),
                              ("external_id", "external id", external_id or "")):
        if has_control_characters(value):
            raise Invalid(f"the {label} {CONTROL_MESSAGE}", field=key)
    name = " ".join(name.split())
    email = email.strip().lower()
    department = " ".join(department.split())
    external = (external_id or "").strip() or None
    if not 1 <= len(name) <= 200:
        raise Invalid("the name is required (up to 200 characters)", field="name")
    if not EMAIL.match(email) or len(email) > 254:
        raise Invalid(f"{email!r} is not an e-mail address", field="email")
    if len(department) > 200:
        raise Invalid("the department is at most 200 characters", field="department")
    if external is not None and len(external) > 100:
        raise Invalid("the external id is at most 100 characters", field="external_id")
    return name, email, department, external


def _check_unique(session: Session, email: str, external_id: str | None, exclude: int | None = None) -> None:
    stmt = select(Employee.id).where(Employee.email == email)
    if exclude is not None:
        stmt = stmt.where(Employee.id != exclude)
    if session.execute(stmt).first():
        raise Conflict(f"an employee with e-mail {email} already exists")
    if external_id:
        stmt = select(Employee.id).where(Employee.external_id == external_id)
        if exclude is not None:
            stmt = stmt.where(Employee.id != exclude)
        if session.execute(stmt).first():
            raise Conflict(f"an employee with external id {external_id} already exists")


def create(session: Session, *, name: str, email: str, department: str = "", external_id: str | None = None
           ) -> Employee:
    name, email, department, external = clean_fields(name, email, department, external_id)
    _check_unique(session, email, external)
    employee = Employee(name=name, email=email, department=department, external_id=external)
    session.add(employee)
    session.flush()
    return employee


def get(session: Session, employee_id: int) -> Employee:
    employee = session.get(Employee, employee_id)
    if employee is None:
        raise NotFound("not found")
    return employee


def update_details(session: Session, employee_id: int, *, name: str, email: str, department: str,
                   external_id: str | None) -> Employee:
    employee = get(session, employee_id)
    name, email, department, external = clean_fields(name, email, department, external_id)
    _check_unique(session, email, external, exclude=employee.id)
    employee.name, employee.email, employee.department, employee.external_id = name, email, department, external
    session.flush()
    return employee


def offboard(session: Session, employee_id: int) -> Employee:
    """Stop polling; keep every record (retention); close the employee's outstanding attestation tasks
    (closed, reason offboarded: kept, and off the late list). Every path (roster, CLI, API, UI) comes here."""
    from appliance.services.attestations.campaigns import close_outstanding

    employee = get(session, employee_id)
    if employee.status == "offboarded":
        return employee
    employee.status = "offboarded"
    employee.offboarded_at = utcnow()
    session.execute(update(Connection).where(Connection.employee_id == employee.id).values(
        status="offboarded", status_reason="employee offboarded", next_poll_at=None))
    session.flush()
    close_outstanding(session, employee.id, "offboarded")
    return employee


def list_rows(session: Session, *, include_offboarded: bool = True, employee_ids: Iterable[int] | None = None
              ) -> list[EmployeeRow]:
    stmt = select(Employee).order_by(Employee.name, Employee.id)
    if not include_offboarded:
        stmt = stmt.where(Employee.status != "offboarded")
    if employee_ids is not None:
        stmt = stmt.where(Employee.id.in_(list(employee_ids)))
    employees = list(session.execute(stmt).scalars())
    counts: dict[int, dict[str, int]] = {}
    status_rows = session.execute(
        select(Connection.employee_id, Connection.status, func.count()).group_by(Connection.employee_id,
                                                                                 Connection.status))
    for employee_id, status, count in status_rows:
        counts.setdefault(employee_id, {})[status] = count
    return [EmployeeRow(e, sum(counts.get(e.id, {}).values()), counts.get(e.id, {})) for e in employees]


@dataclass(frozen=True)
class ImportError_:
    line: int
    message: str


# Header spellings people (and spreadsheets) use for our columns.
HEADER_ALIASES = {"e_mail": "email", "mail": "email", "externalid": "external_id"}
MAX_CSV_BYTES = 10 * 1024 * 1024


def decode_csv(data: bytes) -> str:
    """UTF-8 text (a BOM is fine); anything else is refused naming the first bad line."""
    if len(data) > MAX_CSV_BYTES:
        raise Invalid(f"nothing was imported: the file is larger than {MAX_CSV_BYTES // (1024 * 1024)} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise Invalid(f"nothing was imported: line {line} is not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                      "save the file as \"CSV UTF-8\"") from None


def _header_name(cell: str) -> str:
    name = "_".join(cell.strip().lower().replace("-", " ").split())
    return HEADER_ALIASES.get(name, name)


def _read_rows(text: str) -> tuple[list[tuple[int, list[str]]], ImportError_ | None]:
    """(line number where each record ends, its cells), stopping at the first malformed record."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    rows: list[tuple[int, list[str]]] = []
    try:
        for cells in reader:
            rows.append((reader.line_num, cells))
    except csv.Error as exc:
        # e.g. a field over the csv module's size limit: everything after it is unreliable.
        return rows, ImportError_(reader.line_num, f"unreadable CSV ({exc})"[:200])
    return rows, None


def import_csv(session: Session, text: str | bytes) -> list[Employee]:
    """All rows or none. Raises Invalid listing every bad row with its line number.

    Header names are matched case-insensitively with spaces or hyphens for underscores
    ("External ID", "E-mail"); columns without a header (a spreadsheet's trailing commas) are
    ignored while they are empty.
    """
    if isinstance(text, bytes):
        text = decode_csv(text)
    rows, broken = _read_rows(text)
    if not rows:
        raise Invalid("nothing was imported: the file is empty (line 1 must name the columns "
                      f"{', '.join(CSV_COLUMNS)})")
    header = [_header_name(h) for h in rows[0][1]]
    missing = [c for c in ("name", "email") if c not in header]
    if missing:
        raise Invalid(f"line 1: the header must name the columns {', '.join(CSV_COLUMNS)} "
                      f"(missing: {', '.join(missing)})")
    unknown = [h for h in header if h and h not in CSV_COLUMNS]
    if unknown:
        raise Invalid(f"line 1: unknown column(s) {', '.join(unknown)} (known: {', '.join(CSV_COLUMNS)})")
    repeated = sorted({h for h in header if h and header.count(h) > 1})
    if repeated:
        raise Invalid(f"line 1: column(s) {', '.join(repeated)} appear more than once")
    problems: list[ImportError_] = []
    cleaned: list[tuple[int, tuple[str, str, str, str | None]]] = []
    seen_emails: dict[str, int] = {}
    seen_external: dict[str, int] = {}
    for line, cells in rows[1:]:
        if not cells or not any(c.strip() for c in cells):
            continue  # blank line
        if len(cells) > len(header):
            problems.append(ImportError_(line, f"too many fields ({len(cells)}; the header has {len(header)})"))
            continue
        if any(c.strip() for h, c in zip(header, cells, strict=False) if not h):
            problems.append(ImportError_(line, "a value in a column without a header"))
            continue
        row = dict(zip(header, cells, strict=False))
        try:
            values = clean_fields(row.get("name") or "", row.get("email") or "", row.get("department") or "",
                            row.get("external_id"))
        except Invalid as exc:
            problems.append(ImportError_(line, exc.message))
            continue
        email, external = values[1], values[3]
        if email in seen_emails:
            problems.append(ImportError_(line, f"e-mail {email} repeats line {seen_emails[email]}"))
            continue
        if external and external in seen_external:
            problems.append(ImportError_(line, f"external id {external} repeats line {seen_external[external]}"))
            continue
        seen_emails[email] = line
        if external:
            seen_external[external] = line
        try:
            _check_unique(session, email, external)
        except Conflict as exc:
            problems.append(ImportError_(line, exc.message))
            continue
        cleaned.append((line, values))
    if broken is not None:
        problems.append(broken)
    if problems:
        listing = "; ".join(f"line {p.line}: {p.message}" for p in problems[:50])
        more = f" (and {len(problems) - 50} more)" if len(problems) > 50 else ""
        raise Invalid(f"nothing was imported: {len(problems)} bad row(s): {listing}{more}",
                      detail={"errors": [{"line": p.line, "message": p.message} for p in problems]})
    if not cleaned:
        raise Invalid("nothing was imported: the file has no rows")
    employees = []
    for _line, (name, email, department, external) in cleaned:
        employee = Employee(name=name, email=email, department=department, external_id=external)
        session.add(employee)
        employees.append(employee)
    session.flush()
    return employees
