"""The bundled TLS fronts, packaging/nginx/vigatra.conf and packaging/caddy/Caddyfile, run for real
on loopback ports in front of a stub app that echoes what reached it.

The policy under test (SECURITY.md, transport): on port 80 API calls, onboarding links and every
non-GET request reach the app (which refuses them and revokes a leaked API key) instead of being
redirected; only other GET/HEAD pages are redirected. On 443: one HSTS header, forwarded headers
overwritten (never trusted from the client), no compression, no version banner.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import socket
import ssl
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.packaging.tools import REPO, require_tool

NAME = "vigatra.example.com"
HSTS = "max-age=63072000; includeSubDomains"


class EchoApp(BaseHTTPRequestHandler):
    """Answers every request with what the proxy forwarded, plus its own HSTS the proxy must replace."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        seen = {"method": self.command, "path": self.path, "xff": self.headers.get("X-Forwarded-For"),
                "proto": self.headers.get("X-Forwarded-Proto")}
        body = json.dumps(seen).encode() + b" " * 4096  # compressible, to show nothing compresses it
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Strict-Transport-Security", "max-age=1")
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

    def log_message(self, *args: Any) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(NAME)]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "fullchain.pem", directory / "privkey.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def rewrite(text: str, replacements: list[tuple[str, str]]) -> str:
    for old, new in replacements:
        assert old in text, f"{old!r} not found: the test's rewrite no longer matches the shipped config"
        text = text.replace(old, new)
    return text


class Front:
    def __init__(self, http_port: int, https_port: int, cafile: Path) -> None:
        self.http_port, self.https_port, self.cafile = http_port, https_port, cafile

    def plain(self, method: str, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
        conn.request(method, path, body=b"secret=1" if method == "POST" else None,
                     headers={"Host": NAME, **(headers or {})})
        response = conn.getresponse()
        response.read()
        return response

    def tls(self, method: str, path: str, headers: dict[str, str] | None = None
              ) -> tuple[http.client.HTTPResponse, bytes, str]:
        context = ssl.create_default_context(cafile=str(self.cafile))
        conn = http.client.HTTPSConnection(NAME, self.https_port, timeout=10, context=context)
        # Reach the loopback port, but speak TLS with the real name (SNI and certificate check).
        raw = socket.create_connection(("127.0.0.1", self.https_port), timeout=10)
        tls = context.wrap_socket(raw, server_hostname=NAME)
        conn.sock = tls
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response, response.read(), str(tls.version())


def wait_for_port(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"proxy exited: {process.communicate()[1][-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


@pytest.fixture(scope="module")
def app_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoApp)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def nginx_config(directory: Path, app: int, http_port: int, https_port: int) -> Path:
    cert, key = self_signed(directory)
    site = rewrite((REPO / "packaging/nginx/vigatra.conf").read_text(), [
        ("listen 80;", f"listen 127.0.0.1:{http_port};"), ("listen [::]:80;", ""),
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;"), ("listen [::]:443 ssl http2;", ""),
        ("server 127.0.0.1:8080;", f"server 127.0.0.1:{app};"),
        ("/etc/ssl/vigatra/fullchain.pem", str(cert)), ("/etc/ssl/vigatra/privkey.pem", str(key))])
    (directory / "site.conf").write_text(site)
    temp = "".join(f"{kind}_temp_path {directory}/{kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    main = directory / "nginx.conf"
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the temp dirs under tmp_path
    main.write_text(f"{user}daemon off;\npid {directory}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
                    f"http {{\naccess_log off;\n{temp}include {directory}/site.conf;\n}}\n")
    return main


def caddy_config(directory: Path, app: int, http_port: int, https_port: int) -> Path:
    cert, key = self_signed(directory)
    text = rewrite((REPO / "packaging/caddy/Caddyfile").read_text(), [
        ("\tadmin off\n", "\tadmin off\n\tdefault_bind 127.0.0.1\n"),
        (f"\n{NAME} {{", f"\n{NAME}:{https_port} {{"), (f"http://{NAME} {{", f"http://{NAME}:{http_port} {{"),
        ("127.0.0.1:8080", f"127.0.0.1:{app}"),
        ("/etc/ssl/vigatra/fullchain.pem", str(cert)), ("/etc/ssl/vigatra/privkey.pem", str(key))])
    path = directory / "Caddyfile"
    path.write_text(text)
    return path


@pytest.fixture(scope="module", params=["nginx", "caddy"])
def front(request: pytest.FixtureRequest, app_port: int, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Front]:
    directory = tmp_path_factory.mktemp(request.param)
    http_port, https_port = free_port(), free_port()
    if request.param == "nginx":
        binary = require_tool("nginx", "nginx")
        config = nginx_config(directory, app_port, http_port, https_port)
        check = subprocess.run([binary, "-t", "-p", str(directory), "-c", str(config), "-e", "stderr"],
                               capture_output=True, text=True, timeout=60, check=False)
        assert check.returncode == 0, check.stderr
        command = [binary, "-p", str(directory), "-c", str(config), "-e", "stderr"]
        env = None
    else:
        binary = require_tool("caddy", "caddy")
        config = caddy_config(directory, app_port, http_port, https_port)
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(directory),
               "XDG_DATA_HOME": str(directory / "data"), "XDG_CONFIG_HOME": str(directory / "config")}
        check = subprocess.run([binary, "validate", "--config", str(config), "--adapter", "caddyfile"], env=env,
                               capture_output=True, text=True, timeout=60, check=False)
        assert check.returncode == 0, check.stderr[-2000:]
        command = [binary, "run", "--config", str(config), "--adapter", "caddyfile"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(http_port, process)
        wait_for_port(https_port, process)
        yield Front(http_port, https_port, directory / "fullchain.pem")
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def seen(response: http.client.HTTPResponse, body: bytes) -> dict[str, Any]:
    assert response.status == 200, (response.status, body[:200])
    result: dict[str, Any] = json.loads(body.decode().strip())
    return result


def test_plain_http_page_views_are_redirected(front: Front) -> None:
    response = front.plain("GET", "/alerts?page=2")
    assert response.status == 301
    assert response.getheader("Location") == f"https://{NAME}/alerts?page=2"


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/v1/employees"), ("POST", "/api/v1/auth/token"), ("DELETE", "/api/v1/users/3"),
    ("GET", "/onboard/a-token"), ("POST", "/onboard/a-token"), ("POST", "/login")])
