"""What the `ape run` scripts share: a connected command that reports an unreachable chain in one
sentence, the scenario options, a progress bar, and the copy of ape's chain into a private Anvil."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import click
import requests
from ape.cli import ConnectedProviderCommand
from ape.exceptions import ProviderError

from backstop.chain.anvil import private_chain
from backstop.chain.deployment import DEFAULT_CONFIG_PATH, load_config
from backstop.chain.fast_chain import FastChain
from backstop.model.adl import POLICY_BY_NAME


class ConnectedCommand(ConnectedProviderCommand):
    """ape's connected command, with an unreachable chain reported in one sentence, not a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (ProviderError, requests.exceptions.ConnectionError) as error:
            # ProviderNotConnectedError and "no node found" are ProviderErrors; ape-node's "cannot
            # start a node" for a local URL that does not answer is a ConnectionError.
            reason = str(error).splitlines()[0]
            raise click.ClickException(f"no chain reachable ({reason}); start one or pass --network with a live RPC") from None


def quiet_ape() -> None:
    """Only ape's warnings and errors: a deployment's dozens of INFO lines would bury the progress."""
    from ape.logging import LogLevel, logger

    logger.set_level(LogLevel.WARNING)


def config_option(function):
    return click.option(
        "--config", "config", type=click.Path(path_type=Path), default=DEFAULT_CONFIG_PATH, show_default=True,
        # Parsed before ape connects, so a bad file fails fast and before any chain is started.
        callback=lambda ctx, param, path: load_config(path),
        help="Deployment parameters (TOML): markets, keeper roles, oracle, liquidation and vault settings.",
    )(function)


def scenario_options(function):
    """--traders, --seed, --steps: the crash scenario (backstop/sim/scenario.py `generate`)."""
    function = click.option("--steps", type=click.IntRange(min=4), default=48, show_default=True, help="Blocks in the price path.")(function)
    function = click.option("--seed", type=int, default=0, show_default=True, help="Seed of the scenario (same seed, same crash).")(function)
    return click.option("--traders", type=click.IntRange(min=10), default=1000, show_default=True,
                        help="Accounts in the scenario (at least 10, so every kind of trader is present).")(function)


def scale_option(function):
    return click.option(
        "--scale-vault/--no-scale-vault", "scale_vault", default=True, show_default=True,
        help="Scale the vault's loss caps and position limits with --traders (the config's are sized for 1,000 traders).",
    )(function)


def vault_limits_for(config, traders: int, scale: bool):
    """The config, its vault limits scaled to a crowd of `traders` if asked (see scaled_vault_limits)."""
    from fractions import Fraction

    from backstop.chain.deployment import scaled_vault_limits

    return scaled_vault_limits(config, Fraction(traders, 1000)) if scale else config


def policy_choice() -> click.Choice:
    return click.Choice(sorted(POLICY_BY_NAME, key=POLICY_BY_NAME.get))


@contextmanager
def progress_bar(label: str, total: int) -> Iterator:
    """A rich progress bar; yields progress(step, total, message)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[note]}"))
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(label, total=total, note="")

        def progress(step: int, steps: int, message: str) -> None:
            bar.update(task, completed=step, total=steps, note=message[:70])

        yield progress


@contextmanager
def private_copy(provider) -> Iterator[FastChain]:
    """ape's chain (its deployment included) copied into a private Anvil without step tracing:
    replays send thousands of transactions, which ape's traced Anvil runs many times slower."""
    with private_chain(provider.make_request("anvil_dumpState", [])) as chain:
        yield chain
