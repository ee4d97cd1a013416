"""`ape run crash`: the same command as `bin/backstop run crash` (backstop/cli/crash.py), which answers
`--help` and bad arguments without ape's start-up; here ape has started already."""

from backstop.cli.crash import crash as cli  # noqa: F401 (ape runs `cli`)
