"""The venue simulators, served on a loopback port for the test session."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import requests
import waitress.server

from appliance.sim.core import SimState
from appliance.sim.server import SimApp


@dataclass
class RunningSim:
    url: str
    app: SimApp
    server: Any
    thread: threading.Thread

    def base_url(self, venue: str) -> str:
        return f"{self.url}/{venue}"

    def control(self, method: str, path: str, json: Any = None) -> Any:
        response = requests.request(method, f"{self.url}/_sim/{path.lstrip('/')}", json=json, timeout=30)
        response.raise_for_status()
        return response.json()

    def create_key(self, venue: str, permissions: list[str] | None = None,
                   history: dict[str, int] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"permissions": permissions or ["read"]}
        if history is not None:
            body["history"] = history
        return self.control("POST", f"{venue}/keys", body)

    def requests_log(self, venue: str | None = None) -> list[dict[str, Any]]:
        suffix = f"?venue={venue}" if venue else ""
        return self.control("GET", f"requests{suffix}")["requests"]

    def clear_faults(self) -> None:
        for venue in self.app.state.venues:
            self.control("DELETE", f"{venue}/faults")

    def stop(self) -> None:
        self.server.close()


def start_sim(seed: int = 7, threads: int = 32) -> RunningSim:
    app = SimApp(SimState(seed=seed))
    server = waitress.server.create_server(app, host="127.0.0.1", port=0, threads=threads)
    thread = threading.Thread(target=server.run, name="sim", daemon=True)
    thread.start()
    return RunningSim(f"http://127.0.0.1:{server.effective_port}", app, server, thread)
