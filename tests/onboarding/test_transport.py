"""TLS only: credentials over plain HTTP are refused before the body is read, nothing is stored or
logged; forwarded headers are believed from trusted proxies only; HSTS on every TLS response."""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from appliance.store.models import OnboardingToken
from tests.onboarding.conftest import (
    VALID_EVM,
    appliance_with,
    audit_rows,
    audit_text,
    client_for,
    connections,
    csrf_from,
    key_form,
    new_employee,
    new_link,
    overrides,
    secrets_of,
    write_config,
)
from tests.support.proc import VIGATRA, free_port
from tests.support.sim import RunningSim

MIN_HSTS = 31536000


def assert_hsts(response: Any) -> None:
    value = response.headers.get("Strict-Transport-Security", "")
    match = re.search(r"max-age=(\d+)", value)
    assert match and int(match.group(1)) >= MIN_HSTS and "includeSubDomains" in value, (response.request.path, value)


def refused_plain(response: Any) -> None:
    assert response.status_code == 403, response.data[:500]
    assert b"secure (HTTPS) connection" in response.data
    assert b"Nothing you entered was stored" in response.data


def test_plain_http_post_is_refused_before_the_body_is_read(ota: Any, https: Any, plain: Any, sim: RunningSim,
                                                            caplog: pytest.LogCaptureFixture,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)
    employee_id = new_employee(ota)
    _link_id, token = new_link(ota, employee_id)
    key = sim.create_key("kraken", ["read"])
    page = https.get(f"/onboard/{token}?venue=kraken")  # claims the link, gives a CSRF token
    assert page.status_code == 200
    form = key_form(csrf_from(page.text), "kraken", key)

    # The same client, cookies and CSRF token, but over plain HTTP: refused, and the body is never
    # parsed (a form parser that ran would blow up here).
    from werkzeug.wrappers import Request

    def no_parsing(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("the form was parsed on a plain-HTTP request")

    with monkeypatch.context() as patch:
        patch.setattr(Request, "_load_form_data", no_parsing)
        refused_plain(https.post(f"/onboard/{token}", data=form, base_url="http://localhost"))
        refused_plain(plain.post(f"/onboard/{token}", data=form))
        refused_plain(plain.post(f"/onboard/{token}", data=form, headers={"X-Forwarded-Proto": "http"}))
    assert connections(ota) == []

    events = audit_rows(ota)
    refused = [e for e in events if e["action"] == "onboarding.refused_plain_http"]
    assert len(refused) == 3 and all(e["status"] == 403 and e["outcome"] == "denied" for e in refused)
    everything = audit_text(events) + caplog.text
    for secret in secrets_of(key):
        assert secret not in everything
    assert token not in everything

    # Proof that the body was good: over TLS the very same form is accepted.
    accepted = https.post(f"/onboard/{token}", data=form)
    assert accepted.status_code == 200 and b"Kraken: accepted" in accepted.data
    assert [c.status for c in connections(ota)] == ["pending"]


def test_refused_plain_posts_are_throttled_too(ota: Any, oapp: Any) -> None:
    """Each refusal is an audit row: an address cannot write them without end."""
    limit = ota.settings.onboarding.failed_lookups_per_window
    noisy = client_for(oapp, "http://appliance.example", REMOTE_ADDR="198.51.100.20")
    codes = [noisy.post(f"/onboard/{'t' * 43}", data={"api_secret": "s"}).status_code for _ in range(limit + 5)]
    assert codes[:limit] == [403] * limit and set(codes[limit + 1:]) == {429}
    refused = [e for e in audit_rows(ota) if e["action"] == "onboarding.refused_plain_http"]
    assert limit <= len(refused) <= limit + 1


def test_forged_forwarded_proto_from_an_untrusted_peer_is_not_believed(ota: Any, oapp: Any, https: Any,
                                                                     sim: RunningSim) -> None:
    employee_id = new_employee(ota)
    _link_id, token = new_link(ota, employee_id)
    key = sim.create_key("coinbase", ["read"])
    csrf = csrf_from(https.get(f"/onboard/{token}?venue=coinbase").text)
    stranger = client_for(oapp, "http://appliance.example", REMOTE_ADDR="198.51.100.7")
    forged = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "127.0.0.1"}
    refused_plain(stranger.post(f"/onboard/{token}", data=key_form(csrf, "coinbase", key), headers=forged))
    page = stranger.get(f"/onboard/{token}", headers=forged)
    assert "Strict-Transport-Security" not in page.headers
    assert connections(ota) == []
    refused = [e for e in audit_rows(ota) if e["action"] == "onboarding.refused_plain_http"]
    assert [e["ip_address"] for e in refused] == ["198.51.100.7"]  # the real peer, not the forged hop


