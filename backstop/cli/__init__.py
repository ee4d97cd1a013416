"""The command line: `python -m backstop.cli NAME` (what `bin/backstop run NAME` runs), and the same
click commands behind the `ape run` scripts in scripts/.

Every command parses its arguments before it imports ape, numpy or matplotlib, so `--help` and a
bad argument answer in a fraction of a second, and a command that needs no chain (`compare
--no-chain`, `sweep`) never starts one. A command that needs a chain connects through ape itself
(`chain_session.connected`).
"""
