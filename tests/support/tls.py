"""A real nginx TLS front on loopback, with a certificate made by the test, in front of the app."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.proc import free_port


def find_nginx() -> str | None:
    for candidate in ("/usr/sbin/nginx", "/usr/bin/nginx"):
        if os.path.exists(candidate):
            return candidate
    return shutil.which("nginx")


@dataclass
class Certificate:
    cert_path: Path
    key_path: Path
    spki_sha256_b64: str  # for Chromium's --ignore-certificate-errors-spki-list


def make_certificate(directory: Path) -> Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return Certificate(cert_path, key_path, base64.b64encode(hashlib.sha256(spki).digest()).decode())


@dataclass
class TlsFront:
    url: str
    process: subprocess.Popen[bytes]
    certificate: Certificate

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_nginx(directory: Path, upstream: str) -> TlsFront:
    nginx = find_nginx()
    assert nginx is not None, "nginx is missing: `make test` installs Debian's nginx package"
    directory.mkdir(parents=True, exist_ok=True)
    certificate = make_certificate(directory)
    port = free_port()
    for sub in ("logs", "tmp"):
        (directory / sub).mkdir(exist_ok=True)
    user = "user root root;" if os.geteuid() == 0 else ""
    conf = directory / "nginx.conf"
    conf.write_text(f"""
{user}
worker_processes 1;
error_log {directory}/logs/error.log warn;
pid {directory}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {directory}/tmp/body;
    proxy_temp_path {directory}/tmp/proxy;
    fastcgi_temp_path {directory}/tmp/fastcgi;
    uwsgi_temp_path {directory}/tmp/uwsgi;
    scgi_temp_path {directory}/tmp/scgi;
    server_tokens off;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {certificate.cert_path};
        ssl_certificate_key {certificate.key_path};
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            proxy_pass {upstream};
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto https;
        }}
    }}
}}
""")
    process = subprocess.Popen([nginx, "-c", str(conf), "-p", str(directory), "-g", "daemon off;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 20
    import socket

    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"nginx exited: {process.stderr.read().decode() if process.stderr else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return TlsFront(f"https://127.0.0.1:{port}", process, certificate)
        time.sleep(0.05)
    process.kill()
    raise AssertionError("nginx did not start")
