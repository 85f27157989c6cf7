"""Running the real `vigatra` command in subprocesses (serve, CLI) against a test config."""

from __future__ import annotations

import base64
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

VIGATRA = [sys.executable, "-m", "appliance.cli.main"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Installed:
    config: Path
    admin_password: str
    env: dict[str, str]

    def run(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*VIGATRA, "--config", str(self.config), *args], input=input, env=self.env,
                                capture_output=True, text=True, timeout=120, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"vigatra {' '.join(args)} failed: {result.stderr}{result.stdout}")
        return result


def install(tmp: Path, db_url: str, *, extra_env: dict[str, str] | None = None) -> Installed:
    """`vigatra init` into tmp/data with an env-provided KEK; returns the config and admin password."""
    env = dict(os.environ)
    kek_var = f"VIGATRA_TEST_KEK_{secrets.token_hex(3).upper()}"
    env[kek_var] = base64.b64encode(secrets.token_bytes(32)).decode()
    env["VIGATRA_AUTH_ARGON2_MEMORY_KIB"] = "19456"
    env["VIGATRA_AUTH_ARGON2_TIME_COST"] = "2"
    env["VIGATRA_AUTH_ARGON2_PARALLELISM"] = "1"
    env.update(extra_env or {})
    result = subprocess.run([*VIGATRA, "init", "--data-dir", str(tmp / "data"), "--database-url", db_url,
                             "--key-provider", "env", "--key-env", kek_var], env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr + result.stdout
    password = re.search(r"^admin password: (\S+)$", result.stdout, re.M)
    assert password, result.stdout
    return Installed(tmp / "data" / "vigatra.yaml", password.group(1), env)


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise
        return int(self.process.returncode)


def serve(installed: Installed, *, port: int | None = None, extra_env: dict[str, str] | None = None) -> Server:
    port = port or free_port()
    env = {**installed.env, **(extra_env or {})}
    process = subprocess.Popen([*VIGATRA, "--config", str(installed.config), "serve", "--port", str(port)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        if process.poll() is not None:
            detail = process.stderr.read() if process.stderr else ""
            raise AssertionError(f"serve exited {process.returncode}: {detail}")
        try:
            if requests.get(f"{url}/healthz", timeout=1).status_code in (200, 503):
                return Server(process, url)
        except requests.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("serve did not come up in 60 s")


# Requests from the test act as the TLS front on loopback (a trusted proxy by default).
TLS = {"X-Forwarded-Proto": "https"}
