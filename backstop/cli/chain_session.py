"""A command's chain: connecting through ape (imported only here, only when a command needs a chain),
deploying with the document a client needs, and where a replay sends its transactions.

The default network, a local Anvil that ape starts with a random port, is a throwaway: it stops
when the command ends. A crash replayed there runs on a private copy of it without step tracing
(fast); one replayed onto a persistent node (APE_FOUNDRY_HOST, or another --network) runs on
the node itself, so that `run keeper` beside it sees real positions.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from contextlib import ExitStack, contextmanager
from typing import Iterator

import click

# Past states a private replay node keeps: enough to replay a failed transaction for its reason.
RECENT_STATES = 64


def is_throwaway(network: str) -> bool:
    """True for a local network whose node ape starts itself and stops when the command ends (no
    APE_FOUNDRY_HOST naming a running one)."""
    return "local" in network.split(":")[:2] and not os.environ.get("APE_FOUNDRY_HOST")


def require_anvil(network: str) -> None:
    """A local network that ape starts needs Anvil on PATH: say so in one sentence if it is not."""
    if is_throwaway(network) and shutil.which("anvil") is None:
        raise click.ClickException(
            "Anvil is not on PATH, and the local network needs it: run `bin/backstop setup` (Node.js 20+ and npm), "
            "activate .venv (setup links Anvil into it), or use --no-chain where the command has it"
        )


@contextmanager
def connected(network: str) -> Iterator:
    """ape connected to `network` (its provider), with only ape's warnings and errors shown."""
    require_anvil(network)
    from ape import networks
    from ape.logging import LogLevel, logger

    logger.set_level(LogLevel.WARNING)
    with ExitStack() as stack:
        try:
            provider = stack.enter_context(networks.parse_network_choice(network))
        except Exception as error:  # ape's providers fail in many ways (timeouts, refusals, bad URLs): one sentence for all
            host = os.environ.get("APE_FOUNDRY_HOST")
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise click.ClickException(f"no chain reachable on {network}{f' at {host}' if host else ''} ({reason}); "
                                       "start one or pass --network with a live RPC") from None
        yield provider


@contextmanager
def replay_chain(provider, persistent: bool) -> Iterator:
    """Where a replay runs: the node itself if `persistent`, else a private copy of ape's chain
    (its deployment included) without step tracing and with few past states kept: a replay sends
    thousands of transactions, which ape's traced Anvil runs many times slower."""
    from backstop.chain.anvil import private_chain
    from backstop.chain.fast_chain import FastChain

    if persistent:
        yield FastChain(provider.http_uri)
        return

    with private_chain(provider.make_request("anvil_dumpState", []), recent_states=RECENT_STATES) as chain:
        yield chain


def deploy(config, deployer=None, keeper: str | None = None, network: str = "") -> tuple:
    """Deploys from `deployer` (default: ape's first test account) with `keeper` (default: the
    deployer) holding the keeper role; returns (protocol, deployment document with the deploy
    block, network, actors and compiler)."""
    from ape import accounts, chain, project

    from backstop.chain.deployment import deploy_protocol, deployment_document

    deployer = deployer or accounts.test_accounts[0]
    keeper = keeper or deployer.address
    first_block = chain.blocks.height + 1
    protocol = deploy_protocol(project, deployer, keeper, config)
    document = deployment_document(
        protocol, chain.chain_id, config, network=network or chain.provider.network.choice, deploy_block=first_block,
        actors={"owner": deployer.address, "keepers": list(dict.fromkeys([keeper, *config.keepers]))},
        compiler=f"vyper {importlib.metadata.version('vyper')}",
    )
    return protocol, document
