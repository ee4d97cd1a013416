"""`ape run deploy`: deploys and wires the protocol from a configuration file (config/local.toml by
default), then writes deployments/<network>.json (addresses, ABIs, market ids, parameters)."""

from pathlib import Path

import click
from ape import accounts, chain, networks, project

from backstop.chain.deployment import deploy_protocol, write_deployment
from backstop.cli import ConnectedCommand, config_option


@click.command(cls=ConnectedCommand)
@config_option
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
