"""`ape run compare`: the same command as `bin/backstop run compare` (backstop/cli/compare.py), which answers
`--help` and bad arguments without ape's start-up; here ape has started already."""

from backstop.cli.compare import compare as cli  # noqa: F401 (ape runs `cli`)
