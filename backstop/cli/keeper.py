"""`keeper`: a long-running keeper (liquidation -> insurance vault -> ADL) for a deployment.

Every `--interval` seconds it picks up the accounts that traded since the last pass
(PositionUpdate events) and runs one pass of backstop/keeper/waterfall.py's waterfall over every
account seen so far; Ctrl-C (or `--passes N`) stops it with a one-line summary.

The chain must be the one the deployment file describes; for a local chain that outlives one
command, start Anvil yourself and point ape at it (README, "Using a deployment from another client"):

    node_modules/.bin/anvil --hardfork prague &
    export APE_FOUNDRY_HOST=http://127.0.0.1:8545
    bin/backstop run crash --traders 200 --no-keeper --step-pause 2 &   # or: bin/backstop run deploy
    bin/backstop run keeper --interval 1
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from pathlib import Path

import click

from backstop.cli.errors import Command
from backstop.cli.options import UNWIND_POLICIES, network_option


@click.command(cls=Command)
@click.option("--deployment", "deployment_path", type=click.Path(path_type=Path), default=Path("deployments/local.json"),
              show_default=True, help="The deployment file `run deploy` (or a crash on a persistent node) wrote.")
@network_option
@click.option("--keeper-account", "alias", default=None,
              help="Alias of the account that sends the keeper's transactions; it needs the keeper role (default: test account 0, the deployer).")
@click.option("--liquidator", "liquidators", multiple=True,
              help="Address that takes liquidated positions over; it needs collateral in the pool (repeatable; default: the keeper account).")
@click.option("--interval", type=click.FloatRange(min=0), default=2.0, show_default=True, help="Seconds between passes.")
@click.option("--passes", type=click.IntRange(min=1), default=None, help="Stop after this many passes (default: run until Ctrl-C).")
@click.option("--from-block", type=int, default=None, help="First block to look for traders in (default: the deployment's deploy block).")
@click.option("--unwind", type=click.Choice(UNWIND_POLICIES), default="profit", show_default=True,
              help="When the keeper offers the vault's positions in auctions (backstop/keeper/auctions.py); the liquidators take "
                   "from 2% off the mark in every auction, the ADL rounds' volunteer auctions included.")
def keeper(deployment_path, network, alias, liquidators, interval, passes, from_block, unwind):
    """Run the liquidation waterfall every INTERVAL seconds until Ctrl-C.

    Local Anvil only: transactions are not signed here but sent with eth_sendTransaction, which
    Anvil accepts from its own dev accounts and, after anvil_impersonateAccount (done here), from
    any other. On another network you would need a signing sender."""
    try:
        document = json.loads(deployment_path.read_text())
    except FileNotFoundError:
        raise click.ClickException(f"deployment file {deployment_path} not found: run `bin/backstop run deploy` first") from None
    except ValueError as error:
        raise click.ClickException(f"{deployment_path} is not a deployment file (not JSON: {error})") from None
    from backstop.cli.chain_session import connected

    with connected(network) as provider:
        run_keeper(provider, document, deployment_path, alias, liquidators, interval, passes,
                   document.get("deploy_block", 0) if from_block is None else from_block, unwind)


def run_keeper(provider, document: dict, path: Path, alias, liquidators, interval: float, passes: int | None, from_block: int,
               unwind: str = "profit") -> None:
    from ape import accounts

    from backstop.chain.fast_chain import FastChain
    from backstop.keeper.auctions import AuctionDesk, Volunteer
    from backstop.keeper.chain_venue import ChainVenue
    from backstop.keeper.waterfall import USDC, WAD, Keeper
    from backstop.sim.chain_winner_book import BookedChainAdlExecutor

    fast = FastChain(provider.http_uri)
    chain_id = int(fast.request("eth_chainId"), 16)
    if document["chain_id"] != chain_id or fast.request("eth_getCode", [document["contracts"]["clearinghouse"]["address"], "latest"]) == "0x":
        raise click.ClickException(
            f"{path} describes contracts that are not on this chain (chain id {chain_id}): "
            "deploy to it first, or set APE_FOUNDRY_HOST to the chain you deployed to"
        )
    keeper_address = accounts.load(alias).address if alias else accounts.test_accounts[0].address
    liquidators = list(liquidators) or [keeper_address]
    for address in {keeper_address, *liquidators}:
        fast.request("anvil_impersonateAccount", [address])
    venue = ChainVenue(fast, document)
    watched: dict[str, None] = {}
    # ADL rounds rank winners among every account seen trading, the vault included.
    adl = BookedChainAdlExecutor(fast, document, keeper_address, accounts=lambda: [*watched, document["contracts"]["vault"]["address"]])
    log = lambda line: click.echo(f"{time.strftime('%H:%M:%S')} {line}")  # noqa: E731
    desk = AuctionDesk(venue, keeper_address, [Volunteer(address, WAD // 50) for address in liquidators], unwind, log=log)
    waterfall = Keeper(venue, keeper_address, liquidators, adl=adl, log=log, auctions=desk)
    done, liquidated, backstopped, refused, rounds = 0, Counter(), Counter(), 0, 0
    click.echo(f"keeper {keeper_address} watching {document['contracts']['clearinghouse']['address']} every {interval:g}s (Ctrl-C stops)")
    # ape turns Ctrl-C into an exit with status 130; here it ends the loop with a summary instead.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        while passes is None or done < passes:
            latest, _ = fast.block()
            if latest >= from_block:
                new = venue.discover_accounts(from_block, latest)
                watched.update(dict.fromkeys(new))
                from_block = latest + 1
                if new:
                    click.echo(f"{len(new)} new accounts, {len(watched)} watched")
            report = waterfall.run_once(list(watched))
            done += 1
            liquidated.update(report.liquidated)
            backstopped.update(report.backstopped)
            refused += len(report.refusals)
            rounds += len(report.adl_rounds)
            if passes is None or done < passes:
                time.sleep(interval)
    except KeyboardInterrupt:
        click.echo("")
    finally:
        signal.signal(signal.SIGINT, previous)
    click.echo(f"keeper stopped after {done} passes over {len(watched)} accounts: liquidated ${sum(liquidated.values()) / USDC:,.2f}, "
               f"backstopped ${sum(backstopped.values()) / USDC:,.2f}, {refused} takeovers refused, {rounds} ADL rounds")
