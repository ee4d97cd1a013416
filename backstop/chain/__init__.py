"""Talking to a chain: a private Anvil (`anvil`), the raw JSON-RPC client (`fast_chain`) and its
event decoder (`events`), deploying the contracts from a config file (`deployment`), and EIP-712
orders (`orders`, `trading`). Above the model: it imports only `backstop.model`.
"""
