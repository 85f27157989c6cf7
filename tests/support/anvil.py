"""A real local EVM node for the chain tests: anvil (Foundry), from the npm package ``@foundry-rs/anvil``.

``find_anvil()`` looks on PATH, then in ``.tools/node_modules/.bin`` (where ``make test`` runs
``npm install --prefix .tools @foundry-rs/anvil`` when anvil is missing). Without anvil the tests
skip locally and FAIL in CI (env CI=true), so a CI run can never pass by not testing.

The helpers here talk to anvil directly with ``requests``: deploying contracts and sending
transactions from anvil's unlocked accounts (eth_sendTransaction) is the TEST's job, never the
adapter's, which can only call read methods.

Recompile the test contracts (needs the npm ``solc`` package in .tools) with
``.venv/bin/python -m tests.support.anvil compile``; the result is committed as
tests/chains/fixtures/contracts.json so the tests never need solc.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from appliance.venues.chains.primitives import keccak256

ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = ROOT / ".tools" / "node_modules" / ".bin"
FIXTURES = ROOT / "tests" / "chains" / "fixtures"
CONTRACTS = FIXTURES / "contracts.json"
SOURCES = ("TestToken.sol", "TestNFT.sol")


def find_anvil() -> str | None:
    found = shutil.which("anvil")
    if found:
        return found
    local = TOOLS_BIN / "anvil"
    return str(local) if local.exists() else None


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------------
# ABI helpers (just what the tests send: address, uint, string)


def selector(signature: str) -> str:
    return keccak256(signature.encode()).hex()[:8]


def encode(types: list[str], values: list[Any]) -> str:
    """ABI-encode arguments (hex without 0x)."""
    head, tail = [], []
    offset = 32 * len(types)
    for kind, value in zip(types, values, strict=True):
        if kind == "string":
            data = str(value).encode()
            padded = data + b"\0" * (-len(data) % 32)
            head.append(offset.to_bytes(32, "big"))
            chunk = len(data).to_bytes(32, "big") + padded
            tail.append(chunk)
            offset += len(chunk)
        elif kind == "address":
            head.append(bytes(12) + bytes.fromhex(str(value)[2:]))
        else:  # uintN
            head.append(int(value).to_bytes(32, "big"))
    return (b"".join(head) + b"".join(tail)).hex()


def call_data(signature: str, *values: Any) -> str:
    types = signature[signature.index("(") + 1:-1].split(",") if not signature.endswith("()") else []
    return "0x" + selector(signature) + encode(types, list(values))


# --------------------------------------------------------------------------------------------
# The node


@dataclass
class Anvil:
    url: str
    process: subprocess.Popen[bytes]
    accounts: list[str] = field(default_factory=list)

    def rpc(self, method: str, *params: Any) -> Any:
        response = requests.post(self.url, json={"jsonrpc": "2.0", "id": 1, "method": method,
                                                 "params": list(params)}, timeout=30)
        payload = response.json()
        if payload.get("error"):
            raise RuntimeError(f"{method}: {payload['error']}")
        return payload["result"]

    def block_number(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)

    def send(self, sender: str, to: str | None, data: str = "0x", value: int = 0) -> dict[str, Any]:
        """A transaction from an unlocked account; anvil mines it at once. Returns the receipt."""
        tx: dict[str, Any] = {"from": sender, "data": data, "value": hex(value)}
        if to is not None:
            tx["to"] = to
        tx_hash = self.rpc("eth_sendTransaction", tx)
        receipt = self.rpc("eth_getTransactionReceipt", tx_hash)
        deadline = time.monotonic() + 10
        while receipt is None and time.monotonic() < deadline:  # automine finishes just after the answer
            time.sleep(0.01)
            receipt = self.rpc("eth_getTransactionReceipt", tx_hash)
        if receipt is None or int(receipt["status"], 16) != 1:
            raise RuntimeError(f"transaction {tx_hash} failed: {receipt}")
        return dict(receipt)

    def deploy(self, contract: str, types: list[str] | None = None, values: list[Any] | None = None) -> str:
        compiled = json.loads(CONTRACTS.read_text())["contracts"][contract]
        data = compiled["bytecode"] + (encode(types, values or []) if types else "")
        receipt = self.send(self.accounts[0], None, data)
        return str(receipt["contractAddress"])

    def mine(self, blocks: int = 1) -> None:
        self.rpc("anvil_mine", hex(blocks))

    def snapshot(self) -> str:
        return str(self.rpc("evm_snapshot"))

    def revert(self, snapshot_id: str) -> None:
        if self.rpc("evm_revert", snapshot_id) is not True:
            raise RuntimeError("evm_revert failed")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # our own process group: the npm wrapper and anvil
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def start_anvil(binary: str, *extra: str, chain_id: int = 31337) -> Anvil:
    port = free_port()
    process = subprocess.Popen(
        [binary, "--host", "127.0.0.1", "--port", str(port), "--silent", "--chain-id", str(chain_id), *extra],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    node = Anvil(f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            err = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise RuntimeError(f"anvil exited with {process.returncode}: {err[-500:]}")
        try:
            node.accounts = list(node.rpc("eth_accounts"))
            return node
        except (requests.ConnectionError, ValueError):
            if time.monotonic() > deadline:
                node.stop()
                raise RuntimeError("anvil did not start within 30 s") from None
            time.sleep(0.05)


def anvil_binary_or_skip() -> str:
    binary = find_anvil()
    if binary is None:
        why = ("anvil not found on PATH or in .tools/node_modules/.bin; install it with "
               "`npm install --prefix .tools @foundry-rs/anvil`")
        if in_ci():
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    return binary


@pytest.fixture
def anvil() -> Iterator[Anvil]:
    """A fresh anvil on a free loopback port, stopped after the test."""
    node = start_anvil(anvil_binary_or_skip())
    try:
        yield node
    finally:
        node.stop()


# --------------------------------------------------------------------------------------------
# Compiling the fixtures (maintainers only)


def compile_contracts() -> dict[str, Any]:
    solcjs = TOOLS_BIN / "solcjs"
    if not solcjs.exists():
        raise SystemExit("install solc first: npm install --prefix .tools solc")
    standard_input = {
        "language": "Solidity",
        "sources": {name: {"content": (FIXTURES / name).read_text()} for name in SOURCES},
        "settings": {"optimizer": {"enabled": True, "runs": 200}, "evmVersion": "cancun",
                     "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}}},
    }
    done = subprocess.run([str(solcjs), "--standard-json"], input=json.dumps(standard_input).encode(),
                          capture_output=True, check=True)
    text = done.stdout.decode()
    output = json.loads(text[text.index("{"):])  # solcjs prints a notice about SMT solvers first
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise SystemExit("\n".join(e["formattedMessage"] for e in errors))
    version = subprocess.run([str(solcjs), "--version"], capture_output=True, check=True, text=True).stdout.strip()
    contracts = {}
    for source in output["contracts"].values():
        for name, compiled in source.items():
            contracts[name] = {"abi": compiled["abi"], "bytecode": "0x" + compiled["evm"]["bytecode"]["object"]}
    return {"compiler": f"solc {version}", "command": ".venv/bin/python -m tests.support.anvil compile",
            "contracts": contracts}


if __name__ == "__main__":
    if sys.argv[1:] != ["compile"]:
        raise SystemExit("usage: python -m tests.support.anvil compile")
    CONTRACTS.write_text(json.dumps(compile_contracts(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {CONTRACTS.relative_to(ROOT)}")
