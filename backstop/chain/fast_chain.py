"""A thin, fast JSON-RPC client for a local Anvil chain, for fuzzing at hundreds of calls per second.

Ape sends about 19 transactions per second one at a time (it estimates gas, waits, decodes events and
traces). The state machines in tests/ need more: this module talks to the node directly over one
keep-alive HTTP connection, sends transactions from accounts the node holds unlocked
(`eth_sendTransaction`, automine), encodes calldata once per function from the ABI, and reads any
number of views in a single JSON-RPC batch.

    chain = FastChain(uri)
    ch = chain.contract(address, abi)             # abi: a list of ABI dicts
    chain.send(sender, ch.settle_fills.encode([...]), to=ch.address)  # None or a RevertError
    values = chain.read([ch.positions.call(a, 0), ch.long_open_interest.call(0)])

A transaction that the caller expects to succeed is sent with a fixed gas limit (the node need not
estimate it) and its receipt checked; one expected to revert is sent without a gas limit, so the
node's gas estimation refuses it with the revert reason and nothing is mined (the same path ape and
every wallet take). Revert reasons are decoded from `Error(string)` data.
"""

from __future__ import annotations

import functools
import http.client
import json
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlparse

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
# Largest JSON body of one HTTP request: Anvil documents a 2 MB limit (and drops the connection on
# a larger body; a batch of 100 transactions of 64 signed fills each is about 13 MB), so batches
# are split below it.
MAX_BATCH_BYTES = 1_500_000


class RpcError(Exception):
    """A JSON-RPC error that is not a revert."""


class NodeConnectionError(RuntimeError):
    """The node closed the connection or stopped answering. Not an OSError on purpose: click turns
    an EPIPE OSError into a silent exit 1 (it takes it for its own stdout closing)."""


@dataclass(frozen=True)
class RevertError(Exception):
    """A reverted call or transaction; `reason` is the revert string ("" for a bare revert)."""

    reason: str
    data: bytes = b""

    def __str__(self) -> str:
        return f"reverted: {self.reason!r}"


def _type_string(param: dict) -> str:
    """The canonical ABI type of a parameter (tuples spelled out)."""
    kind = param["type"]
    if kind.startswith("tuple"):
        return "(" + ",".join(_type_string(c) for c in param["components"]) + ")" + kind[len("tuple"):]
    return kind


def revert_reason(data: bytes) -> str:
    """The string of `Error(string)` revert data; "" for empty data, the hex for anything else."""
    if data[:4] == ERROR_SELECTOR:
        return abi_decode(["string"], data[4:])[0]
    return "" if not data else "0x" + data.hex()


class Function:
    """One contract function: its selector, input and output types, calldata encoding, decoding."""

    def __init__(self, address: str, item: dict):
        self.address = address
        self.name = item["name"]
        self.inputs = [_type_string(p) for p in item["inputs"]]
        self.outputs = [_type_string(p) for p in item["outputs"]]
        self.signature = f"{self.name}({','.join(self.inputs)})"
        self.selector = keccak(text=self.signature)[:4]
        # Static single-word outputs (the common case) decode without eth_abi, and static
        # single-word inputs encode without it (a keeper's reads build thousands of calls a pass).
        self._fast = self._fast_decoder()
        self._word_encoders = _word_encoders(self.inputs)
        self._selector_hex = "0x" + self.selector.hex()

    def encode(self, *args) -> str:
        if self._word_encoders is not None and len(args) == len(self._word_encoders):
            return self._selector_hex + "".join(encode(arg) for encode, arg in zip(self._word_encoders, args))
        return "0x" + (self.selector + abi_encode(self.inputs, args)).hex()

    def call(self, *args) -> "Call":
        return Call(self, self.encode(*args))

    def decode(self, data: bytes):
        if self._fast is not None:
            return self._fast(data)
        values = abi_decode(self.outputs, data)
        return values[0] if len(values) == 1 else values

    def _fast_decoder(self):
        words = []
        for output in self.outputs:
            if output.startswith("(") and output.endswith(")") and "(" not in output[1:]:
                words.append(tuple(output[1:-1].split(",")))
            else:
                words.append(output)
        flat = [t for w in words for t in (w if isinstance(w, tuple) else (w,))]
        if not flat or not all(t.startswith(("uint", "int", "bool", "address")) and not t.endswith("]") for t in flat):
            return None
        converters = [_word_converter(t) for t in flat]
        # What a state machine reads hundreds of times a step, without the general loop: one word,
        # and several words or one struct of words (a tuple).
        if words == [flat[0]]:
            convert = converters[0]
            return lambda data: convert(data[:32])
        if (len(words) == 1 and isinstance(words[0], tuple)) or not any(isinstance(w, tuple) for w in words):
            spans = [(conv, slice(32 * i, 32 * i + 32)) for i, conv in enumerate(converters)]
            return lambda data: tuple([conv(data[span]) for conv, span in spans])

        def decode(data: bytes):
            values = [conv(data[32 * i: 32 * i + 32]) for i, conv in enumerate(converters)]
            out, i = [], 0
            for w in words:
                if isinstance(w, tuple):
                    out.append(tuple(values[i:i + len(w)]))
                    i += len(w)
                else:
                    out.append(values[i])
                    i += 1
            return out[0] if len(out) == 1 else tuple(out)

        return decode


