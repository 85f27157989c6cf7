"""The process: the Flask app on waitress and the APScheduler scheduler, in one process.

Boot in three steps, side effects last: settings are loaded (by the caller), the Appliance opens
(key provider, data keys, auth state) and the app is built, then threads start and the server
binds.

SIGTERM and SIGINT stop the process within ``server.shutdown_timeout_seconds`` (systemd's
TimeoutStopSec leaves 10 s more before SIGKILL): the server takes no new requests and the poller
claims no more connections at once; in-flight requests and syncs may finish, and syncs still running
after half the timeout stop at their next commit (every write is one transaction, so nothing is ever
half-written; what a sync stored stays and the rest resumes on the next poll); this node's leases are
given back. A venue call still hanging at the deadline is abandoned with a warning (its lease expires
after ``poller.lease_seconds``) rather than overrun the timeout.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from appliance.errors import ConfigError
from appliance.services.context import Appliance
from appliance.settings import Settings
from appliance.store.serve_lock import hold_for_serving

log = logging.getLogger(__name__)


# Of server.shutdown_timeout_seconds, the part (at most a quarter) kept for the steps after in-flight
# work: the audit tail's checkpoint, closing the store, leaving the interpreter.
_EXIT_RESERVE_SECONDS = 5.0


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
    timeout = settings.server.shutdown_timeout_seconds
    stopping = appliance.stopping
    previous = _install_signals(lambda: stopping.begin(grace_seconds=timeout / 2))
    url = f"http://{host if ':' not in host else '[' + host + ']'}:{server.effective_port}"
    log.info("serving on %s (%d threads)", url, settings.server.threads)
    if on_ready is not None:
        on_ready(url)
    try:
        server.run()
    except (_Shutdown, KeyboardInterrupt):
        pass
    finally:
        stopping.begin(grace_seconds=timeout / 2)  # also when the server stopped for another reason
        _stop(server, scheduler, appliance, timeout, serving.release)
        _restore_signals(previous)
        log.info("stopped")


def _stop(server: Any, scheduler: Any, appliance: Appliance, timeout: float, release: Callable[[], None]) -> None:
    """Within ``timeout`` seconds: stop accepting, let in-flight requests finish, then wait for the poller
    (already winding down: ``appliance.stopping`` is set), sign the audit tail, then close the store and
    give up the serving lock.

    The timeout counts from the signal, not from here, and its last part is kept for what follows the
    wait (the tail's checkpoint, closing the store, the interpreter's exit), so a busy machine that is
    slow to get here still exits in time."""
    began = appliance.stopping.began_at or time.monotonic()
    deadline = began + timeout - min(_EXIT_RESERVE_SECONDS, timeout / 4)
    log.info("shutting down: taking no new requests or polls; waiting up to %.1fs for those in flight",
             max(deadline - time.monotonic(), 0.0))
    server.task_dispatcher.shutdown(cancel_pending=False, timeout=max(deadline - time.monotonic(), 0.1))
    server.close()
    # APScheduler waits for a running job without a limit, so the wait is bounded here.
    waiter = threading.Thread(target=scheduler.shutdown, kwargs={"wait": True}, name="scheduler-stop", daemon=True)
    waiter.start()
    waiter.join(max(deadline - time.monotonic(), 0.1))
    if waiter.is_alive():
        # Only a venue call that hangs past the deadline gets here (poller threads cannot be interrupted,
        # and the interpreter would wait for them at exit): leave without it, as SIGKILL would, but said.
        log.warning("shutting down: a sync is still waiting for a venue after %ds; exiting without it (its "
                    "lease expires after %ds)", timeout, appliance.settings.poller.lease_seconds)
        appliance.close()
        release()
        logging.shutdown()
        os._exit(1)
    _sign_the_tail(appliance)
    appliance.close()
    release()


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


def _install_signals(begin_stopping: Callable[[], None]) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    signalled: list[int] = []

    def shutdown(signum: int, _frame: Any) -> None:
        if signalled:  # a second signal while stopping: the first one's shutdown goes on, uninterrupted
            return
        signalled.append(signum)
        begin_stopping()  # the poller stops claiming now, while the server loop unwinds
        raise _Shutdown

    previous: dict[int, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, shutdown)
    return previous


def _restore_signals(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
