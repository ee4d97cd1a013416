"""Backstop's Python side, in layers; a layer imports only itself and the layers before it
(tests/test_package_layers.py holds the package to this):

1. `backstop.model`: the reference model, the executable specification of the contracts;
2. `backstop.chain`: talking to a chain (private Anvil, raw JSON-RPC, deployment, signed orders);
3. `backstop.keeper`: the waterfall keeper, its ADL planner and executors, and its venues;
4. `backstop.sim`: crash scenarios, their replays on chain and on the model, the policy study and
   the gas benchmarks;
5. `backstop.report`: the crash report, its plots and the gas tables;
6. `backstop.cli`: the command line (`python -m backstop.cli`), which the `ape run` scripts in scripts/ expose too.
"""