def _word_encoders(inputs: list[str]):
    """Per input, a function giving its 32-byte ABI word as 64 hex digits, if every input is a
    static single-word type (address, bool, intN, uintN, bytes32); else None (eth_abi encodes)."""
    encoders = []
    for kind in inputs:
        if kind == "address":
            encoders.append(_address_word)
        elif kind == "bool":
            encoders.append(_bool_word)
        elif kind == "bytes32":
            encoders.append(_bytes32_word)
        elif match := re.fullmatch(r"(u?)int(\d+)", kind):
            encoders.append(_integer_word(int(match[2]), signed=not match[1]))
        else:
            return None
    return encoders


def _address_word(value) -> str:
    text = value if isinstance(value, str) else "0x" + bytes(value).hex()
    if len(text) != 42 or not text.startswith("0x"):
        raise ValueError(f"not an address: {value!r}")
    int(text, 16)  # refuses non-hex digits
    return "0" * 24 + text[2:].lower()


def _bool_word(value) -> str:
    if not isinstance(value, bool):
        raise TypeError(f"not a bool: {value!r}")
    return "%064x" % value


def _bytes32_word(value) -> str:
    raw = bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)
    if len(raw) != 32:
        raise ValueError(f"not 32 bytes: {value!r}")
    return raw.hex()


def _integer_word(bits: int, signed: bool):
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)

    def encode(value) -> str:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{value!r} is not a {'' if signed else 'u'}int{bits}")
        return "%064x" % (value % (1 << 256))

    return encode


def _word_converter(kind: str):
    if kind.startswith("uint"):
        return lambda word: int.from_bytes(word, "big")
    if kind.startswith("int"):
        return lambda word: int.from_bytes(word, "big", signed=True)
    if kind == "bool":
        return lambda word: word[-1] == 1
    return lambda word: to_checksum_address(word[12:])


@dataclass(frozen=True)
class Call:
    """A view call ready to go into a batch."""

    function: Function
    data: str


class Contract:
    """Functions of a deployed contract by name, built from its ABI."""

    def __init__(self, address: str, abi: list[dict]):
        self.address = to_checksum_address(address)
        for item in abi:
            if item.get("type") == "function" and not hasattr(self, item["name"]):
                setattr(self, item["name"], Function(self.address, item))


