"""`ape run deploy`: deploys and wires the protocol from a configuration file (config/local.toml by
default), then writes deployments/<network>.json (addresses, ABIs, market ids, parameters)."""

from pathlib import Path

import click
from ape import accounts, chain, networks, project
from ape.cli import ConnectedProviderCommand
from ape.exceptions import ProviderError

from backstop.deployment import DEFAULT_CONFIG_PATH, deploy_protocol, load_config, write_deployment


class DeployCommand(ConnectedProviderCommand):
    """ape's connected command, with an unreachable chain reported in one sentence, not a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ProviderError as error:  # ProviderNotConnectedError and "no node found" are both ProviderErrors
            raise click.ClickException(f"no chain reachable ({error}); start one or pass --network with a live RPC") from None


@click.command(cls=DeployCommand)
@click.option(
    "--config", "config", type=click.Path(path_type=Path), default=DEFAULT_CONFIG_PATH, show_default=True,
    # Parsed before ape connects, so a bad file fails fast and before any chain is started.
    callback=lambda ctx, param, path: load_config(path),
    help="Deployment parameters (TOML): markets, keeper roles, oracle, liquidation and vault settings.",
)
@click.option("--account", "alias", default=None, help="Deployer account alias (default: the first test account, for local chains).")
@click.option("--keeper", default=None, help="Keeper address, in addition to the config's [roles] keepers (default: the deployer).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output file (default: deployments/<network>.json).")
def cli(config, alias, keeper, out):
    """Deploy Backstop's contracts and write their addresses and ABIs to a JSON file."""
    account = accounts.load(alias) if alias else accounts.test_accounts[0]
    keeper = keeper or account.address
    protocol = deploy_protocol(project, account, keeper, config)
    out = out or Path("deployments") / f"{networks.provider.network.name}.json"
    write_deployment(out, protocol, chain.chain_id, config)
    for name, address in protocol.addresses().items():
        click.echo(f"{name:>14}  {address}")
    click.echo(f"wrote {out}")
