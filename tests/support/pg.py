"""A throwaway PostgreSQL cluster for the test session, from the machine's own binaries.

As root, initdb refuses to run, so the cluster is created and started as the ``postgres``
user (or ``nobody``) through subprocess's ``user=``. VIGATRA_TEST_POSTGRES_URL, when set,
points at an existing server instead (a superuser URL; databases are created per test).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_pg_bin() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


class PostgresCluster:
    def __init__(self, admin_url: str, *, data_dir: Path | None = None, bin_dir: Path | None = None,
                 run_as: str | None = None, owned_base: Path | None = None) -> None:
        self.admin_url = admin_url
        self.owned_base = owned_base
        self.data_dir = data_dir
        self.bin_dir = bin_dir
        self.run_as = run_as
        self._names = itertools.count()
        self._template_ready = False
        self.engine = create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_size=2)

    def url_for(self, database: str) -> str:
        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    def _create(self, name: str, template: str | None = None) -> None:
        with self.engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            tpl = f' TEMPLATE "{template}"' if template else ""
            conn.execute(text(f'CREATE DATABASE "{name}"{tpl}'))

    def _ensure_template(self) -> None:
        if self._template_ready:
            return
        from appliance.store.migrate import upgrade
        from appliance.store.session import make_engine

        name = f"vigatra_tpl_{os.getpid()}"
        self._create(name)
        engine = make_engine(self.url_for(name))
        upgrade(engine)
        engine.dispose()
        self._template = name
        self._template_ready = True

    def fresh_database(self, *, migrated: bool) -> str:
        name = f"vigatra_t{os.getpid()}_{next(self._names)}"
        if migrated:
            self._ensure_template()
            self._create(name, self._template)
        else:
            self._create(name)
        return self.url_for(name)

    def run_sql(self, sql: str, database: str | None = None) -> None:
        url = self.url_for(database) if database else self.admin_url
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(sql))
        finally:
            engine.dispose()

    def pg_ctl(self, *args: str) -> None:
        assert self.bin_dir is not None and self.data_dir is not None, "not a cluster started by the tests"
        subprocess.run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args],
                       check=True, capture_output=True, user=self.run_as, timeout=120)

    def restart(self) -> None:
        self.pg_ctl("-m", "immediate", "-w", "restart")

    def stop(self) -> None:
        self.engine.dispose()
        if self.data_dir is not None:
            with contextlib.suppress(subprocess.CalledProcessError):
                self.pg_ctl("-m", "immediate", "-w", "stop")
        if self.owned_base is not None:
            shutil.rmtree(self.owned_base, ignore_errors=True)


def start_cluster(base: Path) -> tuple[PostgresCluster | None, str]:
    """Start a cluster (or connect to VIGATRA_TEST_POSTGRES_URL). Returns (cluster, why-not)."""
    external = os.environ.get("VIGATRA_TEST_POSTGRES_URL")
    if external:
        url = external.replace("postgresql://", "postgresql+psycopg://", 1)
        return PostgresCluster(url), ""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        return None, "no /usr/lib/postgresql/*/bin/initdb (install postgresql, or set VIGATRA_TEST_POSTGRES_URL)"
    run_as: str | None = None
    if os.geteuid() == 0:
        for candidate in ("postgres", "nobody"):
            try:
                pwd.getpwnam(candidate)
                run_as = candidate
                break
            except KeyError:
                continue
        if run_as is None:
            return None, "running as root and no unprivileged user (postgres/nobody) to run initdb as"
    if run_as:
        # A directory of its own under /tmp, owned by the cluster's user: nothing in its path belongs to another
        # test run (pytest resets its shared temp root to 0700 at each session start, which cut a neighbouring
        # run's cluster off from its own files). Removed when the cluster stops.
        user = pwd.getpwnam(run_as)
        base = Path(tempfile.mkdtemp(prefix="vigatra-pg-", dir="/tmp"))
        os.chmod(base, 0o700)
        shutil.chown(base, user.pw_uid, user.pw_gid)
    data_dir = base / "data"
    sock_dir = base / "sock"
    for d in (base, sock_dir):
        d.mkdir(parents=True, exist_ok=True)
    if run_as:
        shutil.chown(sock_dir, user.pw_uid, user.pw_gid)
    port = _free_port()
    try:
        subprocess.run([str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "vigatra", "--auth=trust",
                        "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
                       check=True, capture_output=True, user=run_as, timeout=120)
        opts = (f"-p {port} -k {sock_dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off "
                "-c synchronous_commit=off -c max_connections=200 -c shared_buffers=64MB")
        subprocess.run([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-l", str(base / "server.log"),
                        "-o", opts, "-w", "-t", "60", "start"],
                       check=True, capture_output=True, user=run_as, timeout=120)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        return None, f"could not start PostgreSQL: {exc} {detail.decode(errors='replace')[-500:]}"
    url = f"postgresql+psycopg://vigatra@127.0.0.1:{port}/postgres"
    return PostgresCluster(url, data_dir=data_dir, bin_dir=bin_dir, run_as=run_as,
                           owned_base=base if run_as else None), ""
