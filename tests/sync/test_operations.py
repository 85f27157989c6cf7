"""Operations: `vigatra poll --once [--connection ID]` and `vigatra status` through the real CLI, and
the Prometheus endpoint behind system:read."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.access.helpers import auth, token
from tests.support.sim import RunningSim
from tests.sync.conftest import connection, https_client, onboard, vigatra, write_config


def test_poll_once_and_status_through_the_cli(sta: Any, sim: RunningSim, tmp_path: Path) -> None:
    kraken, kraken_key = onboard(sta, sim, "kraken", history={"trades": 6, "deposits": 2, "withdrawals": 1})
    okx, _ = onboard(sta, sim, "okx", history={"trades": 3, "deposits": 1, "withdrawals": 1})
    config = write_config(sta, tmp_path / "vigatra.yaml")

    before = vigatra(config, "status")
    assert before.returncode == 0, before.stderr
    assert "connections: pending 2" in before.stdout
    assert "backlog (due now): 2" in before.stdout
    assert "last cycle: none yet" in before.stdout

    polled = vigatra(config, "poll", "--once")
    assert polled.returncode == 0, polled.stderr
    lines = polled.stdout.splitlines()
    assert re.fullmatch(r"cycle: 2 connection\(s\) polled in \d+\.\ds, 2 ok, 0 failed, backlog 0", lines[0]), lines
    assert f"connection {kraken} kraken: ok, 9 new record(s)" in lines
    assert f"connection {okx} okx: ok, 5 new record(s)" in lines
    assert connection(sta, kraken).status == connection(sta, okx).status == "active"

    # Nothing is due now; --connection forces one connection anyway.
    again = vigatra(config, "poll", "--once")
    assert again.stdout.startswith("cycle: 0 connection(s) polled"), again.stdout
    one = vigatra(config, "poll", "--once", "--connection", str(kraken))
    assert one.returncode == 0, one.stderr
    assert one.stdout.splitlines()[1:] == [f"connection {kraken} kraken: ok, 0 new record(s)"]

    # A failing forced poll says why and exits 1.
    sim.control("POST", f"kraken/keys/{kraken_key['api_key']}/revoke")
    failed = vigatra(config, "poll", "--once", "--connection", str(kraken))
    assert failed.returncode == 1
    assert f"connection {kraken} kraken: FAILED (authentication: " in failed.stdout

    status = vigatra(config, "status")
    assert status.returncode == 0, status.stderr
    out = status.stdout
    assert "connections: active 1, broken 1" in out
    assert "backlog (due now): 0" in out
    cycles = [line for line in out.splitlines() if line.startswith("cycle ")]
    assert len(cycles) == 4  # newest first
    assert re.search(r": 1 polled, 0 ok, \d+\.\ds, failures authentication: kraken 1$", cycles[0]), cycles
    assert re.search(r": 2 polled, 2 ok, \d+\.\ds, failures none$", cycles[-1]), cycles


def test_metrics_for_system_readers_only(sta: Any, sim: RunningSim) -> None:
    from appliance.services.sync import run_cycle

    onboard(sta, sim, "kraken")
    run_cycle(sta.appliance)
    client = https_client(sta)
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=auth(token(client, sta, "victor"))).status_code == 403
    assert client.get("/metrics", headers=auth(token(client, sta, "nora"))).status_code == 403
    for persona in ("alice", "carol"):
        response = client.get("/metrics", headers=auth(token(client, sta, persona)))
        assert response.status_code == 200
        assert response.mimetype == "text/plain"
        assert "version=0.0.4" in response.headers["Content-Type"]
    text = response.get_data(as_text=True)
    assert '# TYPE vigatra_connections gauge' in text
    assert 'vigatra_connections{status="active",venue="kraken"} 1.0' in text
    assert re.search(r'^vigatra_poll_last_cycle_polled\{node="[^"]+"\} 1\.0$', text, re.M)
    assert "# TYPE vigatra_coverage_open_gaps gauge" in text
    assert not re.search(r"^vigatra_coverage_open_gaps\{", text, re.M)  # Kraken reads every market: no gap
    for line in text.splitlines():  # every line is a comment or `name{labels} value`
        assert line.startswith("# ") or re.fullmatch(r'[a-z_]+(\{[^}]*\})? -?[0-9.e+]+', line), line


def test_the_system_page_shows_the_last_cycle(sta: Any, sim: RunningSim) -> None:
    from appliance.services.sync import run_cycle
    from tests.access.helpers import login_session

    onboard(sta, sim, "kraken")
    run_cycle(sta.appliance)
    client = https_client(sta)
    login_session(client, sta, "carol")
    page = client.get("/system")
    assert page.status_code == 200, page.get_data(as_text=True)[:500]
    text = page.get_data(as_text=True)
    assert "connections: active 1" in text
    assert re.search(rf"cycle \S+ on {re.escape(sta.appliance.node_id)}: 1 polled, 1 ok", text), text
    login_session(client, sta, "victor")
    assert client.get("/system").status_code == 403
