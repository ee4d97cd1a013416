"""Where a transaction's gas goes: its struct-log trace (`debug_traceTransaction`) summed by
contract and opcode class (cold and warm storage, calls, events, hashing, the rest), for the gas
benchmarks' `--explain` (backstop/sim/gas_benchmark.py, backstop/sim/adl_benchmark.py). Returns
plain numbers; backstop/report/gas.py makes tables of them.
"""

from __future__ import annotations

from dataclasses import dataclass

CALL_OPS = {"CALL", "STATICCALL", "DELEGATECALL", "CALLCODE"}
ECRECOVER = 1


def calldata_gas(data: bytes) -> int:
    """Intrinsic calldata cost: 4 per zero byte, 16 per non-zero byte."""
    return sum(4 if byte == 0 else 16 for byte in data)


def step_costs(struct_logs: list[dict]) -> list[int]:
    """The gas each step itself consumed. A call's cost is its overhead (cold or warm account,
    memory, a precompile's work) without the gas its callee's own steps used."""
    costs = [log["gasCost"] for log in struct_logs]
    open_calls: dict[int, int] = {}
    for i, log in enumerate(struct_logs):
        depth = log["depth"]
        following = struct_logs[i + 1] if i + 1 < len(struct_logs) else None
        if following is not None and following["depth"] == depth:
            costs[i] = log["gas"] - following["gas"]
        elif following is not None and following["depth"] > depth:
            open_calls[depth] = i
        if i > 0 and struct_logs[i - 1]["depth"] > depth:
            call = open_calls.pop(depth)
            last = struct_logs[i - 1]
            callee_used = struct_logs[call + 1]["gas"] - (last["gas"] - last["gasCost"])
            costs[call] = struct_logs[call]["gas"] - log["gas"] - callee_used
    return costs


def _category(op: str, cost: int, target: int | None) -> str:
    if op == "SSTORE":
        if cost >= 20_000:
            return "SSTORE zero → non-zero (22,100 cold / 20,000 warm)"
        if cost >= 2_900:
            return "SSTORE non-zero → other value (2,900 + 2,100 if cold)"
        return "SSTORE same value or rewrite of a dirty slot (100 + 2,100 if cold)"
    if op == "SLOAD":
        return "SLOAD cold (2,100)" if cost >= 2_100 else "SLOAD warm (100)"
    if op in CALL_OPS:
        if target == ECRECOVER:
            return "ecrecover precompile call (3,000 + call)"
        return "external call, cold account (2,600)" if cost >= 2_600 else "external call, warm account (100)"
    if op.startswith("LOG"):
        return "LOG (events)"
    if op == "KECCAK256":
        return "KECCAK256"
    return "other opcodes (arithmetic, memory, ABI)"


def gas_breakdown(struct_logs: list[dict], entry: str, names: dict[str, str]) -> dict[tuple[str, str], list[int]]:
    """(contract, category) → [count, gas] over a transaction's struct logs (stack enabled).
    `entry` is the address called; `names` maps lowercase addresses to contract names."""
    costs = step_costs(struct_logs)
    frames = {1: entry.lower()}
    totals: dict[tuple[str, str], list[int]] = {}
    for log, cost in zip(struct_logs, costs):
        address = frames.get(log["depth"], "?")
        target = None
        if log["op"] in CALL_OPS:
            target_address = int(log["stack"][-2], 16)
            target = target_address
            frames[log["depth"] + 1] = f"0x{target_address:040x}"
        key = (names.get(address, address), _category(log["op"], cost, target))
        entry_totals = totals.setdefault(key, [0, 0])
        entry_totals[0] += 1
        entry_totals[1] += cost
    return totals


@dataclass(frozen=True)
class Breakdown:
    """Where one transaction's gas went: `gas_breakdown`'s totals, divided by `per` (fills in a batch)."""

    title: str
    totals: dict[tuple[str, str], list[int]]
    gas_used: int
    intrinsic: int
    per: int = 1