def test_insecure_dev_flag_helps_localhost_only(db_url: str, tmp_path: Path, sim: RunningSim) -> None:
    from appliance.app import create_app

    with appliance_with(db_url, tmp_path / "data", sim, server={"dev_allow_insecure_onboarding": True}) as built:
        app = create_app(built.appliance)
        employee_id = new_employee(built)
        _link_id, token = new_link(built, employee_id)
        key = sim.create_key("kraken", ["read"])
        remote = client_for(app, "http://appliance.example", REMOTE_ADDR="198.51.100.7")
        page = remote.get(f"/onboard/{token}?venue=kraken")
        refused_plain(remote.post(f"/onboard/{token}", data=key_form(csrf_from(page.text), "kraken", key)))
        assert connections(built) == []
        local = client_for(app, "http://127.0.0.1:8080")
        page = local.get(f"/onboard/{token}?venue=kraken")
        assert page.status_code == 200
        assert 'data-allow-insecure="1"' in page.text
        accepted = local.post(f"/onboard/{token}", data=key_form(csrf_from(page.text), "kraken", key))
        assert accepted.status_code == 200 and b"Kraken: accepted" in accepted.data


def test_hsts_on_every_tls_response_and_never_on_plain_http(ota: Any, https: Any, plain: Any) -> None:
    employee_id = new_employee(ota)
    _link_id, token = new_link(ota, employee_id)
    csrf = csrf_from(https.get(f"/onboard/{token}").text)
    tls_responses = [
        https.post(f"/onboard/{token}", data={"csrf_token": csrf, "action": "wallet", "chain": "ethereum",
                                              "address": VALID_EVM}),  # 200 (claims the link)
        https.get(f"/onboard/{'x' * 43}"),  # 404
        https.post(f"/onboard/{token}", data={"action": "finish"}),  # 403 (no CSRF token)
        https.get("/static/onboard.js"),
        https.get("/login"),
        https.get("/api/v1/employees"),  # 401 JSON
        https.get("/no/such/page"),
    ]
    second_browser = client_for(https.application, "https://localhost")
    tls_responses.append(second_browser.get(f"/onboard/{token}"))  # 409
    assert sorted({r.status_code for r in tls_responses}) == [200, 401, 403, 404, 409]
    for response in tls_responses:
        assert_hsts(response)
    page = https.get(f"/onboard/{token}")
    # The token is in the URL: never sent on as a Referer, never cached.
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "no-store" in page.headers["Cache-Control"]
    plain_responses = [plain.get(f"/onboard/{token}"), plain.post(f"/onboard/{token}", data={}),
                       plain.get("/static/onboard.js"), plain.get("/login"), plain.get("/no/such/page")]
    for response in plain_responses:
        assert "Strict-Transport-Security" not in response.headers, response.request.path


