"""A private Anvil node: no `--steps-tracing` (ape's own node traces every transaction, which makes
batches of fills many times slower), no gas price, a block gas limit for big batches, a
process that dies with ours, and the past states Anvil writes to disk kept in a folder of ours
that goes with it (left to itself, Anvil leaves them in ~/.foundry/anvil/tmp: about 400 MB for
each state-machine run). The crash replay, the policy study, the gas benchmark and the state
machine all run on one of these, loaded with a copy of ape's chain (`anvil_dumpState`).
"""

from __future__ import annotations

import ctypes
import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from backstop.chain.fast_chain import FastChain, NodeConnectionError

# A hundred keeper actions or several batches of 64 fills per block.
BLOCK_GAS_LIMIT = 1_000_000_000


class PrivateAnvil:
    """An Anvil node of our own for as long as the `with` block:

        with PrivateAnvil() as anvil:
            chain = FastChain(anvil.uri)

    `dev_accounts`: Anvil's ten funded dev accounts (ape's test accounts); `steps_tracing` keeps
    opcode traces (`debug_traceTransaction` struct logs; much slower); `recent_states` keeps only
    that many past blocks' states (None: all): Anvil's cost per block grows with the state it
    keeps (about 100 ms a block with 20,000 funded accounts and every state, 65 ms with 64), and a
    replay never reads far back."""

    def __init__(self, hardfork: str = "prague", gas_limit: int = BLOCK_GAS_LIMIT, dev_accounts: bool = True, steps_tracing: bool = False,
                 recent_states: int | None = None):
        binary = anvil_binary()
        if binary is None:
            raise RuntimeError("anvil not found on PATH: run `bin/backstop setup` and use bin/backstop")
        port = free_port()
        self.uri = f"http://127.0.0.1:{port}"
        arguments = [binary, "--port", str(port), "--silent", "--hardfork", hardfork, "--gas-price", "0",
                     "--block-base-fee-per-gas", "0", "--gas-limit", str(gas_limit)]
        arguments += [] if dev_accounts else ["--accounts", "0"]
        arguments += ["--steps-tracing"] if steps_tracing else []
        arguments += ["--prune-history", str(recent_states)] if recent_states is not None else []
        self.states = tempfile.TemporaryDirectory(prefix="backstop-anvil-")
        arguments += ["--cache-path", self.states.name]
        self.process = subprocess.Popen(
            arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent,
        )
        probe = FastChain(self.uri)
        for _ in range(400):
            try:
                probe.request("eth_chainId")
                return
            except NodeConnectionError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        self.close()
        raise RuntimeError(f"anvil did not answer on {self.uri}")

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.states.cleanup()

    def __enter__(self) -> PrivateAnvil:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def private_chain(state: str | None = None, timeout: float = 60.0, **options) -> Iterator[FastChain]:
    """A `PrivateAnvil` (options as its constructor's) with `state` (an `anvil_dumpState` answer)
    loaded, its block gas limit raised again (a state brings its own) and every account
    impersonable; yields the client, stops the node on exit."""
    with PrivateAnvil(**options) as anvil:
        chain = FastChain(anvil.uri, timeout=timeout)
        if state is not None:
            chain.request("anvil_loadState", [without_history(state)])
        chain.request("evm_setBlockGasLimit", [hex(options.get("gas_limit", BLOCK_GAS_LIMIT))])
        chain.request("anvil_autoImpersonateAccount", [True])
        yield chain


def without_history(state: str) -> str:
    """An `anvil_dumpState` answer without its past blocks and transactions: the accounts, code and
    storage, and the latest block the node builds on, are all a copy needs. Ape's node keeps every
    transaction with its step trace, so after a few hundred tests the whole dump outgrows what a
    node accepts in one request."""
    document = json.loads(gzip.decompress(bytes.fromhex(state.removeprefix("0x"))))
    best = document["best_block_number"]
    best = int(best, 16) if isinstance(best, str) else best
    document["blocks"] = [block for block in document["blocks"] if int(block["header"]["number"], 16) == best]
    document["transactions"] = []
    return "0x" + gzip.compress(json.dumps(document).encode()).hex()


def anvil_binary() -> str | None:
    """Anvil's own executable: the npm package's platform binary, so that the binary itself gets
    the parent-death signal and no options but ours (.venv/bin/anvil is bin/backstop's wrapper for
    ape's node and adds its own), found in the project's node_modules or behind the `anvil` on
    PATH; else whatever `anvil` is."""
    on_path = shutil.which("anvil")
    folders = [Path(__file__).resolve().parents[2] / "node_modules" / "@foundry-rs"]
    folders += [Path(on_path).resolve().parent.parent] if on_path else []
    for folder in folders:
        for candidate in sorted(folder.glob("anvil-*/bin/anvil")):
            if os.access(candidate, os.X_OK):
                return str(candidate)
    return on_path


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when the parent dies, however it dies."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
