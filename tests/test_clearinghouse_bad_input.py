"""Clearinghouse: bad input is refused with a clear reason and changes nothing (design invariant 8).

Each negative test takes a `snapshot` of every piece of state a fill, cancel, liquidation or setter
could touch, makes the bad call under `ape.reverts(reason)` and asserts the snapshot is unchanged.
A few positive tests pin down the behaviour the negative ones lean on: partial fills, batches and
cancellation.
"""

import dataclasses

import ape
import pytest
from eth_keys import keys
from eth_utils.abi import get_abi_output_types
from hexbytes import HexBytes

from backstop.chain.orders import domain_separator, fill_tuple, order_digest, order_tuple, sign_order
from backstop.model.protocol import MarketParams, Order
from conftest import BTC, ETH, SOL, USDC, WAD

BTC_PRICE = 100_000 * WAD
ETH_PRICE = 4_000 * WAD
NOT_OWNER = "ownable: caller is not the owner"
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


# ---------------------------------------------------------------- helpers

def sign_with(order: Order, private_key: str, separator: bytes) -> tuple:
    """Signs `order` with any key, whether or not it owns `order.account` (sign_order refuses that)."""
    key = keys.PrivateKey(bytes.fromhex(private_key.removeprefix("0x")))
    signature = key.sign_msg_hash(order_digest(order, separator))
    return (order_tuple(order), signature.v + 27, signature.r, signature.s)


def with_order(signed: tuple, order: Order) -> tuple:
    """The same signature over a different order (a tampered field)."""
    return (order_tuple(order), *signed[1:])


def tuple_of(struct) -> tuple:
    return tuple(struct)


@pytest.fixture
def accounts_of_interest(alice, bob, carol, dave, liquidator, insurance, stranger):
    return (alice, bob, carol, dave, liquidator, insurance, stranger)


@pytest.fixture(scope="module")
def read_batch(chain, clearinghouse, liquidation, pool):
    """Reads many views in one JSON-RPC batch: `read_batch({key: (contract_name, function, *args)})`
    returns `{key: value}`. A snapshot reads some 60 values; one by one through ape that is a second."""
    web3 = chain.provider.web3

    def functions(contract):
        abi = [item.model_dump(mode="json", by_alias=True) for item in contract.contract_type.abi]
        return web3.eth.contract(address=contract.address, abi=abi).functions

    contracts = {"clearinghouse": functions(clearinghouse), "liquidation": functions(liquidation), "pool": functions(pool)}

    def read_batch(calls: dict) -> dict:
        bound = {key: getattr(contracts[name], fn)(*args) for key, (name, fn, *args) in calls.items()}
        requests = [("eth_call", [{"to": f.address, "data": f._encode_transaction_data()}, "latest"]) for f in bound.values()]
        responses = web3.provider.make_batch_request(requests)
        assert isinstance(responses, list), responses
        values = {}
        for (key, f), response in zip(bound.items(), responses):
            decoded = web3.codec.decode(get_abi_output_types(f.abi), HexBytes(response["result"]))
            values[key] = decoded[0] if len(decoded) == 1 else tuple(decoded)
        return values

    return read_batch


@pytest.fixture
def snapshot_state(read_batch, signer, accounts_of_interest):
    """Reads every piece of state the calls under test could touch into one comparable dict:
    positions, open-market masks, bankruptcy flags, pool balances and totals, open interest,
    funding, the fill counters of the given orders and all parameters."""
    accounts = [a.address for a in accounts_of_interest]

    def snapshot_state(*orders: Order, markets=(BTC, ETH, SOL)) -> dict:
        calls = {("market_count",): ("clearinghouse", "market_count")}
        for a in accounts:
            calls[("open_markets", a)] = ("clearinghouse", "open_markets", a)
            calls[("bankrupt", a)] = ("clearinghouse", "bankrupt", a)
            calls[("balance", a)] = ("pool", "balance_of", a)
            for m in markets:
                calls[("position", a, m)] = ("clearinghouse", "positions", a, m)
        for m in markets:
            for fn in ("long_open_interest", "short_open_interest", "funding_index", "funding_updated_at"):
                calls[(fn, m)] = ("clearinghouse", fn, m)
        for m in range(16):
            calls[("market_params", m)] = ("clearinghouse", "markets", m)
        for o in orders:
            calls[("filled_size", o)] = ("clearinghouse", "filled_size", order_tuple(o))
        calls[("insurance_account",)] = ("clearinghouse", "insurance_account")
        for fn in ("liquidation_discount", "liquidation_penalty", "backstop_ratio"):
            calls[(fn,)] = ("liquidation", fn)
        for fn in ("total_deposited", "total_withdrawn", "total_held"):
            calls[(fn,)] = ("pool", fn)
        return read_batch(calls)

    return snapshot_state


@pytest.fixture(scope="module", autouse=True)
def funded(owner, token, pool, alice, bob, carol, liquidator):
    """alice, bob, carol and the liquidator with 100,000 collateral each in the pool, once per module
    (ape's isolation reverts every test to this state); dave and stranger start empty."""
    amount = 100_000 * USDC
    token.mint(owner, 4 * amount, sender=owner)
    token.approve(pool, 4 * amount, sender=owner)
    for account in (alice, bob, carol, liquidator):
        pool.deposit_for(account, amount, sender=owner)


@pytest.fixture(scope="session")
def dave(accounts):
    """A trader whose collateral each test chooses."""
    return accounts[8]


@pytest.fixture
def filled(clearinghouse, signer):
    """Units filled of `order` as the clearinghouse counts them."""

    def filled(order: Order) -> int:
        return clearinghouse.filled_size(order_tuple(order))

    return filled


def settle(clearinghouse, fills, sender):
    return clearinghouse.settle_fills(fills, sender=sender)


def market_params(config, market=BTC, **changes) -> tuple:
    names = [field.name for field in dataclasses.fields(MarketParams)]
    params = dict(zip(names, config.markets[market].params(), strict=True))
    params.update(changes)
    return tuple(params[name] for name in names)


# ---------------------------------------------------------------- sanity of the helpers

def test_order_hash__matches_python_digest(clearinghouse, signer, alice, expiry):
    order = signer.order(alice.address, BTC, WAD, BTC_PRICE, expiry)
    assert clearinghouse.order_hash(order_tuple(order)) == order_digest(order, signer.separator)


# ---------------------------------------------------------------- signatures