class FastChain:
    """A JSON-RPC connection to one node."""

    GAS = 12_000_000  # gas limit of a transaction expected to succeed (no estimation)

    def __init__(self, uri: str, timeout: float = 60.0):
        parsed = urlparse(uri)
        self._host, self._port = parsed.hostname, parsed.port or 80
        self._path = parsed.path or "/"
        self._timeout = timeout
        self._connection: http.client.HTTPConnection | None = None
        self._id = 0
        self.sent = 0  # transactions mined through this client
        self.last_receipt: dict | None = None
        self._sync = True
        self.multicall: str | None = None  # runtime code of the aggregator, once enabled
        self.calls = 0  # view calls made through this client

    # ------------------------------------------------------------ transport

    def _connect(self) -> http.client.HTTPConnection:
        connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        connection.connect()
        # Small requests back to back: without this, Nagle's algorithm and delayed ACKs stall each.
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def _post(self, payload) -> object:
        body = json.dumps(payload).encode()  # bytes: http.client then sends headers and body at once
        for attempt in (0, 1):
            try:
                if self._connection is None:
                    self._connection = self._connect()
                self._connection.request("POST", self._path, body, {"Content-Type": "application/json"})
                response = self._connection.getresponse()
                return json.loads(response.read())
            except (http.client.HTTPException, OSError) as error:
                if self._connection is not None:
                    self._connection.close()
                self._connection = None
                if attempt:
                    raise NodeConnectionError(
                        f"the node at {self.uri} broke the connection or stopped answering, on a request of {len(body):,} bytes "
                        f"({type(error).__name__}: {error or 'no answer'})"
                    ) from None

    @property
    def uri(self) -> str:
        return f"http://{self._host}:{self._port}{self._path if self._path != '/' else ''}"

    def request(self, method: str, params: list | None = None):
        """One JSON-RPC request; returns its result, raises RevertError or RpcError."""
        self._id += 1
        answer = self._post({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params or []})
        if "error" in answer:
            raise _error(answer["error"])
        return answer["result"]

    def batch(self, requests: list[tuple[str, list]]) -> list:
        """Several JSON-RPC requests in as few HTTP round trips as the node takes (one per
        MAX_BATCH_BYTES of JSON, in order); each answer is a result or an exception."""
        if not requests:
            return []
        first = self._id + 1
        self._id += len(requests)
        payload = [{"jsonrpc": "2.0", "id": first + i, "method": m, "params": p} for i, (m, p) in enumerate(requests)]
        answers = []
        for chunk in _chunks_by_size(payload, MAX_BATCH_BYTES):
            answers += self._post(chunk)
        by_id = {a["id"]: a for a in answers}
        return [
            _error(by_id[first + i]["error"]) if "error" in by_id[first + i] else by_id[first + i]["result"]
            for i in range(len(requests))
        ]

    # ------------------------------------------------------------ contracts and views

    def contract(self, address: str, abi: list[dict]) -> Contract:
        return Contract(address, abi)

    def read(self, calls: list[Call], block: str = "latest") -> list:
        """Decoded results of view calls. Through the multicall (one `eth_call`, see `read_at`) where
        the node takes state overrides, else as a JSON-RPC batch of `eth_call`s."""
        return self.read_at(calls, block)[1]

    def read_at(self, calls: list[Call], block: str = "latest") -> tuple[int, list]:
        """(block timestamp, decoded results): the views are run by one `eth_call` of a small
        aggregator whose code is supplied as a state override (it is never deployed), so the node
        executes a single call instead of one per view; the timestamp is the one the views saw."""
        if self.multicall is None:
            return self._read_batch(calls, block)
        values, timestamp = [], 0
        for start in range(0, len(calls), MULTICALL_MAX):
            chunk = calls[start:start + MULTICALL_MAX]
            data = "0x" + (MULTICALL_SELECTOR + _encode_multicall(chunk)).hex()
            raw = self.request("eth_call", [{"to": MULTICALL_ADDRESS, "data": data}, block, {MULTICALL_ADDRESS: {"code": self.multicall}}])
            timestamp, outputs = _decode_multicall(bytes.fromhex(raw[2:]))
            values += [call.function.decode(output) for call, output in zip(chunk, outputs)]
        self.calls += len(calls)
        return timestamp, values

    def _read_batch(self, calls: list[Call], block: str) -> tuple[int, list]:
        extra = [("eth_getBlockByNumber", [block, False])]
        requests = [("eth_call", [{"to": c.function.address, "data": c.data}, block]) for c in calls]
        answers = self.batch(requests + list(extra))
        self.calls += len(calls)
        values = []
        for call, answer in zip(calls, answers[: len(calls)]):
            if isinstance(answer, Exception):
                raise answer
            values.append(call.function.decode(bytes.fromhex(answer[2:])))
        return int(answers[-1]["timestamp"], 16), values

    def enable_multicall(self) -> bool:
        """Reads through the multicall from now on if the node supports state overrides (compiles
        it with the Vyper compiler on first use); returns whether it is enabled."""
        try:
            code = multicall_code()
            self.request("eth_call", [{"to": MULTICALL_ADDRESS, "data": "0x" + (MULTICALL_SELECTOR + _encode_multicall([])).hex()},
                                      "latest", {MULTICALL_ADDRESS: {"code": code}}])
        except Exception:
            self.multicall = None
            return False
        self.multicall = code
        return True

    # ------------------------------------------------------------ transactions

    def send(self, sender: str, call: Call, expect_revert: bool = False):
        """Sends `call` from the unlocked `sender`. Expected to succeed: fixed gas, mined, the receipt's
        status checked (a failure is replayed with `eth_call` for its reason and returned as
        RevertError). Expected to revert: no gas limit, the node's estimation refuses it; returns
        the RevertError, or None if it was mined after all."""
        tx = {"from": sender, "to": call.function.address, "data": call.data}
        if expect_revert:
            try:
                self.request("eth_sendTransaction", [tx])
            except RevertError as revert:
                return revert
            self.sent += 1
            return None
        tx["gas"] = hex(self.GAS)
        receipt = self._send_sync(tx)
        self.sent += 1
        self.last_receipt = receipt
        if int(receipt["status"], 16) == 1:
            return None
        # Replay on the state before the block, with the block's own number and time, for the reason.
        block = self.request("eth_getBlockByNumber", [receipt["blockNumber"], False])
        overrides = {"number": block["number"], "time": block["timestamp"]}
        try:
            self.request("eth_call", [tx, hex(int(block["number"], 16) - 1), None, overrides])
        except RevertError as revert:
            return revert
        return RevertError("<mined with status 0; replay did not revert>")

    def _send_sync(self, tx: dict) -> dict:
        """Sends and returns the receipt: `eth_sendTransactionSync` (EIP-7966, one round trip) where
        the node has it, else `eth_sendTransaction` and polling for the receipt."""
        if self._sync:
            try:
                return self.request("eth_sendTransactionSync", [tx])
            except RpcError as error:
                if "-32601" not in str(error) and "not supported" not in str(error).lower():
                    raise
                self._sync = False
        tx_hash = self.request("eth_sendTransaction", [tx])
        while True:
            receipt = self.request("eth_getTransactionReceipt", [tx_hash])
            if receipt is not None:
                return receipt

    def send_many(self, txs: list[tuple[str, Call]]) -> None:
        """Sends transactions one after another (each mined) and requires all to succeed."""
        for sender, call in txs:
            failure = self.send(sender, call)
            if failure is not None:
                raise AssertionError(f"{call.function.name} from {sender}: {failure}")

    # ------------------------------------------------------------ node control

    def block(self) -> tuple[int, int]:
        """(number, timestamp) of the latest block."""
        block = self.request("eth_getBlockByNumber", ["latest", False])
        return int(block["number"], 16), int(block["timestamp"], 16)

    def snapshot(self) -> str:
        return self.request("evm_snapshot")

    def revert(self, snapshot_id: str) -> None:
        if not self.request("evm_revert", [snapshot_id]):
            raise RpcError(f"evm_revert({snapshot_id}) failed")

    def set_block_interval(self, seconds: int | None) -> None:
        """Every new block `seconds` after the previous one (None: back to wall-clock time)."""
        if seconds is None:
            self.request("anvil_removeBlockTimestampInterval")
        else:
            self.request("anvil_setBlockTimestampInterval", [seconds])

    def mine_at(self, timestamp: int) -> None:
        """Mines one empty block with exactly `timestamp`."""
        self.request("evm_mine", [timestamp])


