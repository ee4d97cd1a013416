"""Decoding a contract's events from raw receipt logs (`eth_getTransactionReceipt`, `eth_getLogs`),
with the ABI the deployment file carries: what the keeper, the ADL executor and the ADL benchmark
read back from the transactions they send through `FastChain`.
"""

from __future__ import annotations

from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address

from backstop.chain.fast_chain import _type_string


class EventDecoder:
    """Decodes raw receipt logs of one contract into (event name, {field: value})."""

    def __init__(self, address: str, abi: list[dict]):
        self.address = address.lower()
        self.events = {}
        for item in abi:
            if item.get("type") == "event":
                types = [_type_string(p) for p in item["inputs"]]
                self.events[keccak(text=f"{item['name']}({','.join(types)})")] = (item, types)

    @property
    def topics(self) -> dict[str, str]:
        """Event name -> topic 0 as hex, for eth_getLogs filters."""
        return {item["name"]: "0x" + topic.hex() for topic, (item, _) in self.events.items()}

    def decode(self, logs: list[dict]) -> list[tuple[str, dict]]:
        decoded = []
        for log in logs:
            topic = bytes.fromhex(log["topics"][0][2:])
            if log["address"].lower() != self.address or topic not in self.events:
                continue
            item, types = self.events[topic]
            indexed = iter(log["topics"][1:])
            data = iter(abi_decode([t for p, t in zip(item["inputs"], types) if not p["indexed"]], bytes.fromhex(log["data"][2:])))
            fields = {}
            for param, kind in zip(item["inputs"], types):
                value = abi_decode([kind], bytes.fromhex(next(indexed)[2:]))[0] if param["indexed"] else next(data)
                fields[param["name"]] = to_checksum_address(value) if kind == "address" else value
            decoded.append((item["name"], fields))
        return decoded