def test_settle_fills__signed_by_someone_else(clearinghouse, signer, snapshot_state, alice, bob, stranger, expiry):
    buy = signer.order(alice.address, BTC, WAD // 10, BTC_PRICE, expiry)
    sell = signer.order(bob.address, BTC, -(WAD // 10), BTC_PRICE, expiry)
    forged = sign_with(buy, bob.private_key, signer.separator)  # bob signs alice's order
    before = snapshot_state(buy, sell)
    with ape.reverts("Clearinghouse: bad signature"):
        settle(clearinghouse, [fill_tuple(forged, signer.sign(sell), WAD // 10, BTC_PRICE)], stranger)
    assert snapshot_state(buy, sell) == before


def test_settle_fills__tampered_field(clearinghouse, signer, snapshot_state, alice, bob, stranger, expiry):
    size = WAD // 10
    # alice short, bob long: a reduce-only buy by alice would otherwise be valid too
    settle(clearinghouse, [signer.fill(bob.address, alice.address, BTC, size, BTC_PRICE, expiry).abi], stranger)
    tampering = [
        ("size", WAD),  # more than signed
        ("limit_price", BTC_PRICE + WAD),  # a worse limit
        ("nonce", 10**9),
        ("expiry", 2**64),
        ("reduce_only", True),
        ("market", ETH),
    ]
    for field, value in tampering:
        price = ETH_PRICE if field == "market" else BTC_PRICE
        buy = signer.order(alice.address, BTC, size, price, expiry)
        tampered = Order(**{**buy.__dict__, field: value})
        sell = signer.order(bob.address, tampered.market, -size, price, expiry)
        before = snapshot_state(buy, tampered, sell)
        with ape.reverts("Clearinghouse: bad signature"):
            settle(clearinghouse, [fill_tuple(with_order(signer.sign(buy), tampered), signer.sign(sell), size, price)], stranger)
        assert snapshot_state(buy, tampered, sell) == before, field


def test_settle_fills__tampered_account(clearinghouse, signer, snapshot_state, alice, bob, carol, stranger, expiry):
    # carol signs her own order, someone swaps in alice as the account
    size = WAD // 10
    own = signer.order(carol.address, BTC, size, BTC_PRICE, expiry)
    stolen = Order(**{**own.__dict__, "account": alice.address})
    sell = signer.order(bob.address, BTC, -size, BTC_PRICE, expiry)
    before = snapshot_state(own, stolen, sell)
    with ape.reverts("Clearinghouse: bad signature"):
        settle(clearinghouse, [fill_tuple(with_order(signer.sign(own), stolen), signer.sign(sell), size, BTC_PRICE)], stranger)
    assert snapshot_state(own, stolen, sell) == before


def test_settle_fills__tampered_signature(clearinghouse, signer, snapshot_state, alice, bob, stranger, expiry):
    size = WAD // 10
    buy = signer.order(alice.address, BTC, size, BTC_PRICE, expiry)
    sell = signer.order(bob.address, BTC, -size, BTC_PRICE, expiry)
    order, v, r, s = signer.sign(buy)
    tampering = [
        ((v, r, (s + 1) % SECP256K1_N), "Clearinghouse: bad signature"),
        ((55 - v, r, s), "Clearinghouse: bad signature"),  # the other recovery id: another signer
        ((55 - v, r, SECP256K1_N - s), "ecdsa: invalid signature `s` value"),  # malleated high-s twin
        ((v, 0, s), "ecdsa: invalid signature"),
        ((0, r, s), "ecdsa: invalid signature"),
    ]
    before = snapshot_state(buy, sell)
    for vrs, reason in tampering:
        with ape.reverts(reason):
            settle(clearinghouse, [fill_tuple((order, *vrs), signer.sign(sell), size, BTC_PRICE)], stranger)
    assert snapshot_state(buy, sell) == before


def wrong_domain_is_refused(clearinghouse, signer, snapshot_state, alice, bob, stranger, expiry, wrong_separator):
    """An order signed under `wrong_separator` is refused; the same order signed right settles."""
    assert wrong_separator != signer.separator
    size = WAD // 10
    buy = signer.order(alice.address, BTC, size, BTC_PRICE, expiry)
    sell = signer.order(bob.address, BTC, -size, BTC_PRICE, expiry)
    before = snapshot_state(buy, sell)
    with ape.reverts("Clearinghouse: bad signature"):
        settle(clearinghouse, [fill_tuple(sign_order(buy, alice.private_key, wrong_separator), signer.sign(sell), size, BTC_PRICE)], stranger)
    assert snapshot_state(buy, sell) == before
    settle(clearinghouse, [fill_tuple(sign_order(buy, alice.private_key, signer.separator), signer.sign(sell), size, BTC_PRICE)], stranger)
    assert clearinghouse.positions(alice, BTC).size == size


def test_settle_fills__wrong_chain_id(clearinghouse, chain, signer, snapshot_state, alice, bob, stranger, expiry):
    wrong = domain_separator(chain.chain_id + 1, clearinghouse.address)
    wrong_domain_is_refused(clearinghouse, signer, snapshot_state, alice, bob, stranger, expiry, wrong)


def test_settle_fills__wrong_verifying_contract(clearinghouse, pool, chain, signer, snapshot_state, alice, bob, stranger, expiry):
    wrong = domain_separator(chain.chain_id, pool.address)
    wrong_domain_is_refused(clearinghouse, signer, snapshot_state, alice, bob, stranger, expiry, wrong)


def test_settle_fills__wrong_domain_name_or_version(clearinghouse, chain, signer, snapshot_state, alice, bob, stranger, expiry):
    size = WAD // 10
    buy = signer.order(alice.address, BTC, size, BTC_PRICE, expiry)
    sell = signer.order(bob.address, BTC, -size, BTC_PRICE, expiry)
    before = snapshot_state(buy, sell)
    for name, version in (("Frontstop", "1"), ("Backstop", "2")):
        wrong = domain_separator(chain.chain_id, clearinghouse.address, name, version)
        with ape.reverts("Clearinghouse: bad signature"):
            settle(clearinghouse, [fill_tuple(sign_order(buy, alice.private_key, wrong), signer.sign(sell), size, BTC_PRICE)], stranger)
    assert snapshot_state(buy, sell) == before


# ---------------------------------------------------------------- replay, expiry, remaining size

def test_settle_fills__replayed_order(clearinghouse, signer, snapshot_state, alice, bob, stranger, expiry):
    fill = signer.fill(alice.address, bob.address, BTC, WAD // 10, BTC_PRICE, expiry)
    settle(clearinghouse, [fill.abi], stranger)
    before = snapshot_state(fill.buy, fill.sell)
    assert before[("filled_size", fill.buy)] == before[("filled_size", fill.sell)] == WAD // 10
    with ape.reverts("Clearinghouse: fill exceeds order remaining"):
        settle(clearinghouse, [fill.abi], stranger)
    # the same fully filled buy against a fresh sell is refused too
    sell = signer.order(bob.address, BTC, -(WAD // 10), BTC_PRICE, expiry)
    with ape.reverts("Clearinghouse: fill exceeds order remaining"):
        settle(clearinghouse, [fill_tuple(fill.abi[0], signer.sign(sell), WAD // 10, BTC_PRICE)], stranger)
    assert snapshot_state(fill.buy, fill.sell) == before


def test_settle_fills__replay_within_one_batch(clearinghouse, signer, snapshot_state, alice, bob, stranger, expiry):
    fill = signer.fill(alice.address, bob.address, BTC, WAD // 10, BTC_PRICE, expiry)
    before = snapshot_state(fill.buy, fill.sell)
    with ape.reverts("Clearinghouse: fill exceeds order remaining"):
        settle(clearinghouse, [fill.abi, fill.abi], stranger)
    assert snapshot_state(fill.buy, fill.sell) == before


def test_settle_fills__expired_order(clearinghouse, chain, signer, snapshot_state, alice, bob, stranger, expiry):
    size = WAD // 10
    short_expiry = chain.pending_timestamp + 60
    expiries = ((short_expiry, expiry), (expiry, short_expiry))  # the buy, then the sell expires
    signed = []
    for buy_expiry, sell_expiry in expiries:
        buy = signer.order(alice.address, BTC, size, BTC_PRICE, buy_expiry)
        sell = signer.order(bob.address, BTC, -size, BTC_PRICE, sell_expiry)
        signed.append((buy, sell, fill_tuple(signer.sign(buy), signer.sign(sell), size, BTC_PRICE)))
    chain.mine(timestamp=short_expiry + 1)
    for buy, sell, fill in signed:
        before = snapshot_state(buy, sell)
        with ape.reverts("Clearinghouse: order expired"):
            settle(clearinghouse, [fill], stranger)
        assert snapshot_state(buy, sell) == before


def test_settle_fills__fills_at_expiry(clearinghouse, chain, signer, alice, bob, stranger, expiry):
    size = WAD // 10
    at = chain.pending_timestamp + 60
    buy = signer.order(alice.address, BTC, size, BTC_PRICE, at)
    sell = signer.order(bob.address, BTC, -size, BTC_PRICE, at)
    chain.pending_timestamp = at
    receipt = settle(clearinghouse, [fill_tuple(signer.sign(buy), signer.sign(sell), size, BTC_PRICE)], stranger)
    assert receipt.timestamp == at
    assert clearinghouse.positions(alice, BTC).size == size


def test_settle_fills__beyond_remaining(clearinghouse, signer, snapshot_state, filled, alice, bob, carol, stranger, expiry):
    buy = signer.order(alice.address, BTC, WAD, BTC_PRICE, expiry)
    bob_sell = signer.order(bob.address, BTC, -(6 * WAD // 10), BTC_PRICE, expiry)
    carol_sell = signer.order(carol.address, BTC, -WAD, BTC_PRICE, expiry)
    settle(clearinghouse, [fill_tuple(signer.sign(buy), signer.sign(bob_sell), 6 * WAD // 10, BTC_PRICE)], stranger)
    assert filled(buy) == 6 * WAD // 10

    before = snapshot_state(buy, bob_sell, carol_sell)
    with ape.reverts("Clearinghouse: fill exceeds order remaining"):
        settle(clearinghouse, [fill_tuple(signer.sign(buy), signer.sign(carol_sell), 4 * WAD // 10 + 1, BTC_PRICE)], stranger)
    assert snapshot_state(buy, bob_sell, carol_sell) == before

    # exactly the rest fills
    settle(clearinghouse, [fill_tuple(signer.sign(buy), signer.sign(carol_sell), 4 * WAD // 10, BTC_PRICE)], stranger)
    assert filled(buy) == WAD
    assert filled(carol_sell) == 4 * WAD // 10
    assert clearinghouse.positions(alice, BTC).size == WAD


def test_settle_fills__fill_larger_than_order(clearinghouse, signer, snapshot_state, alice, bob, stranger, expiry):
    buy = signer.order(alice.address, BTC, WAD // 10, BTC_PRICE, expiry)
    sell = signer.order(bob.address, BTC, -WAD, BTC_PRICE, expiry)
    before = snapshot_state(buy, sell)
    with ape.reverts("Clearinghouse: fill exceeds order remaining"):
        settle(clearinghouse, [fill_tuple(signer.sign(buy), signer.sign(sell), WAD // 10 + 1, BTC_PRICE)], stranger)
    assert snapshot_state(buy, sell) == before


# ---------------------------------------------------------------- prices

def test_settle_fills__price_outside_band(clearinghouse, signer, snapshot_state, alice, bob, stranger, expiry):
    band = clearinghouse.markets(BTC).price_band
    size = WAD // 10
    buy = signer.order(alice.address, BTC, size, 2 * BTC_PRICE, expiry)
    sell = signer.order(bob.address, BTC, -size, BTC_PRICE // 2, expiry)
    edges = {direction: BTC_PRICE + direction * (band * BTC_PRICE // WAD) for direction in (1, -1)}
    before = snapshot_state(buy, sell)
    for direction, edge in edges.items():
        with ape.reverts("Clearinghouse: price outside band"):
            settle(clearinghouse, [fill_tuple(signer.sign(buy), signer.sign(sell), size, edge + direction)], stranger)
    assert snapshot_state(buy, sell) == before
    # exactly at either edge of the band settles
    for edge in edges.values():
        settle(clearinghouse, [fill_tuple(signer.sign(buy), signer.sign(sell), size // 2, edge)], stranger)
    assert clearinghouse.positions(alice, BTC).size == size


def test_settle_fills__price_above_buy_limit(clearinghouse, signer, snapshot_state, alice, bob, stranger, expiry):
    size = WAD // 10
    buy = signer.order(alice.address, BTC, size, BTC_PRICE, expiry)
    sell = signer.order(bob.address, BTC, -size, BTC_PRICE - 1_000 * WAD, expiry)
    before = snapshot_state(buy, sell)
    with ape.reverts("Clearinghouse: price above buy limit"):
        settle(clearinghouse, [fill_tuple(signer.sign(buy), signer.sign(sell), size, BTC_PRICE + 1)], stranger)
    assert snapshot_state(buy, sell) == before


def test_settle_fills__price_below_sell_limit(clearinghouse, signer, snapshot_state, alice, bob, stranger, expiry):
    size = WAD // 10
    buy = signer.order(alice.address, BTC, size, BTC_PRICE + 1_000 * WAD, expiry)
    sell = signer.order(bob.address, BTC, -size, BTC_PRICE, expiry)
    before = snapshot_state(buy, sell)
    with ape.reverts("Clearinghouse: price below sell limit"):
        settle(clearinghouse, [fill_tuple(signer.sign(buy), signer.sign(sell), size, BTC_PRICE - 1)], stranger)
    assert snapshot_state(buy, sell) == before


def test_settle_fills__stale_oracle(clearinghouse, oracle, chain, keeper, signer, snapshot_state, alice, bob, stranger, expiry):
    fill = signer.fill(alice.address, bob.address, BTC, WAD // 10, BTC_PRICE, expiry)
    chain.mine(deltatime=oracle.staleness() + 1)
    before = snapshot_state(fill.buy, fill.sell)
    with ape.reverts("Oracle: stale price"):
        settle(clearinghouse, [fill.abi], stranger)
    assert snapshot_state(fill.buy, fill.sell) == before
    # a keeper update makes the same fill valid again
    oracle.set_prices(BTC, BTC_PRICE, BTC_PRICE, sender=keeper)
    settle(clearinghouse, [fill.abi], stranger)
    assert clearinghouse.positions(alice, BTC).size == WAD // 10


def test_settle_fills__stale_price_of_another_open_market(clearinghouse, oracle, chain, keeper, signer, snapshot_state, alice, bob, stranger, expiry):
    # alice holds ETH; once ETH is stale she cannot add BTC risk even with a fresh BTC price
    settle(clearinghouse, [signer.fill(alice.address, bob.address, ETH, WAD, ETH_PRICE, expiry).abi], stranger)
    chain.mine(deltatime=oracle.staleness() + 1)
    oracle.set_prices(BTC, BTC_PRICE, BTC_PRICE, sender=keeper)
    fill = signer.fill(alice.address, bob.address, BTC, WAD // 10, BTC_PRICE, expiry)
    before = snapshot_state(fill.buy, fill.sell)
    with ape.reverts("Oracle: stale price"):
        settle(clearinghouse, [fill.abi], stranger)
    assert snapshot_state(fill.buy, fill.sell) == before


def test_settle_fills__paused_market(clearinghouse, oracle, owner, signer, snapshot_state, alice, bob, stranger, expiry):
    oracle.set_paused(BTC, True, sender=owner)
    fill = signer.fill(alice.address, bob.address, BTC, WAD // 10, BTC_PRICE, expiry)
    before = snapshot_state(fill.buy, fill.sell)
    with ape.reverts("Oracle: market paused"):
        settle(clearinghouse, [fill.abi], stranger)
    assert snapshot_state(fill.buy, fill.sell) == before
    # other markets still trade; resuming lets the same fill through
    settle(clearinghouse, [signer.fill(alice.address, bob.address, ETH, WAD, ETH_PRICE, expiry).abi], stranger)
    oracle.set_paused(BTC, False, sender=owner)
    settle(clearinghouse, [fill.abi], stranger)
    assert clearinghouse.positions(alice, BTC).size == WAD // 10


def test_settle_fills__unknown_market(clearinghouse, signer, snapshot_state, alice, bob, stranger, expiry):
    for market in (3, 15, 16, 2**256 - 1):
        fill = signer.fill(alice.address, bob.address, market, WAD // 10, BTC_PRICE, expiry)
        before = snapshot_state(fill.buy, fill.sell)
        with ape.reverts("Clearinghouse: unknown market"):
            settle(clearinghouse, [fill.abi], stranger)
        assert snapshot_state(fill.buy, fill.sell) == before, market


def test_settle_fills__listed_market_without_feed(clearinghouse, configurator, owner, config, signer, snapshot_state, alice, bob, stranger, expiry):
    market = clearinghouse.market_count()
    configurator.list_market(market_params(config), sender=owner)
    fill = signer.fill(alice.address, bob.address, market, WAD, 10 * WAD, expiry)
    before = snapshot_state(fill.buy, fill.sell, markets=(BTC, ETH, SOL, market))
    with ape.reverts("Oracle: unknown market"):
        settle(clearinghouse, [fill.abi], stranger)
    assert snapshot_state(fill.buy, fill.sell, markets=(BTC, ETH, SOL, market)) == before


# ---------------------------------------------------------------- malformed fills

def test_settle_fills__self_trade(clearinghouse, signer, snapshot_state, alice, stranger, expiry):
    fill = signer.fill(alice.address, alice.address, BTC, WAD // 10, BTC_PRICE, expiry)
    before = snapshot_state(fill.buy, fill.sell)
    with ape.reverts("Clearinghouse: self-trade"):
        settle(clearinghouse, [fill.abi], stranger)
    assert snapshot_state(fill.buy, fill.sell) == before


def test_settle_fills__malformed(clearinghouse, signer, snapshot_state, alice, bob, stranger, expiry):
    cases = [
        (WAD, -WAD, 0, BTC, "Clearinghouse: zero fill"),
        (-WAD, -WAD, WAD, BTC, "Clearinghouse: buy order must have positive size"),
        (0, -WAD, WAD, BTC, "Clearinghouse: buy order must have positive size"),
        (WAD, WAD, WAD, BTC, "Clearinghouse: sell order must have negative size"),
        (WAD, 0, WAD, BTC, "Clearinghouse: sell order must have negative size"),
        (WAD, -WAD, WAD, ETH, "Clearinghouse: orders for different markets"),
    ]
    for buy_size, sell_size, fill_size, sell_market, reason in cases:
        buy = signer.order(alice.address, BTC, buy_size, BTC_PRICE, expiry)
        sell = signer.order(bob.address, sell_market, sell_size, BTC_PRICE, expiry)
        before = snapshot_state(buy, sell)
        with ape.reverts(reason):
            settle(clearinghouse, [fill_tuple(signer.sign(buy), signer.sign(sell), fill_size, BTC_PRICE)], stranger)
        assert snapshot_state(buy, sell) == before, reason


# ---------------------------------------------------------------- margin and risk limits

def test_settle_fills__below_initial_margin(clearinghouse, signer, snapshot_state, fund, dave, bob, stranger, expiry):
    fund(dave, 1_000 * USDC)  # exactly the initial margin of 0.1 BTC at 100,000 and 10%
    too_big = signer.fill(dave.address, bob.address, BTC, WAD // 10 + 1, BTC_PRICE, expiry)
    before = snapshot_state(too_big.buy, too_big.sell)
    with ape.reverts("Clearinghouse: below initial margin"):
        settle(clearinghouse, [too_big.abi], stranger)
    assert snapshot_state(too_big.buy, too_big.sell) == before

    # for the seller too
    too_big = signer.fill(bob.address, dave.address, BTC, WAD // 10 + 1, BTC_PRICE, expiry)
    before = snapshot_state(too_big.buy, too_big.sell)
    with ape.reverts("Clearinghouse: below initial margin"):
        settle(clearinghouse, [too_big.abi], stranger)
    assert snapshot_state(too_big.buy, too_big.sell) == before

    # exactly at initial margin settles
    settle(clearinghouse, [signer.fill(dave.address, bob.address, BTC, WAD // 10, BTC_PRICE, expiry).abi], stranger)
    health = clearinghouse.account_health(dave)
    assert health.value == health.initial_margin == 1_000 * USDC


def test_settle_fills__below_initial_margin_across_markets(clearinghouse, signer, snapshot_state, fund, dave, bob, stranger, expiry):
    fund(dave, 1_000 * USDC)
    settle(clearinghouse, [signer.fill(dave.address, bob.address, BTC, WAD // 20, BTC_PRICE, expiry).abi], stranger)  # 500 margin
    fill = signer.fill(bob.address, dave.address, ETH, 5 * WAD // 4 + 1, ETH_PRICE, expiry)  # 500 margin + dust
    before = snapshot_state(fill.buy, fill.sell)
    with ape.reverts("Clearinghouse: below initial margin"):
        settle(clearinghouse, [fill.abi], stranger)
    assert snapshot_state(fill.buy, fill.sell) == before
    settle(clearinghouse, [signer.fill(bob.address, dave.address, ETH, 5 * WAD // 4, ETH_PRICE, expiry).abi], stranger)
    health = clearinghouse.account_health(dave)
    assert health.value == health.initial_margin == 1_000 * USDC


def test_settle_fills__no_collateral(clearinghouse, signer, snapshot_state, alice, stranger, expiry):
    fill = signer.fill(alice.address, stranger.address, BTC, WAD // 10, BTC_PRICE, expiry)
    before = snapshot_state(fill.buy, fill.sell)
    with ape.reverts("Clearinghouse: below initial margin"):
        settle(clearinghouse, [fill.abi], stranger)
    assert snapshot_state(fill.buy, fill.sell) == before


def test_settle_fills__open_interest_cap(clearinghouse, configurator, owner, config, signer, snapshot_state, alice, bob, stranger, expiry):
    configurator.set_market_params(BTC, market_params(config, max_open_interest=WAD // 10), sender=owner)
    fill = signer.fill(alice.address, bob.address, BTC, WAD // 10 + 1, BTC_PRICE, expiry)
    before = snapshot_state(fill.buy, fill.sell)
    with ape.reverts("Clearinghouse: open interest cap"):
        settle(clearinghouse, [fill.abi], stranger)
    assert snapshot_state(fill.buy, fill.sell) == before
    settle(clearinghouse, [signer.fill(alice.address, bob.address, BTC, WAD // 10, BTC_PRICE, expiry).abi], stranger)
    assert clearinghouse.long_open_interest(BTC) == WAD // 10


def test_settle_fills__reduce_only_would_grow(clearinghouse, signer, snapshot_state, alice, bob, carol, stranger, expiry):
    def reduce_only(size):
        """A reduce-only order of alice's for `size` (signed), against an ordinary one of bob's."""
        if size > 0:
            return signer.fill(alice.address, bob.address, BTC, size, BTC_PRICE, expiry, buy_reduce_only=True)
        return signer.fill(bob.address, alice.address, BTC, -size, BTC_PRICE, expiry, sell_reduce_only=True)

    def refused(size):
        fill = reduce_only(size)
        before = snapshot_state(fill.buy, fill.sell)
        with ape.reverts("Clearinghouse: reduce-only order would grow the position"):
            settle(clearinghouse, [fill.abi], stranger)
        assert snapshot_state(fill.buy, fill.sell) == before, size

    # flat: any reduce-only order would open a position
    refused(WAD // 10)
    refused(-(WAD // 10))
    # long 0.1: buying more or selling past zero (a flip) both grow risk
    settle(clearinghouse, [signer.fill(alice.address, carol.address, BTC, WAD // 10, BTC_PRICE, expiry).abi], stranger)
    refused(WAD // 20)
    refused(-(WAD // 10) - 1)
    # short 0.1
    settle(clearinghouse, [signer.fill(carol.address, alice.address, BTC, WAD // 5, BTC_PRICE, expiry).abi], stranger)
    assert clearinghouse.positions(alice, BTC).size == -(WAD // 10)
    refused(-(WAD // 20))
    refused(WAD // 10 + 1)


def test_settle_fills__reduce_only_closes(clearinghouse, signer, alice, bob, carol, stranger, expiry):
    settle(clearinghouse, [signer.fill(alice.address, bob.address, BTC, WAD // 10, BTC_PRICE, expiry).abi], stranger)
    fill = signer.fill(carol.address, alice.address, BTC, WAD // 10, BTC_PRICE, expiry, sell_reduce_only=True)
    settle(clearinghouse, [fill.abi], stranger)
    assert clearinghouse.positions(alice, BTC).size == 0
    assert clearinghouse.open_markets(alice) == 0
    assert clearinghouse.long_open_interest(BTC) == clearinghouse.short_open_interest(BTC) == WAD // 10


# ---------------------------------------------------------------- cancel

def test_cancel_order__emits_and_blocks_fills(clearinghouse, signer, snapshot_state, filled, alice, bob, stranger, expiry):
    fill = signer.fill(alice.address, bob.address, BTC, WAD // 10, BTC_PRICE, expiry)
    receipt = clearinghouse.cancel_order(order_tuple(fill.buy), sender=alice)
    order_hash = order_digest(fill.buy, signer.separator)
    assert clearinghouse.OrderCancelled(account=alice, order_hash=order_hash) in receipt.events
    assert filled(fill.buy) == WAD // 10

    before = snapshot_state(fill.buy, fill.sell)
    with ape.reverts("Clearinghouse: fill exceeds order remaining"):
        settle(clearinghouse, [fill.abi], stranger)
    assert snapshot_state(fill.buy, fill.sell) == before


def test_cancel_order__after_partial_fill(clearinghouse, signer, snapshot_state, filled, alice, bob, stranger, expiry):
    buy = signer.order(alice.address, BTC, WAD, BTC_PRICE, expiry)
    sell = signer.order(bob.address, BTC, -WAD, BTC_PRICE, expiry)
    settle(clearinghouse, [fill_tuple(signer.sign(buy), signer.sign(sell), WAD // 4, BTC_PRICE)], stranger)
    clearinghouse.cancel_order(order_tuple(buy), sender=alice)
    assert filled(buy) == WAD
    before = snapshot_state(buy, sell)
    with ape.reverts("Clearinghouse: fill exceeds order remaining"):
        settle(clearinghouse, [fill_tuple(signer.sign(buy), signer.sign(sell), 1, BTC_PRICE)], stranger)
    assert snapshot_state(buy, sell) == before
    assert clearinghouse.positions(alice, BTC).size == WAD // 4


def test_cancel_order__not_the_account(clearinghouse, signer, snapshot_state, owner, alice, bob, stranger, expiry):
    fill = signer.fill(alice.address, bob.address, BTC, WAD // 10, BTC_PRICE, expiry)
    before = snapshot_state(fill.buy, fill.sell)
    for sender in (bob, stranger, owner):
        with ape.reverts("Clearinghouse: not the order's account"):
            clearinghouse.cancel_order(order_tuple(fill.buy), sender=sender)
    assert snapshot_state(fill.buy, fill.sell) == before
    # the order still fills
    settle(clearinghouse, [fill.abi], stranger)
    assert clearinghouse.positions(alice, BTC).size == WAD // 10


def nonce_bits(clearinghouse, order: Order) -> int:
    """The two bits of `order`'s nonce in its account's bitmap: 1 filled in part, 2 filled in full or cancelled."""
    word, slot = divmod(order.nonce, 128)
    return clearinghouse.nonce_bitmap(order.account, word) >> (2 * slot) & 3


def test_settle_fills__a_nonce_filled_in_full_refuses_its_twin(clearinghouse, signer, snapshot_state, filled, alice, bob, stranger, expiry):
    """The nonce is an order's id per account: once an order is filled in full, no other order of the
    account with the same nonce fills. The fill costs one bit of the bitmap, no slot of its own."""
    fill = signer.fill(alice.address, bob.address, BTC, WAD // 10, BTC_PRICE, expiry)
    settle(clearinghouse, [fill.abi], stranger)
    assert nonce_bits(clearinghouse, fill.buy) == nonce_bits(clearinghouse, fill.sell) == 2
    twin = Order(**{**fill.buy.__dict__, "size": WAD // 5})
    sell = signer.order(bob.address, BTC, -(WAD // 5), BTC_PRICE, expiry)
    assert filled(twin) == WAD // 5
    before = snapshot_state(twin, sell)
    with ape.reverts("Clearinghouse: fill exceeds order remaining"):
        settle(clearinghouse, [fill_tuple(signer.sign(twin), signer.sign(sell), WAD // 10, BTC_PRICE)], stranger)
    assert snapshot_state(twin, sell) == before


def test_settle_fills__partial_fills_then_the_rest(clearinghouse, signer, snapshot_state, filled, alice, bob, stranger, expiry):
    buy = signer.order(alice.address, BTC, WAD, BTC_PRICE, expiry)
    sell = signer.order(bob.address, BTC, -WAD, BTC_PRICE, expiry)
    settle(clearinghouse, [fill_tuple(signer.sign(buy), signer.sign(sell), WAD // 4, BTC_PRICE)], stranger)
    assert filled(buy) == filled(sell) == WAD // 4 and nonce_bits(clearinghouse, buy) == 1
    settle(clearinghouse, [fill_tuple(signer.sign(buy), signer.sign(sell), 3 * WAD // 4, BTC_PRICE)], stranger)
    assert filled(buy) == filled(sell) == WAD and nonce_bits(clearinghouse, buy) == 3
    before = snapshot_state(buy, sell)
    with ape.reverts("Clearinghouse: fill exceeds order remaining"):
        settle(clearinghouse, [fill_tuple(signer.sign(buy), signer.sign(sell), 1, BTC_PRICE)], stranger)
    assert snapshot_state(buy, sell) == before
    assert clearinghouse.positions(alice, BTC).size == WAD


def test_cancel_order__cancels_every_order_with_its_nonce(clearinghouse, signer, snapshot_state, filled, alice, bob, stranger, expiry):
    fill = signer.fill(alice.address, bob.address, BTC, WAD // 10, BTC_PRICE, expiry)
    sibling = Order(**{**fill.buy.__dict__, "limit_price": BTC_PRICE + WAD})
    clearinghouse.cancel_order(order_tuple(sibling), sender=alice)
    assert filled(fill.buy) == WAD // 10 and filled(fill.sell) == 0
    before = snapshot_state(fill.buy, fill.sell)
    with ape.reverts("Clearinghouse: fill exceeds order remaining"):
        settle(clearinghouse, [fill.abi], stranger)
    assert snapshot_state(fill.buy, fill.sell) == before


def test_settle_fills__position_beyond_its_packed_range(clearinghouse, configurator, oracle, token, pool, owner, config, signer, snapshot_state, alice, bob, stranger, expiry):
    """A position is packed as a 128-bit size beside a 128-bit entry price: a size of 2**127 is
    refused, one unit less fills. In a market priced at 1e-12 collateral per base unit that is a
    notional of about 170 million."""
    market = clearinghouse.market_count()
    price = 10**6
    oracle.initialize_feed(market, price, price, sender=owner)
    configurator.list_market(market_params(config, max_open_interest=2**255), sender=owner)
    for account in (alice, bob):
        token.mint(account, 10**14, sender=owner)
        token.approve(pool, 10**14, sender=account)
        pool.deposit(10**14, sender=account)
    too_large = signer.fill(alice.address, bob.address, market, 2**127, price, expiry)
    before = snapshot_state(too_large.buy, too_large.sell, markets=(market,))
    with ape.reverts("Clearinghouse: position out of range"):
        settle(clearinghouse, [too_large.abi], stranger)
    assert snapshot_state(too_large.buy, too_large.sell, markets=(market,)) == before
    settle(clearinghouse, [signer.fill(alice.address, bob.address, market, 2**127 - 1, price, expiry).abi], stranger)
    assert clearinghouse.positions(alice, market).size == 2**127 - 1
    assert clearinghouse.positions(bob, market) == (-(2**127 - 1), price, 0)


# ---------------------------------------------------------------- owner-only setters

@pytest.mark.parametrize("setter", ["list_market", "set_market_params", "set_market_configurator", "set_liquidation_params", "set_insurance_account"])
def test_owner_setters__not_owner(clearinghouse, configurator, liquidation, config, snapshot_state, keeper, alice, stranger, setter):
    calls = {
        "list_market": lambda sender: configurator.list_market(market_params(config), sender=sender),
        "set_market_params": lambda sender: configurator.set_market_params(BTC, market_params(config, price_band=WAD // 2), sender=sender),
        "set_market_configurator": lambda sender: clearinghouse.set_market_configurator(stranger, sender=sender),
        "set_liquidation_params": lambda sender: liquidation.set_liquidation_params(WAD // 50, WAD // 40, sender=sender),
        "set_insurance_account": lambda sender: clearinghouse.set_insurance_account(stranger, sender=sender),
    }
    before = snapshot_state()
    for sender in (stranger, keeper, alice):
        with ape.reverts(NOT_OWNER):
            calls[setter](sender)
    assert snapshot_state() == before


INVALID_PARAMS = [
    ({"maintenance_margin": 0}, "MarketConfigurator: zero maintenance margin"),
    ({"initial_margin": WAD // 20}, "MarketConfigurator: initial margin must exceed maintenance"),
    ({"initial_margin": WAD // 40}, "MarketConfigurator: initial margin must exceed maintenance"),
    ({"initial_margin": WAD + 1, "maintenance_margin": WAD // 2}, "MarketConfigurator: initial margin above 100%"),
    ({"price_band": 0}, "MarketConfigurator: price band out of range"),
    ({"price_band": WAD}, "MarketConfigurator: price band out of range"),
    ({"max_open_interest": 0}, "MarketConfigurator: zero open interest cap"),
    ({"funding_premium_cap": WAD + 1}, "MarketConfigurator: funding cap above 100%"),
    ({"funding_period": 0}, "MarketConfigurator: zero funding period"),
    ({"taker_fee": WAD // 100 + 1}, "MarketConfigurator: taker fee above the cap"),
    ({"maker_fee": 6 * 10**14, "taker_fee": 5 * 10**14}, "MarketConfigurator: maker fee above taker fee"),
]


def test_list_market__invalid_params(configurator, owner, config, snapshot_state):
    before = snapshot_state()
    for changes, reason in INVALID_PARAMS:
        with ape.reverts(reason):
            configurator.list_market(market_params(config, **changes), sender=owner)
    assert snapshot_state() == before


def test_set_market_params__invalid_params(configurator, owner, config, snapshot_state):
    before = snapshot_state()
    for changes, reason in INVALID_PARAMS:
        with ape.reverts(reason):
            configurator.set_market_params(BTC, market_params(config, **changes), sender=owner)
    assert snapshot_state() == before


def test_set_market_params__fees_at_their_cap(clearinghouse, configurator, owner, config):
    params = market_params(config, maker_fee=WAD // 100, taker_fee=WAD // 100)
    configurator.set_market_params(BTC, params, sender=owner)
    assert tuple_of(clearinghouse.markets(BTC)) == params
    assert configurator.max_trading_fee() == WAD // 100


def test_set_market_params__unknown_market(clearinghouse, configurator, owner, config, snapshot_state):
    before = snapshot_state()
    with ape.reverts("MarketConfigurator: unknown market"):
        configurator.set_market_params(clearinghouse.market_count(), market_params(config), sender=owner)
    assert snapshot_state() == before


def test_list_market__too_many_markets(clearinghouse, configurator, owner, config, snapshot_state):
    for _ in range(16 - clearinghouse.market_count()):
        configurator.list_market(market_params(config), sender=owner)
    assert clearinghouse.market_count() == 16
    before = snapshot_state()
    with ape.reverts("Clearinghouse: too many markets"):
        configurator.list_market(market_params(config), sender=owner)
    assert snapshot_state() == before


def test_set_market__not_the_configurator(clearinghouse, owner, config, snapshot_state, keeper, stranger):
    """The owner too must go through the configurator's bounds."""
    before = snapshot_state()
    for sender in (owner, keeper, stranger):
        with ape.reverts("Clearinghouse: caller is not the market configurator"):
            clearinghouse.set_market(BTC, market_params(config, maintenance_margin=0), sender=sender)
    assert snapshot_state() == before


def test_set_liquidation_params__fees_of_100_percent(clearinghouse, liquidation, owner, snapshot_state):
    before = snapshot_state()
    for discount, penalty in [(WAD, 0), (0, WAD), (WAD // 2, WAD // 2), (WAD - 1, 1)]:
        with ape.reverts("LiquidationEngine: liquidation fees of 100% or more"):
            liquidation.set_liquidation_params(discount, penalty, sender=owner)
    assert snapshot_state() == before
    liquidation.set_liquidation_params(WAD // 2, WAD // 2 - 1, sender=owner)  # just below 100% is allowed


def test_set_insurance_account__zero(clearinghouse, owner, snapshot_state):
    before = snapshot_state()
    with ape.reverts("Clearinghouse: zero insurance account"):
        clearinghouse.set_insurance_account(ZERO_ADDRESS, sender=owner)
    assert snapshot_state() == before


def test_owner_setters__owner_succeeds(clearinghouse, configurator, liquidation, owner, config, stranger):
    params = market_params(config, price_band=WAD // 10)
    receipt = configurator.set_market_params(BTC, params, sender=owner)
    assert tuple_of(clearinghouse.markets(BTC)) == params
    assert len(list(receipt.events.filter(clearinghouse.UpdateMarket))) == 1
    receipt = clearinghouse.set_market_configurator(stranger, sender=owner)
    assert clearinghouse.UpdateMarketConfigurator(market_configurator=stranger) in receipt.events
    assert clearinghouse.market_configurator() == stranger.address
    receipt = liquidation.set_liquidation_params(WAD // 50, WAD // 40, sender=owner)
    assert liquidation.UpdateLiquidationParams(discount=WAD // 50, penalty=WAD // 40) in receipt.events
    assert (liquidation.liquidation_discount(), liquidation.liquidation_penalty()) == (WAD // 50, WAD // 40)
    receipt = clearinghouse.set_insurance_account(stranger, sender=owner)
    assert clearinghouse.UpdateInsuranceAccount(insurance_account=stranger) in receipt.events
    assert clearinghouse.insurance_account() == stranger.address


# ---------------------------------------------------------------- liquidation and bankruptcy

def test_liquidate__account_healthy(clearinghouse, liquidation, walk, signer, snapshot_state, alice, bob, liquidator, stranger, expiry):
    settle(clearinghouse, [signer.fill(alice.address, bob.address, BTC, WAD // 10, BTC_PRICE, expiry).abi], stranger)
    walk(BTC, 90_000 * WAD)  # alice loses 1,000 of 100,000
    before = snapshot_state()
    for account in (alice, bob):
        with ape.reverts("LiquidationEngine: account healthy"):
            liquidation.liquidate(account, BTC, WAD // 10, sender=liquidator)
    assert snapshot_state() == before


def test_liquidate__no_position(clearinghouse, liquidation, signer, snapshot_state, alice, bob, carol, liquidator, stranger, expiry):
    settle(clearinghouse, [signer.fill(alice.address, bob.address, BTC, WAD // 10, BTC_PRICE, expiry).abi], stranger)
    before = snapshot_state()
    with ape.reverts("LiquidationEngine: no position"):
        liquidation.liquidate(carol, BTC, WAD, sender=liquidator)
    with ape.reverts("LiquidationEngine: no position"):
        liquidation.liquidate(alice, ETH, WAD, sender=liquidator)
    assert snapshot_state() == before


def test_liquidate__yourself_or_unknown_market(clearinghouse, liquidation, signer, snapshot_state, alice, bob, liquidator, stranger, expiry):
    settle(clearinghouse, [signer.fill(alice.address, bob.address, BTC, WAD // 10, BTC_PRICE, expiry).abi], stranger)
    before = snapshot_state()
    with ape.reverts("LiquidationEngine: cannot liquidate yourself"):
        liquidation.liquidate(alice, BTC, WAD, sender=alice)
    with ape.reverts("LiquidationEngine: unknown market"):
        liquidation.liquidate(alice, 7, WAD, sender=liquidator)
    assert snapshot_state() == before


def test_flag_bankruptcy__solvent_account(clearinghouse, liquidation, walk, signer, snapshot_state, alice, bob, stranger, expiry):
    settle(clearinghouse, [signer.fill(alice.address, bob.address, BTC, WAD // 10, BTC_PRICE, expiry).abi], stranger)
    walk(BTC, 80_000 * WAD)  # a loss, still far from bankrupt
    before = snapshot_state()
    for account in (alice, bob, stranger):  # a loser, a winner and an empty account
        with ape.reverts("LiquidationEngine: account solvent"):
            liquidation.flag_bankruptcy(account, sender=stranger)
    assert snapshot_state() == before
    assert not any(value for key, value in before.items() if key[0] == "bankrupt")


def test_flag_bankruptcy__frozen_account_is_refused(clearinghouse, liquidation, pool, walk, signer, snapshot_state, fund, dave, bob, carol, liquidator, stranger, expiry):
    fund(dave, 1_000 * USDC)
    settle(clearinghouse, [signer.fill(dave.address, bob.address, BTC, WAD // 10, BTC_PRICE, expiry).abi], stranger)
    walk(BTC, 80_000 * WAD)  # dave loses 2,000 on 1,000
    assert clearinghouse.account_value(dave) == -1_000 * USDC
    receipt = liquidation.flag_bankruptcy(dave, sender=stranger)
    assert liquidation.BankruptcyFlagged(account=dave, deficit=1_000 * USDC) in receipt.events
    assert clearinghouse.UpdateAccountFlags(account=dave, flags=1) in receipt.events  # BANKRUPT
    assert clearinghouse.bankrupt(dave) and clearinghouse.account_flags(dave) == 1

    close = signer.fill(carol.address, dave.address, BTC, WAD // 10, 80_000 * WAD, expiry)
    before = snapshot_state(close.buy, close.sell)
    with ape.reverts("LiquidationEngine: already bankrupt"):
        liquidation.flag_bankruptcy(dave, sender=stranger)
    with ape.reverts("Clearinghouse: account bankrupt"):
        settle(clearinghouse, [close.abi], stranger)
    with ape.reverts("LiquidationEngine: account bankrupt"):
        liquidation.liquidate(dave, BTC, WAD // 10, sender=liquidator)
    with ape.reverts("MarginPool: withdrawal below initial margin"):
        pool.withdraw(1, sender=dave)
    assert snapshot_state(close.buy, close.sell) == before


# ---------------------------------------------------------------- positive: partial fills, batches, atomicity

def test_settle_fills__partial_fills_across_two_calls(clearinghouse, signer, filled, alice, bob, carol, stranger, expiry):
    buy = signer.order(alice.address, BTC, WAD, BTC_PRICE, expiry)
    bob_sell = signer.order(bob.address, BTC, -(3 * WAD // 10), BTC_PRICE, expiry)
    carol_sell = signer.order(carol.address, BTC, -WAD, BTC_PRICE - 500 * WAD, expiry)

    receipt = settle(clearinghouse, [fill_tuple(signer.sign(buy), signer.sign(bob_sell), 3 * WAD // 10, BTC_PRICE)], stranger)
    buy_hash = order_digest(buy, signer.separator)
    assert clearinghouse.Trade(market=BTC, buyer=alice, seller=bob, size=3 * WAD // 10, price=BTC_PRICE, buy_order=buy_hash) in receipt.events
    assert filled(buy) == 3 * WAD // 10
    assert filled(bob_sell) == 3 * WAD // 10

    second_price = BTC_PRICE - 200 * WAD
    settle(clearinghouse, [fill_tuple(signer.sign(buy), signer.sign(carol_sell), 7 * WAD // 10, second_price)], stranger)
    assert filled(buy) == WAD
    assert filled(carol_sell) == 7 * WAD // 10
    position = clearinghouse.positions(alice, BTC)
    assert position.size == WAD
    # size-weighted entry, rounded up for a long
    expected_entry = -(-(3 * WAD // 10 * BTC_PRICE + 7 * WAD // 10 * second_price) // WAD)
    assert position.entry_price == expected_entry
    assert clearinghouse.positions(bob, BTC).size == -(3 * WAD // 10)
    assert clearinghouse.positions(carol, BTC).size == -(7 * WAD // 10)
    assert clearinghouse.long_open_interest(BTC) == clearinghouse.short_open_interest(BTC) == WAD


def test_settle_fills__batch_of_several_fills(clearinghouse, signer, alice, bob, carol, stranger, expiry):
    fills = [
        signer.fill(alice.address, bob.address, BTC, WAD // 10, BTC_PRICE, expiry),
        signer.fill(carol.address, alice.address, ETH, 2 * WAD, ETH_PRICE, expiry),
        signer.fill(bob.address, carol.address, SOL, 50 * WAD, 200 * WAD, expiry),
        signer.fill(carol.address, bob.address, BTC, WAD // 20, BTC_PRICE, expiry),
    ]
    receipt = settle(clearinghouse, [f.abi for f in fills], stranger)
    trades = list(receipt.events.filter(clearinghouse.Trade))
    assert [(t.market, t.buyer, t.seller, t.size, t.price) for t in trades] == [
        (f.buy.market, f.buy.account, f.sell.account, f.size, f.price) for f in fills
    ]
    assert clearinghouse.positions(alice, BTC).size == WAD // 10
    assert clearinghouse.positions(alice, ETH).size == -2 * WAD
    assert clearinghouse.positions(bob, BTC).size == -(WAD // 10 + WAD // 20)
    assert clearinghouse.positions(bob, SOL).size == 50 * WAD
    assert clearinghouse.positions(carol, BTC).size == WAD // 20
    assert clearinghouse.positions(carol, ETH).size == 2 * WAD
    assert clearinghouse.positions(carol, SOL).size == -50 * WAD
    assert clearinghouse.open_markets(alice) == (1 << BTC) | (1 << ETH)
    assert clearinghouse.open_markets(bob) == (1 << BTC) | (1 << SOL)
    for market, oi in ((BTC, WAD // 10 + WAD // 20), (ETH, 2 * WAD), (SOL, 50 * WAD)):
        assert clearinghouse.long_open_interest(market) == clearinghouse.short_open_interest(market) == oi


def test_settle_fills__batch_is_all_or_nothing(clearinghouse, signer, snapshot_state, alice, bob, carol, stranger, expiry):
    good = signer.fill(alice.address, bob.address, BTC, WAD // 10, BTC_PRICE, expiry)
    also_good = signer.fill(carol.address, bob.address, ETH, WAD, ETH_PRICE, expiry)
    bad = signer.fill(carol.address, alice.address, BTC, WAD // 10, BTC_PRICE * 2, expiry)  # outside the band
    before = snapshot_state(good.buy, good.sell, also_good.buy, also_good.sell, bad.buy, bad.sell)
    with ape.reverts("Clearinghouse: price outside band"):
        settle(clearinghouse, [good.abi, also_good.abi, bad.abi], stranger)
    assert snapshot_state(good.buy, good.sell, also_good.buy, also_good.sell, bad.buy, bad.sell) == before


def test_settle_fills__anyone_may_submit(clearinghouse, signer, alice, bob, keeper, expiry):
    fill = signer.fill(alice.address, bob.address, BTC, WAD // 10, BTC_PRICE, expiry)
    settle(clearinghouse, [fill.abi], keeper)
    assert clearinghouse.positions(alice, BTC).size == WAD // 10
