"""`ape run scale`: the same command as `bin/backstop run scale` (backstop/cli/scale.py), which answers
`--help` and bad arguments without ape's start-up; here ape has started already."""

from backstop.cli.scale import scale as cli  # noqa: F401 (ape runs `cli`)