def test_plain_http_view_neither_claims_the_link_nor_offers_a_live_form(ota: Any, https: Any, plain: Any) -> None:
    """Opened over http:// by mistake: the page says why it cannot be used (without JavaScript too),
    and the https:// link still works afterwards in the employee's browser."""
    employee_id = new_employee(ota)
    link_id, token = new_link(ota, employee_id)
    page = plain.get(f"/onboard/{token}?venue=kraken")
    assert page.status_code == 200
    assert "__Host-vigatra-onboard" not in page.headers.get("Set-Cookie", "")
    html = page.text
    assert re.search(r'<div id="tls-warning"[^>]*role="alert"(?![^>]*hidden)', html), html[:1500]
    for name in ("api_key", "api_secret"):
        assert re.search(rf'<input id="f-{name}"[^>]* disabled', html), name
    with ota.store.read() as session:
        assert session.get(OnboardingToken, link_id).claim_hash is None
    assert https.get(f"/onboard/{token}").status_code == 200
    events = [e for e in audit_rows(ota) if e["resource_id"] == str(link_id)]
    assert [e["action"] for e in events] == ["onboarding.open_plain_http", "onboarding.open"]


def serve_logging_to(config: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`vigatra serve` with stdout+stderr in a file (a DEBUG process fills a pipe and blocks)."""
    port = free_port()
    with log.open("wb") as sink:
        process = subprocess.Popen([*VIGATRA, "--config", str(config), "serve", "--port", str(port)],
                                   stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if requests.get(f"{url}/healthz", timeout=1).status_code in (200, 503):
                return process, url
        except requests.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("serve did not come up in 60 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """One SIGTERM must be enough: `vigatra serve` drains and exits 0 (serve._Shutdown is a SystemExit,
    which waitress's loop lets through wherever the signal lands)."""
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail("`vigatra serve` did not stop within 15 s of one SIGTERM")
    assert code == 0, f"`vigatra serve` exited {code} after SIGTERM"


def test_the_served_process_logs_no_secret(ota: Any, sim: RunningSim, tmp_path: Path) -> None:
    """`vigatra serve` at DEBUG: a plain-HTTP submission refused, TLS ones (via the loopback front's
    X-Forwarded-Proto) rejected and accepted; neither key, secret nor token reaches stdout/stderr."""
    config = write_config(ota, tmp_path / "serve.yaml", logging={"level": "DEBUG"},
                          server={"shutdown_timeout_seconds": 5}, **overrides(sim))
    log = tmp_path / "serve.log"
    process, url = serve_logging_to(config, log)
    employee_id = new_employee(ota)
    _link_id, token = new_link(ota, employee_id)
    keys = [sim.create_key("kraken", ["read"]), sim.create_key("kraken", ["read", "withdraw"])]
    try:
        with requests.Session() as browser:
            tls = {"X-Forwarded-Proto": "https"}
            page = browser.get(f"{url}/onboard/{token}?venue=kraken", headers=tls, timeout=30)
            assert page.status_code == 200
            csrf = csrf_from(page.text)
            # requests keeps Secure cookies for https only: hand them over explicitly.
            cookies = {c.name: c.value or "" for c in browser.cookies}
        refused = requests.post(f"{url}/onboard/{token}", data=key_form(csrf, "kraken", keys[0]),
                                cookies=cookies, timeout=30)
        assert refused.status_code == 403
        assert not connections(ota, employee_id)
        for key, expect in ((keys[1], 422), (keys[0], 200)):
            response = requests.post(f"{url}/onboard/{token}", data=key_form(csrf, "kraken", key),
                                     cookies=cookies, headers=tls, timeout=30)
            assert response.status_code == expect, response.text[:500]
            cookies.update({c.name: c.value or "" for c in response.cookies})  # the claim, on the first one
    finally:
        stop(process)
    out = log.read_text(encoding="utf-8", errors="replace")
    assert "serving on" in out and "DEBUG" in out, out[-2000:]
    for secret in [s for k in keys for s in secrets_of(k)] + [token]:
        assert secret not in out
    assert sorted(c.status for c in connections(ota, employee_id)) == ["pending", "rejected"]
    rejected = next(c for c in connections(ota, employee_id) if c.status == "rejected")
    assert rejected.api_key_sealed is None and rejected.api_secret_sealed is None
