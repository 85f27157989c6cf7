"""Where roster records come from: the LDAP directory, an HR export file (CSV or JSON), the CSV import.

A file's structure is checked before any record is read (a header naming name and email, or a JSON list of
objects): a broken file is refused whole, with the reason; a bad value only rejects its own record.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.errors import Invalid
from appliance.services.employees import MAX_CSV_BYTES, decode_csv
from appliance.services.roster.plan import RosterRecord
from appliance.settings import Settings

if TYPE_CHECKING:  # ldap3 is imported only where the directory is used
    from appliance.auth.directory.ldap import LdapDirectory

# Column / key spellings HR systems and spreadsheets use, mapped to ours.
ALIASES = {"e_mail": "email", "mail": "email", "externalid": "employee_number", "external_id": "employee_number",
           "employee_id": "employee_number", "employeeid": "employee_number", "number": "employee_number",
           "manager": "manager_email", "manager_e_mail": "manager_email", "access": "access_person",
           "dept": "department"}
COLUMNS = ("name", "email", "department", "employee_number", "manager_email", "access_person")
TRUE = {"yes", "y", "true", "1", "x"}
FALSE = {"no", "n", "false", "0", ""}


def _key(cell: str) -> str:
    name = "_".join(str(cell).strip().lower().replace("-", " ").split())
    return ALIASES.get(name, name)


def _flag(value: object, where: str) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise Invalid(f"access_person must be yes or no, got {str(value)[:40]!r}")


def _record(values: dict[str, object], where: str, *, has_access: bool) -> RosterRecord:
    def text(name: str) -> str:
        value = values.get(name)
        return "" if value is None else str(value)

    try:
        access = _flag(values.get("access_person"), where) if has_access else None
    except Invalid as exc:
        return RosterRecord(text("name"), text("email"), where=where, problem=exc.message)
    return RosterRecord(name=text("name"), email=text("email"), department=text("department"),
                        employee_number=text("employee_number") or None, manager_email=text("manager_email"),
                        access_person=access, where=where)


def records_from_csv(data: bytes) -> list[RosterRecord]:
    text = decode_csv(data)
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    try:
        rows = [(reader.line_num, cells) for cells in reader]
    except csv.Error as exc:
        raise Invalid(f"unreadable CSV at line {reader.line_num} ({exc})"[:200]) from None
    if not rows:
        raise Invalid("the file is empty (line 1 must name the columns name, email, ...)")
    header = [_key(h) for h in rows[0][1]]
    missing = [c for c in ("name", "email") if c not in header]
    if missing:
        raise Invalid(f"line 1: the header must name the columns name and email (missing: {', '.join(missing)})")
    unknown = [h for h in header if h and h not in COLUMNS]
    if unknown:
        raise Invalid(f"line 1: unknown column(s) {', '.join(unknown)} (known: {', '.join(COLUMNS)})")
    repeated = sorted({h for h in header if h and header.count(h) > 1})
    if repeated:
        raise Invalid(f"line 1: column(s) {', '.join(repeated)} appear more than once")
    out = []
    for line, cells in rows[1:]:
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > len(header) and any(c.strip() for c in cells[len(header):]):
            out.append(RosterRecord("", "", where=f"line {line}", problem=f"more fields ({len(cells)}) than the "
                                    f"header ({len(header)})"))
            continue
        if any(c.strip() for h, c in zip(header, cells, strict=False) if not h):
            out.append(RosterRecord("", "", where=f"line {line}", problem="a value in a column without a header"))
            continue
        out.append(_record(dict(zip(header, cells, strict=False)), f"line {line}",
                           has_access="access_person" in header))
    return out


def records_from_json(data: bytes) -> list[RosterRecord]:
    if len(data) > MAX_CSV_BYTES:
        raise Invalid(f"the file is larger than {MAX_CSV_BYTES // (1024 * 1024)} MiB")
    try:
        items = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Invalid(f"not JSON ({type(exc).__name__})") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise Invalid("a JSON roster is a list of objects (name, email, department, employee_number, manager, "
                      "access_person)")
    out = []
    for index, item in enumerate(items, 1):
        values = {_key(k): v for k, v in item.items()}
        unknown = sorted(k for k in values if k not in COLUMNS)
        if unknown:
            out.append(RosterRecord(str(values.get("name") or ""), str(values.get("email") or ""),
                                    where=f"entry {index}", problem=f"unknown key(s) {', '.join(unknown)}"))
            continue
        out.append(_record(values, f"entry {index}", has_access="access_person" in values))
    return out


def records_from_file(path: Path) -> list[RosterRecord]:
    data = path.read_bytes()
    if path.suffix.lower() == ".json":
        return records_from_json(data)
    if path.suffix.lower() == ".csv":
        return records_from_csv(data)
    raise Invalid(f"{path.name}: a roster file ends in .csv or .json")


def newest_drop(settings: Settings) -> Path | None:
    """The newest roster file waiting in roster.files.directory (None when there is none)."""
    if not settings.roster.files.directory:
        return None
    folder = Path(settings.roster.files.directory)
    if not folder.is_dir():
        raise Invalid(f"roster.files.directory {folder} does not exist or is not a directory")
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".csv", ".json")]
    return max(files, key=lambda p: (p.stat().st_mtime, p.name)) if files else None


def records_from_ldap(directory: LdapDirectory, settings: Settings) -> list[RosterRecord]:
    return [RosterRecord(name=e.name, email=e.email, department=e.department, employee_number=e.employee_number or None,
                         manager_email=e.manager_email, access_person=e.access_person, where=e.dn)
            for e in directory.roster(settings.roster.ldap)]


__all__ = ["newest_drop", "records_from_csv", "records_from_file", "records_from_json", "records_from_ldap"]
