"""Simulations and measurements: the crash scenario (`scenario`), its replay on chain and on the
model (`replay`, `chain_replay`, `model_replay`), the ADL policy study (`policy_study`,
`inequality`), and the gas benchmarks (`gas_benchmark`, `adl_benchmark`, `gas_trace`). Results are
plain data; backstop.report formats them.
"""
