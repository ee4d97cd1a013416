"""`deploy`: deploys and wires the protocol from a configuration file (config/local.toml by default)
and writes deployments/<network>.json: addresses, ABIs, market ids, parameters and their units, the
deploy block, the network, the actors and the compiler version.

The default network is a throwaway Anvil that stops when the command ends; a deployment there is
gone at once, so `deploy` refuses it (before deploying) unless `--dry-run` asks for exactly that.
"""

from __future__ import annotations

from pathlib import Path

import click

from backstop.cli.errors import Command
from backstop.cli.options import config_option, network_option


@click.command(cls=Command)
@config_option
@network_option
@click.option("--account", "alias", default=None, help="Deployer account alias (default: the first test account, for local chains).")
@click.option("--keeper", default=None, help="Keeper address, in addition to the config's [roles] keepers (default: the deployer).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output file (default: deployments/<network>.json).")
@click.option("--dry-run", is_flag=True, help="Deploy to the throwaway chain anyway, to see it work; write nothing.")
def deploy(config, network, alias, keeper, out, dry_run):
    """Deploy Backstop's contracts and write their addresses and ABIs to a JSON file."""
    from backstop.cli.chain_session import connected, deploy as deploy_to, is_throwaway

    throwaway = is_throwaway(network)
    if throwaway and not dry_run:
        raise click.ClickException(
            "the default network is a throwaway Anvil that stops when this command ends, so the deployment would be gone at once: "
            "start one (node_modules/.bin/anvil --hardfork prague &) and set APE_FOUNDRY_HOST=http://127.0.0.1:8545, "
            "pass --network for a live node, or --dry-run to deploy to the throwaway chain and write nothing"
        )
    with connected(network) as provider:
        from ape import accounts

        deployer = accounts.load(alias) if alias else None
        protocol, document = deploy_to(config, deployer, keeper, network)
        for name, address in protocol.addresses().items():
            click.echo(f"{name:>14}  {address}")
        if throwaway:
            click.echo("deployed to a throwaway chain (it stops now): nothing written")
            return
        from backstop.cli.writing import write_json

        out = out or Path("deployments") / f"{provider.network.name}.json"
        write_json(out, document)
        click.echo(f"wrote {out} (deploy block {document['deploy_block']})")