def test_plain_http_credentials_reach_the_app_never_redirected(front: Front, method: str, path: str) -> None:
    """The app must see the key to refuse the request and revoke it; a redirect would hide the leak."""
    conn = http.client.HTTPConnection("127.0.0.1", front.http_port, timeout=10)
    conn.request(method, path, body=b"secret=1" if method == "POST" else None,
                 headers={"Host": NAME, "X-API-Key": "vgk_leaked", "X-Forwarded-Proto": "https"})
    response = conn.getresponse()
    forwarded = seen(response, response.read())
    assert (forwarded["method"], forwarded["path"]) == (method, path)
    # Marked as plain HTTP whatever the client claimed.
    assert forwarded["proto"] == "http"


def test_https_overwrites_forwarded_headers(front: Front) -> None:
    response, body, _version = front.tls("GET", "/", {"X-Forwarded-For": "203.0.113.9",
                                                        "X-Forwarded-Proto": "http"})
    forwarded = seen(response, body)
    assert forwarded["xff"] == "127.0.0.1"
    assert forwarded["proto"] == "https"


def test_https_headers_hsts_once_no_compression_no_banner(front: Front) -> None:
    response, body, version = front.tls("GET", "/login", {"Accept-Encoding": "gzip, br, deflate"})
    seen(response, body)
    assert version in ("TLSv1.2", "TLSv1.3")
    assert response.headers.get_all("Strict-Transport-Security") == [HSTS]
    assert response.getheader("Content-Encoding") is None
    server = response.getheader("Server") or ""
    assert not any(ch.isdigit() for ch in server), server


def test_tls_1_1_is_refused(front: Front) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with warnings.catch_warnings():  # deprecated: offering them is the point here
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot offer TLS 1.1 at all")
    with socket.create_connection(("127.0.0.1", front.https_port), timeout=10) as raw, \
            pytest.raises((ssl.SSLError, ConnectionResetError)):
        context.wrap_socket(raw, server_hostname=NAME)
