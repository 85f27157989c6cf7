"""The process: the Flask app on waitress and the APScheduler scheduler, in one process.

Boot in three steps, side effects last: settings are loaded (by the caller), the Appliance opens
(key provider, data keys, auth state) and the app is built, then threads start and the server
binds. SIGTERM and SIGINT stop the server from taking new requests, let in-flight requests and
jobs finish (every write is one transaction, so nothing is ever half-written), then exit.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from appliance.errors import ConfigError
from appliance.services.context import Appliance
from appliance.settings import Settings
from appliance.store.serve_lock import hold_for_serving

log = logging.getLogger(__name__)


class _Shutdown(SystemExit):
    """Raised by the SIGTERM/SIGINT handler. A SystemExit: waitress's loop handles a signal that lands
    inside a connection handler with a bare ``except:`` that re-raises only ExitNow, KeyboardInterrupt
    and SystemExit; anything else (even a BaseException) is logged and the process keeps serving."""


def check_bind(settings: Settings, host: str) -> None:
    """Refuse development shortcuts on an address other hosts can reach."""
    loopback = host == "localhost" or _is_loopback(host)
    if not loopback and settings.server.dev_allow_insecure_onboarding:
        raise ConfigError("server.dev_allow_insecure_onboarding is for a demo on localhost only; refusing to bind "
                          f"{host}")


def _is_loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(settings: Settings, *, host: str | None = None, port: int | None = None,
        on_ready: Callable[[str], None] | None = None, appliance: Appliance | None = None) -> None:
    from appliance.app import create_app
    from appliance.poller import build_scheduler
    from appliance.venues.chains import primitives

    host = host or settings.server.host
    port = port if port is not None else settings.server.port
    check_bind(settings, host)
    primitives.check()  # wallet hashes and curve: a broken install stops here, with one line
    appliance = appliance or Appliance(settings)
    serving = hold_for_serving(appliance.store.engine)  # a restore must not replace the database under us
    try:
        if not appliance.opened:
            appliance.open()
        app = create_app(appliance)
        server = create_server(app, settings, host, port)
    except BaseException:
        serving.release()
        raise
    scheduler = build_scheduler(appliance)
    appliance.start()
    scheduler.start()
    appliance.scheduler_state = lambda: "running" if scheduler.running else "stopped"  # type: ignore[attr-defined]
    previous = _install_signals()
    url = f"http://{host if ':' not in host else '[' + host + ']'}:{server.effective_port}"
    log.info("serving on %s (%d threads)", url, settings.server.threads)
    if on_ready is not None:
        on_ready(url)
    try:
        server.run()
    except (_Shutdown, KeyboardInterrupt):
        log.info("shutting down")
    finally:
        # Stop accepting, let in-flight requests finish (up to the configured grace), then the jobs.
        server.task_dispatcher.shutdown(cancel_pending=False, timeout=settings.server.shutdown_timeout_seconds)
        server.close()
        scheduler.shutdown(wait=True)
        _sign_the_tail(appliance)
        appliance.close()
        serving.release()
        _restore_signals(previous)
        log.info("stopped")


def _sign_the_tail(appliance: Appliance) -> None:
    """A clean shutdown leaves no audit event unsigned: after the last request and job, a checkpoint of
    whatever arrived since the newest one (nothing is written if nothing did)."""
    from appliance.audit.checkpoints import checkpoint_if_due

    try:
        if checkpoint_if_due(appliance, quiet_after=None, reason="shutdown") is not None:
            log.info("audit checkpoint signed at shutdown")
    except Exception as exc:  # noqa: BLE001 - the database may be gone; the next start's job signs the tail
        log.warning("no audit checkpoint at shutdown: %s", type(exc).__name__)


def create_server(app: Any, settings: Settings, host: str, port: int) -> Any:
    """The waitress server `vigatra serve` runs ``app`` on (bound, not yet serving)."""
    import waitress.server

    try:
        return waitress.server.create_server(
            app, host=host, port=port, threads=settings.server.threads, ident="", clear_untrusted_proxy_headers=False,
            channel_timeout=120, cleanup_interval=30)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _raise_shutdown(_signum: int, _frame: Any) -> None:
    raise _Shutdown


def _install_signals() -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous: dict[int, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, _raise_shutdown)
    return previous


def _restore_signals(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
