"""Two test runs on one machine must not break each other's PostgreSQL clusters.

Each run's pytest resets its shared temp root (``/tmp/pytest-of-<user>``) to mode 0700 when it starts; a
cluster whose files lived below that root, run as the unprivileged ``postgres`` user, lost access to its
own data the moment a neighbouring run began. Clusters now live in a directory of their own.
"""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.support.pg import PostgresCluster, find_pg_bin, start_cluster

pytestmark = pytest.mark.skipif(find_pg_bin() is None or bool(os.environ.get("VIGATRA_TEST_POSTGRES_URL")),
                                reason="needs the machine's PostgreSQL binaries")


def _answers(cluster: PostgresCluster) -> bool:
    engine = create_engine(cluster.fresh_database(migrated=False))
    try:
        with engine.connect() as conn:
            conn.execute(text("CREATE TABLE t (x int)"))
            conn.execute(text("INSERT INTO t SELECT generate_series(1, 1000)"))
            return bool(conn.execute(text("SELECT count(*) FROM t")).scalar() == 1000)
    finally:
        engine.dispose()


def test_two_suites_start_clusters_side_by_side(tmp_path: Path) -> None:
    bases = [tmp_path / "run-a", tmp_path / "run-b"]
    with ThreadPoolExecutor(2) as pool:
        started = list(pool.map(start_cluster, bases))
    clusters = [c for c, _ in started]
    try:
        assert all(c is not None for c in clusters), [why for _, why in started]
        # A neighbouring run's pytest now closes its temp root, as it does at every session start.
        os.chmod(tmp_path, 0o700)
        for base in bases:
            if base.exists():
                os.chmod(base, 0o700)
        for cluster in clusters:
            assert cluster is not None
            assert _answers(cluster)
            if cluster.owned_base is not None:
                assert not str(cluster.owned_base).startswith(str(tmp_path))
                mode = stat.S_IMODE(cluster.owned_base.stat().st_mode)
                assert mode == 0o700
    finally:
        for cluster in clusters:
            if cluster is not None:
                cluster.stop()
    for cluster in clusters:
        if cluster is not None and cluster.owned_base is not None:
            assert not cluster.owned_base.exists()