# ---------------------------------------------------------------- multicall

MULTICALL_SOURCE = """
# pragma version ~=0.4.3
MAX_CALLS: constant(uint256) = 256

@external
@view
def aggregate(targets: DynArray[address, MAX_CALLS], calls: DynArray[Bytes[260], MAX_CALLS]) -> (uint256, DynArray[Bytes[384], MAX_CALLS]):
    results: DynArray[Bytes[384], MAX_CALLS] = []
    for i: uint256 in range(len(targets), bound=MAX_CALLS):
        results.append(raw_call(targets[i], calls[i], max_outsize=384, is_static_call=True))
    return block.timestamp, results
"""
MULTICALL_ADDRESS = "0x000000000000000000000000000000000000ca11"
MULTICALL_SELECTOR = keccak(text="aggregate(address[],bytes[])")[:4]
MULTICALL_MAX = 256


@functools.lru_cache(maxsize=1)
def multicall_code() -> str:
    import vyper  # the compiler ape-vyper uses; only needed for fast reads

    return vyper.compile_code(MULTICALL_SOURCE, output_formats=["bytecode_runtime"])["bytecode_runtime"]


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


@functools.lru_cache(maxsize=8192)
def _call_words(call: Call) -> tuple[bytes, bytes]:
    """A call's target word and its calldata as an ABI `bytes` tail (length, padded data); cached
    because a state machine reads the same few hundred calls after every step."""
    payload = bytes.fromhex(call.data[2:])
    return bytes(12) + bytes.fromhex(call.function.address[2:]), _word(len(payload)) + payload + bytes(-len(payload) % 32)


