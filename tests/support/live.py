"""The real app on waitress on a loopback port, and a headless Chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import waitress.server

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--metrics-recording-only", "--no-default-browser-check",
]


@dataclass
class LiveServer:
    url: str
    server: Any
    thread: threading.Thread
    stopping: threading.Event

    def stop(self) -> None:
        # Closing the sockets under the loop's select() makes it fail with EBADF: expected once we stop.
        self.stopping.set()
        self.server.close()


def _serve(server: Any, stopping: threading.Event) -> None:
    try:
        server.run()
    except (OSError, ValueError):
        if not stopping.is_set():
            raise


def start_live(app: Any, host: str = "127.0.0.1", threads: int = 8) -> LiveServer:
    # Like `vigatra serve`: keep X-Forwarded-* so the app can judge them against its trusted proxies.
    server = waitress.server.create_server(app, host=host, port=0, threads=threads, ident="",
                                           clear_untrusted_proxy_headers=False)
    stopping = threading.Event()
    thread = threading.Thread(target=_serve, args=(server, stopping), name="live", daemon=True)
    thread.start()
    return LiveServer(f"http://{host}:{server.effective_port}", server, thread, stopping)


def find_chromium() -> str | None:
    for candidate in CHROMIUM_CANDIDATES:
        if os.path.exists(candidate):
            return candidate
    return shutil.which("chromium")


@contextmanager
def browser_page(ignore_https_errors: bool = False, args: Sequence[str] = ()) -> Iterator[Any]:
    """A fresh page in a fresh headless Chromium; ``args`` are extra Chromium switches (e.g.
    ``--ignore-certificate-errors-spki-list=...`` to trust a test certificate as a real secure context)."""
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    assert executable is not None, "Chromium is missing: `make test` installs Debian's chromium package"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=[*CHROMIUM_ARGS, *args], headless=True)
        context = browser.new_context(ignore_https_errors=ignore_https_errors)
        page = context.new_page()
        try:
            yield page
        finally:
            context.close()
            browser.close()
