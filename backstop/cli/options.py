"""The commands' shared options: the scenario, the deployment config, the network, the output folder.
Each is parsed and checked before anything heavy is imported or started."""

from __future__ import annotations

from pathlib import Path

import click

from backstop.model.adl import POLICY_BY_NAME

DEFAULT_NETWORK = "ethereum:local:foundry"
DEFAULT_CONFIG = Path("config/local.toml")
# What a run writes into its --out folder: a folder holding one of these holds another run's report.
REPORT_FILES = ("report.md", "result.json")
# backstop/keeper/auctions.py's UNWIND_POLICIES, spelled out so that parsing imports no keeper code
# (tests/test_auction_keeper.py checks they are the same).
UNWIND_POLICIES = ("profit", "rebound", "targets", "all", "none")


def scenario_options(function):
    """--traders, --seed, --steps: the crash scenario (backstop/sim/scenario.py `generate`)."""
    function = click.option("--steps", type=click.IntRange(min=4), default=48, show_default=True, help="Blocks in the price path.")(function)
    function = click.option("--seed", type=int, default=0, show_default=True, help="Seed of the scenario (same seed, same crash).")(function)
    return click.option("--traders", type=click.IntRange(min=10), default=1000, show_default=True,
                        help="Accounts in the scenario (at least 10, so every kind of trader is present).")(function)


def config_option(function):
    return click.option(
        "--config", "config", type=click.Path(path_type=Path), default=DEFAULT_CONFIG, show_default=True,
        # Read and checked while parsing: a bad file, or a parameter the contracts would refuse,
        # fails in one sentence before any chain is started.
        callback=lambda ctx, param, path: _load_config(path),
        help="Deployment parameters (TOML): markets, keeper roles, oracle, liquidation and vault settings.",
    )(function)


def _load_config(path: Path):
    from backstop.chain.deployment import load_config

    return load_config(path)


def scale_option(function):
    return click.option(
        "--scale-vault/--no-scale-vault", "scale_vault", default=True, show_default=True,
        help="Scale the vault's loss caps and position limits with --traders (the config's are sized for 1,000 traders).",
    )(function)


def auction_options(function):
    """--volunteers/--no-volunteers and --unwind: issue 15's volunteer step and the keeper's unwind
    policy for the vault (backstop/keeper/auctions.py)."""
    function = click.option(
        "--unwind", type=click.Choice(UNWIND_POLICIES), default="profit", show_default=True,
        help="When the keeper offers the vault's positions: profit (once back above its entry), rebound (once the market is the "
             "premium cap off its worst), targets (only above its risk limits), all (at once), none.",
    )(function)
    return click.option(
        "--volunteers/--no-volunteers", "volunteers", default=True, show_default=True,
        help="ADL rounds first auction the bankrupt positions to volunteers (the scenario's liquidators and market makers).",
    )(function)


def network_option(function):
    return click.option(
        "--network", default=DEFAULT_NETWORK, show_default=True,
        help="ape network choice. The default starts a throwaway Anvil; set APE_FOUNDRY_HOST=http://HOST:PORT to use a running one.",
    )(function)


def out_options(default: Path):
    """--out DIR and --force: where the report goes, and whether it may replace another run's."""

    def decorate(function):
        function = click.option("--force", is_flag=True, help="Overwrite the report of another run in --out.")(function)
        return click.option("--out", type=click.Path(path_type=Path), default=default, show_default=True, help="Report folder.")(function)

    return decorate


def policy_choice() -> click.Choice:
    return click.Choice(sorted(POLICY_BY_NAME, key=POLICY_BY_NAME.get))


def chosen_policies(names) -> list[int]:
    """The policy ids of repeated --policy options, in the order given; every policy if none."""
    return [POLICY_BY_NAME[name] for name in dict.fromkeys(names)] or sorted(POLICY_BY_NAME.values())


def claim_out_dir(out: Path, force: bool) -> Path:
    """`out`, checked before any work: a folder (created if missing) that holds no other run's
    report unless `force`; a ClickException naming the problem otherwise."""
    if out.exists() and not out.is_dir():
        raise click.ClickException(f"--out {out} is a file, not a folder: choose a folder for the report")
    existing = [name for name in REPORT_FILES if (out / name).exists()]
    if existing and not force:
        raise click.ClickException(f"--out {out} holds another run's report ({existing[0]}): pass --force to overwrite it, or choose another folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise click.ClickException(f"cannot create the report folder {out}: {error.strerror or error}") from None
    return out


def vault_limits_for(config, traders: int, scale: bool):
    """The config, its vault limits scaled to a crowd of `traders` if asked (backstop/sim/sweep.py
    `case_config` with the default vault size)."""
    from backstop.sim.sweep import DEFAULT_VAULT_FRACTION, case_config

    return case_config(config, traders, DEFAULT_VAULT_FRACTION, scale)
