"""Decoding a contract's events from raw receipt logs (`eth_getTransactionReceipt`, `eth_getLogs`),
with the ABI the deployment file carries: what the keeper, the ADL executor and the ADL benchmark
read back from the transactions they send through `FastChain`.
"""

from __future__ import annotations

import functools

from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address

from backstop.chain.fast_chain import _type_string

# Static one-word types decode by hand: an ADL round on chain emits an event per winner hit, and
# eth_abi costs more per event than everything else the executor does with it.
_WORD_TYPES = ("uint", "int", "bool", "address", "bytes32")


@functools.lru_cache(maxsize=1 << 16)
def _checksummed(word: str) -> str:
    """The checksummed address in the last 40 hex digits of a 32-byte word (the same few thousand
    accounts recur in every round's events)."""
    return to_checksum_address("0x" + word[-40:])


def _decode_word(kind: str, word: str):
    """One 32-byte word (64 hex digits) as its ABI type; None for a type that is not one word."""
    if kind == "address":
        return _checksummed(word)
    if kind == "bool":
        return int(word, 16) != 0
    if kind.startswith("uint"):
        return int(word, 16)
    if kind.startswith("int"):
        value = int(word, 16)
        return value - (1 << 256) if value >> 255 else value
    return bytes.fromhex(word)


class EventDecoder:
    """Decodes raw receipt logs of one contract into (event name, {field: value})."""

    def __init__(self, address: str, abi: list[dict]):
        self.address = address.lower()
        self.events = {}
        for item in abi:
            if item.get("type") == "event":
                types = [_type_string(p) for p in item["inputs"]]
                one_word = all(kind.startswith(_WORD_TYPES) and "[" not in kind and "(" not in kind for kind in types)
                self.events["0x" + keccak(text=f"{item['name']}({','.join(types)})").hex()] = (item, types, one_word)

    @property
    def topics(self) -> dict[str, str]:
        """Event name -> topic 0 as hex, for eth_getLogs filters."""
        return {item["name"]: topic for topic, (item, _, _) in self.events.items()}

    def decode(self, logs: list[dict]) -> list[tuple[str, dict]]:
        decoded = []
        for log in logs:
            event = self.events.get(log["topics"][0]) if log["topics"] else None
            if event is None or log["address"].lower() != self.address:
                continue
            item, types, one_word = event
            if one_word:
                decoded.append((item["name"], self._decode_words(item, types, log)))
                continue
            indexed = iter(log["topics"][1:])
            data = iter(abi_decode([t for p, t in zip(item["inputs"], types) if not p["indexed"]], bytes.fromhex(log["data"][2:])))
            fields = {}
            for param, kind in zip(item["inputs"], types):
                value = abi_decode([kind], bytes.fromhex(next(indexed)[2:]))[0] if param["indexed"] else next(data)
                fields[param["name"]] = to_checksum_address(value) if kind == "address" else value
            decoded.append((item["name"], fields))
        return decoded

    @staticmethod
    def _decode_words(item: dict, types: list[str], log: dict) -> dict:
        """An event whose every field is one static word, decoded by hand."""
        indexed = iter(log["topics"][1:])
        data, position, fields = log["data"][2:], 0, {}
        for param, kind in zip(item["inputs"], types):
            if param["indexed"]:
                word = next(indexed)[2:]
            else:
                word, position = data[position:position + 64], position + 64
            fields[param["name"]] = _decode_word(kind, word)
        return fields
