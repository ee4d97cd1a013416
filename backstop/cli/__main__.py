"""`python -m backstop.cli NAME ...`: the commands without ape's start-up (see backstop/cli/__init__.py)."""

import click

from backstop.cli.compare import compare
from backstop.cli.crash import crash
from backstop.cli.deploy import deploy
from backstop.cli.keeper import keeper
from backstop.cli.scale import scale
from backstop.cli.sweep import sweep


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Backstop: deploy, replay a crash, compare the ADL policies, sweep them, keep a deployment, time the heavy runs."""


for command in (crash, compare, sweep, deploy, keeper, scale):
    main.add_command(command)

if __name__ == "__main__":
    main(prog_name="bin/backstop run")
