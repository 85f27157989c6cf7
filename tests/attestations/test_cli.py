"""`vigatra employee add ... --access-person [--access-person-since YYYY-MM-DD]`: the flag, the date, the initial
holdings task; a bad date or a date without the flag is refused and adds no one."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from appliance.store.models import AttestationTask, Employee
from tests.onboarding.conftest import cli_config, ota, run_cli  # noqa: F401  (fixtures)


def test_employee_add_access_person(ota: Any, cli_config: Path) -> None:  # noqa: F811
    result = run_cli(cli_config, "employee", "add", "--name", "Ada Lovelace", "--email", "ada@example.com",
                     "--access-person", "--access-person-since", "2026-09-01")
    assert result.exit_code == 0, result.output
    match = re.fullmatch(r"employee id: (\d+)\n", result.output)
    assert match, result.output
    with ota.store.read() as session:
        person = session.get(Employee, int(match.group(1)))
        assert person is not None and person.access_person and person.access_person_since == dt.date(2026, 9, 1)
        task = session.execute(select(AttestationTask).where(AttestationTask.employee_id == person.id)).scalar_one()
        assert task.due == dt.date(2026, 9, 11) and task.as_of == dt.date(2026, 9, 1)
    for args, words in ((["--access-person", "--access-person-since", "2026-02-30"], "YYYY-MM-DD"),
                        (["--access-person-since", "2026-09-01"], "only for an access person")):
        refused = run_cli(cli_config, "employee", "add", "--name", "Bob", "--email", "bob@example.com", *args)
        assert refused.exit_code == 1 and words in refused.output, refused.output
    with ota.store.read() as session:
        assert session.execute(select(func.count()).select_from(Employee)).scalar_one() == 1
