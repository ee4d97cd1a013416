"""`ape run sweep`: the same command as `bin/backstop run sweep` (backstop/cli/sweep.py), which answers
`--help` and bad arguments without ape's start-up; here ape has started already."""

from backstop.cli.sweep import sweep as cli  # noqa: F401 (ape runs `cli`)