def _encode_multicall(calls: list[Call]) -> bytes:
    """ABI encoding of (address[], bytes[]) by hand: eth_abi is slow for hundreds of items."""
    n = len(calls)
    words = [_call_words(c) for c in calls]
    targets = b"".join(target for target, _ in words)
    offsets, tails, position = [], [], 32 * n
    for _, tail in words:
        offsets.append(_word(position))
        tails.append(tail)
        position += len(tail)
    array_a = _word(n) + targets
    array_b = _word(n) + b"".join(offsets) + b"".join(tails)
    return _word(64) + _word(64 + len(array_a)) + array_a + array_b


def _decode_multicall(data: bytes) -> tuple[int, list[bytes]]:
    """ABI decoding of (uint256, bytes[]) by hand."""
    timestamp = int.from_bytes(data[0:32], "big")
    start = int.from_bytes(data[32:64], "big")
    n = int.from_bytes(data[start:start + 32], "big")
    base = start + 32
    outputs = []
    for i in range(n):
        offset = base + int.from_bytes(data[base + 32 * i: base + 32 * i + 32], "big")
        length = int.from_bytes(data[offset:offset + 32], "big")
        outputs.append(data[offset + 32: offset + 32 + length])
    return timestamp, outputs


def _chunks_by_size(payload: list[dict], limit: int) -> list[list[dict]]:
    """`payload` cut, in order, into lists whose JSON is at most about `limit` bytes (a single
    request larger than that goes alone)."""
    chunks, chunk, size = [], [], 0
    for request in payload:
        length = len(json.dumps(request)) + 2
        if chunk and size + length > limit:
            chunks.append(chunk)
            chunk, size = [], 0
        chunk.append(request)
        size += length
    return chunks + [chunk] if chunk else chunks


def _error(error: dict) -> Exception:
    data = error.get("data")
    message = error.get("message", "")
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        return RevertError(revert_reason(bytes.fromhex(data[2:])), bytes.fromhex(data[2:]))
    if "revert" in message:
        reason = message.split("execution reverted:", 1)[1].strip() if "execution reverted:" in message else ""
        return RevertError(reason)
    return RpcError(f"{error.get('code')}: {message} {data or ''}".strip())
