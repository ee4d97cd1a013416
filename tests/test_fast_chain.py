"""The raw JSON-RPC client (backstop/chain/fast_chain.py) and the event decoder (backstop/chain/events.py):
hand-rolled encoding and decoding equal eth_abi's, batches larger than Anvil takes are split, a
node that breaks the connection is reported in one sentence that click will print, and neither a
private node nor ape's (through bin/backstop's wrapper) leaves past states on disk behind."""

import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

from backstop.chain.anvil import PrivateAnvil, free_port, private_chain
from backstop.chain.events import EventDecoder
from backstop.chain.fast_chain import MAX_BATCH_BYTES, FastChain, Function, NodeConnectionError, _chunks_by_size

INPUTS = ["address", "uint256", "int128", "bool", "bytes32", "uint8"]


def random_args(rng):
    return ("0x%040x" % rng.getrandbits(160), rng.getrandbits(256), rng.randint(-2**127, 2**127 - 1), rng.random() < 0.5,
            bytes(rng.getrandbits(8) for _ in range(32)), rng.randint(0, 255))


def test_word_encoding_equals_eth_abi():
    function = Function("0x" + "11" * 20, {"name": "f", "inputs": [{"type": t} for t in INPUTS], "outputs": []})
    rng = random.Random(3)
    for _ in range(500):
        args = random_args(rng)
        assert function.encode(*args) == "0x" + (function.selector + abi_encode(INPUTS, args)).hex()


@pytest.mark.parametrize("position, value", [(1, -1), (2, 2**127), (5, 256), (3, 1), (0, "0x12")])
def test_word_encoding_refuses_what_eth_abi_refuses(position, value):
    function = Function("0x" + "11" * 20, {"name": "f", "inputs": [{"type": t} for t in INPUTS], "outputs": []})
    args = list(random_args(random.Random(1)))
    args[position] = value
    with pytest.raises((ValueError, TypeError)):
        function.encode(*args)


@pytest.mark.parametrize("outputs", [
    ["uint256"], ["int128"], ["address"], ["bool"], ["int256", "uint256", "int256"],
    ["(uint256,int256,bool,address)"], ["(uint256,int256)", "bool"], ["uint256[]"], ["string"],
])
def test_output_decoding_equals_eth_abi(outputs):
    """Each shape of the hand-rolled decoders (one word, several words, one struct, a struct beside
    a word) and eth_abi's own path give eth_abi's values: one value alone, several as a tuple."""
    function = Function("0x" + "11" * 20, {"name": "f", "inputs": [], "outputs": [{"type": "tuple", "components": [{"type": t} for t in o[1:-1].split(",")]}
                                                                                  if o.startswith("(") else {"type": o} for o in outputs]})
    rng = random.Random(7)
    for _ in range(100):
        values = [_random_value(rng, kind) for kind in function.outputs]
        expected = tuple(values) if len(values) > 1 else values[0]
        decoded = function.decode(abi_encode(function.outputs, values))
        assert decoded == expected and type(decoded) is type(expected)


def _random_value(rng, kind: str):
    if kind.startswith("("):
        return tuple(_random_value(rng, part) for part in kind[1:-1].split(","))
    return {"uint256": lambda: rng.getrandbits(256), "int128": lambda: rng.randint(-2**127, 2**127 - 1),
            "int256": lambda: rng.randint(-2**255, 2**255 - 1), "bool": lambda: rng.random() < 0.5,
            "address": lambda: to_checksum_address("0x%040x" % rng.getrandbits(160)), "uint256[]": lambda: tuple(rng.getrandbits(256) for _ in range(3)),
            "string": lambda: "x" * rng.randint(0, 40)}[kind]()


