"""`ape run deploy`: the same command as `bin/backstop run deploy` (backstop/cli/deploy.py), which answers
`--help` and bad arguments without ape's start-up; here ape has started already."""

from backstop.cli.deploy import deploy as cli  # noqa: F401 (ape runs `cli`)
