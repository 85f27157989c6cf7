"""A list of values as one statement parameter.

``column.in_(bindparam(name, expanding=True))`` is rendered again at every execution, with one placeholder
per value, and the driver then parses that new query text: for the lists a whole-history rules evaluation
sends (hundreds of employees, thousands of transaction ids per statement) that work cost more than the
statement's own execution (a profile of the evaluation's worker processes: ~12 % of their CPU). On
PostgreSQL the list is one array parameter instead (``column = ANY(:name)``): one query text, the values
sent as an array by the driver. SQLite has no arrays and keeps the expanding IN.

A statement that uses :func:`one_of` depends on the dialect: build it per dialect name (statements here
are built once and cached by their arguments).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session


def dialect_of(session: Session) -> str:
    return str(session.get_bind().dialect.name)


def one_of(column: Any, name: str, dialect: str) -> Any:
    """``column`` equals one of the values of the list parameter ``name``."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))
