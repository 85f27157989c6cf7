"""Shared CLI plumbing: settings from --config, one-line errors, the unit of work and the audit event
every state-changing command records (as the system actor ``cli:<os user>``).

Exit codes: 0 ok, 1 failure (one line on stderr, never a traceback unless --debug), 2 usage.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CliState:
    config: str | None
    debug: bool
    _settings: Any = None
    _appliance: Any = None

    def settings(self) -> Any:
        if self._settings is None:
            from appliance.settings import load_settings

            self._settings = load_settings(self.config)
        return self._settings

    def appliance(self, *, open_keys: bool = True) -> Any:
        if self._appliance is None:
            from appliance.services.context import Appliance

            app = Appliance(self.settings())
            if open_keys:
                app.open()
            self._appliance = app
        return self._appliance

    def close(self) -> None:
        if self._appliance is not None:
            self._appliance.close()
            self._appliance = None


def cli_state() -> CliState:
    found = click.get_current_context().find_object(CliState)
    assert found is not None, "the vigatra root command sets the CLI state"
    return found


def fail(message: str) -> None:
    click.echo(f"vigatra: {message}", err=True)
    raise SystemExit(1)


def handle_errors(fn: F) -> F:
    """Turn expected errors into one line and exit 1; --debug shows tracebacks."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from sqlalchemy.exc import OperationalError, SQLAlchemyError

        from appliance.errors import VigatraError
        from appliance.store.session import describe_db_error

        state = cli_state()
        try:
            return fn(*args, **kwargs)
        except (SystemExit, click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except VigatraError as exc:
            if state is not None and state.debug:
                raise
            fail(exc.message)
        except OperationalError as exc:
            if state is not None and state.debug:
                raise
            fail(f"database error: {describe_db_error(exc)}")
        except SQLAlchemyError as exc:
            if state is not None and state.debug:
                raise
            fail(f"database error: {describe_db_error(exc)}")
        except OSError as exc:
            if state is not None and state.debug:
                raise
            fail(f"{exc.strerror or exc}{': ' + str(exc.filename) if getattr(exc, 'filename', None) else ''}")
        except Exception as exc:
            if state is not None and state.debug:
                raise
            logging.getLogger("appliance.cli").error("unexpected error", exc_info=True)
            fail(f"unexpected error ({type(exc).__name__}); run again with --debug for details")
        finally:
            if state is not None:
                state.close()

    return wrapper  # type: ignore[return-value]


def cli_actor() -> Any:
    from appliance.rbac.actors import system_actor

    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = str(os.getuid())
    return system_actor(f"cli:{who}")


@contextlib.contextmanager
def audited(action: str, *, resource_type: str = "", resource_id: Any = "", detail: dict[str, Any] | None = None
            ) -> Iterator[tuple[Any, dict[str, Any]]]:
    """A unit of work that also appends the command's audit event in the same transaction.

    Yields (session, detail); the command may add to ``detail`` (secret-free) before it ends.
    """
    from appliance.audit.writer import AuditRecord, append

    app = cli_state().appliance()
    actor = cli_actor()
    info: dict[str, Any] = dict(detail or {})
    info.setdefault("resource_id", resource_id)
    with app.store.unit_of_work() as session:
        yield session, info
        rid = info.pop("resource_id", "")
        append(session, [AuditRecord(
            action=action, actor_type="system", resource_type=resource_type, resource_id=str(rid or ""),
            ip_address="local", method="CLI", path=" ".join(sys.argv[1:2]) or "vigatra",
            user_agent=actor.label, outcome="success", detail=json.dumps(info, sort_keys=True, default=str)
            if info else "")])


def echo_table(rows: list[list[Any]], headers: list[str]) -> None:
    widths = [len(h) for h in headers]
    text_rows = [[("" if v is None else str(v)) for v in row] for row in rows]
    for row in text_rows:
        widths = [max(w, len(v)) for w, v in zip(widths, row, strict=True)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in text_rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
