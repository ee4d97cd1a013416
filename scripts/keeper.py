"""`ape run keeper`: the same command as `bin/backstop run keeper` (backstop/cli/keeper.py), which answers
`--help` and bad arguments without ape's start-up; here ape has started already."""

from backstop.cli.keeper import keeper as cli  # noqa: F401 (ape runs `cli`)