def test_event_decoding_of_one_word_fields_equals_eth_abi():
    abi = [{"type": "event", "name": "Hit", "inputs": [
        {"name": "account", "type": "address", "indexed": True}, {"name": "market", "type": "uint256", "indexed": True},
        {"name": "winner", "type": "address", "indexed": False}, {"name": "size", "type": "int256", "indexed": False},
        {"name": "paid", "type": "bool", "indexed": False}]}]
    decoder = EventDecoder("0x" + "22" * 20, abi)
    topic = "0x" + keccak(text="Hit(address,uint256,address,int256,bool)").hex()
    rng = random.Random(5)
    for _ in range(200):
        account, winner = "0x%040x" % rng.getrandbits(160), "0x%040x" % rng.getrandbits(160)
        market, size, paid = rng.getrandbits(64), rng.randint(-2**255, 2**255 - 1), rng.random() < 0.5
        log = {"address": "0x" + "22" * 20, "topics": [topic, "0x" + abi_encode(["address"], [account]).hex(), "0x" + abi_encode(["uint256"], [market]).hex()],
               "data": "0x" + abi_encode(["address", "int256", "bool"], [winner, size, paid]).hex()}
        assert decoder.decode([log]) == [("Hit", {"account": to_checksum_address(account), "market": market,
                                                  "winner": to_checksum_address(winner), "size": size, "paid": paid})]


def test_batches_are_cut_in_order_below_the_limit():
    payload = [{"id": i, "params": ["x" * rng_size]} for i, rng_size in enumerate([10, 500, 20, 900, 5, 300])]
    chunks = _chunks_by_size(payload, 1000)
    assert [request for chunk in chunks for request in chunk] == payload
    assert all(len(str(chunk)) < 1100 or len(chunk) == 1 for chunk in chunks) and len(chunks) > 1


def test_a_batch_larger_than_anvil_takes_goes_through():
    with private_chain() as chain:
        # calls to an address without code, each carrying 4 kB of calldata: about three times the limit
        requests = [("eth_call", [{"to": "0x" + "33" * 20, "data": "0x" + "00" * 4_000}, "latest"]) for _ in range(3 * MAX_BATCH_BYTES // 8_000)]
        assert chain.batch(requests) == ["0x"] * len(requests)


def test_a_node_that_breaks_the_connection_is_one_sentence_and_not_an_os_error():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def hang_up():
        for _ in range(2):  # the client retries once
            connection, _ = server.accept()
            connection.recv(1024)
            connection.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    with pytest.raises(NodeConnectionError) as raised:
        FastChain(f"http://127.0.0.1:{port}", timeout=5).request("eth_chainId")
    thread.join(5)
    server.close()
    assert not isinstance(raised.value, OSError)
    message = str(raised.value)
    assert message.startswith(f"the node at http://127.0.0.1:{port} broke the connection") and "\n" not in message


def test_a_private_node_leaves_no_past_states_on_disk():
    """Anvil writes past states to disk after a few thousand blocks; a private node keeps them in a
    folder of its own that goes when it closes (left to itself, Anvil leaves them in
    ~/.foundry/anvil/tmp, hundreds of MB per state-machine run)."""
    with PrivateAnvil() as node:
        _mine_past_states(FastChain(node.uri))
        states = Path(node.states.name)
        assert any(states.iterdir()), "Anvil persisted no past state: the test no longer exercises the cleanup"
    assert not states.exists()


def test_the_venvs_anvil_keeps_past_states_in_the_project_until_bin_backstop_clears_them():
    """ape starts .venv/bin/anvil, bin/backstop's wrapper: the node's past states go to
    .anvil-states/<pid> in the project (not ~/.foundry/anvil/tmp, where nothing removes them), and
    bin/backstop removes that folder once the node has stopped."""
    root = Path(__file__).resolve().parents[1]
    port = free_port()
    node = subprocess.Popen([str(Path(sys.executable).parent / "anvil"), "--port", str(port), "--silent"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        chain = FastChain(f"http://127.0.0.1:{port}")
        for _ in range(100):
            try:
                chain.request("eth_chainId")
                break
            except NodeConnectionError:
                time.sleep(0.1)  # the node is still starting
        _mine_past_states(chain)
        states = root / ".anvil-states" / str(node.pid)
        assert any(states.iterdir()), "Anvil persisted no past state: the test no longer exercises the cleanup"
    finally:
        node.terminate()
        node.wait()
    subprocess.run([str(root / "bin" / "backstop"), "setup"], check=True, capture_output=True, timeout=120)
    assert not states.exists()


def _mine_past_states(chain: FastChain) -> None:
    """3,000 blocks that each change the state: enough for Anvil to write past states to disk."""
    for part in range(20):
        chain.batch([call for i in range(150) for call in (
            ("anvil_setBalance", ["0x" + f"{part * 1_000 + i + 1:040x}", "0x1000"]), ("evm_mine", []))])
