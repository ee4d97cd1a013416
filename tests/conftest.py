"""Shared fixtures and the hypothesis profiles.

Profiles (pick one with BACKSTOP_FUZZ=<name>, default `ci`):
- `ci`: the whole suite well inside the CI budget on 2 cores.
- `deep`: long fuzzing for auditors; hours, not minutes.
"""

import os
from dataclasses import replace

import ape

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=50,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "deep",
    max_examples=5_000,
    stateful_step_count=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("BACKSTOP_FUZZ", "ci"))


import pytest

from backstop.chain.deployment import USDC, WAD, ProtocolConfig, deploy_protocol
from backstop.chain.trading import ONE_YEAR, OrderSigner
from backstop.sim.replay import price_updates

BTC, ETH, SOL = 0, 1, 2


# ---------------------------------------------------------------- personas

PERSONAS = ("owner", "keeper", "insurance", "alice", "bob", "carol", "liquidator", "stranger")


def _persona(name, index):
    @pytest.fixture(scope="session", name=name)
    def persona(accounts):
        return accounts[index]

    return persona


owner, keeper, insurance, alice, bob, carol, liquidator, stranger = (_persona(n, i) for i, n in enumerate(PERSONAS))


# ---------------------------------------------------------------- protocol

@pytest.fixture(scope="session")
def config():
    """The default deployment without trading fees: a mechanism's test then sees its own numbers
    only. Fees have their own tests (test_fees.py, test_vault_safety.py, which lists the default
    fees again) and the state machine draws them; the crash replay runs the defaults."""
    defaults = ProtocolConfig()
    return replace(defaults, markets=tuple(replace(market, maker_fee=0, taker_fee=0) for market in defaults.markets))


@pytest.fixture(scope="session")
def protocol(project, owner, keeper, config):
    return deploy_protocol(project, owner, keeper, config)


def _contract(name):
    @pytest.fixture(scope="session", name=name)
    def contract(protocol):
        return getattr(protocol, name)

    return contract


token, oracle, pool, clearinghouse, configurator, liquidation, vault = (
    _contract(name) for name in ("token", "oracle", "pool", "clearinghouse", "configurator", "liquidation", "vault")
)


@pytest.fixture(scope="session")
def signer(chain, accounts, clearinghouse):
    keys = {account.address: account.private_key for account in accounts[:10]}
    return OrderSigner(chain.chain_id, clearinghouse.address, keys)


# ---------------------------------------------------------------- actions

@pytest.fixture(scope="session")
def fund(owner, token, pool):
    """Mints `amount` collateral to `account` and deposits it into the pool."""

    def fund(account, amount):
        token.mint(account, amount, sender=owner)
        token.approve(pool, amount, sender=account)
        return pool.deposit(amount, sender=account)

    return fund


@pytest.fixture(scope="session")
def walk(oracle, keeper):
    """Moves a market's index and mark together to `price` as a keeper would: an update (so a
    block) at a time within the oracle's limits, all in one move window."""

    def walk(market, price):
        feed = oracle.feeds(market)
        start, limits = [feed.index_price, feed.mark_price], (oracle.max_block_move(), oracle.max_window_move())
        for index_price, mark_price in price_updates(start, [price, price], *limits):
            oracle.set_prices(market, index_price, mark_price, sender=keeper)

    return walk


@pytest.fixture(scope="session")
def expiry(chain):
    return chain.pending_timestamp + ONE_YEAR


@pytest.fixture(scope="session")
def trade(signer, clearinghouse, stranger, expiry):
    """Settles one fill of `size` between `buyer` and `seller` at `price`; returns the receipt."""

    def trade(buyer, seller, market, size, price, sender=None):
        fill = signer.fill(buyer.address, seller.address, market, size, price, expiry)
        return clearinghouse.settle_fills([fill.abi], sender=sender or stranger)

    return trade


# ---------------------------------------------------------------- speed

@pytest.fixture(autouse=True)
def _no_source_traceback(monkeypatch):
    """Ape maps every reverted transaction back to contract source lines by streaming its opcode
    trace: seconds per reverted call through three contracts. The revert reason, which is what the
    tests assert, comes from a separate replay, so the mapping is skipped."""
    monkeypatch.setattr(ape.exceptions, "_get_ape_traceback_from_tx", lambda txn: None)


# ---------------------------------------------------------------- invariants after every test

@pytest.fixture(autouse=True)
def protocol_invariants(request, accounts):
    """After each test that deployed the protocol: open interest long == short == Σ positions in every
    market, the pool holds at least what its books say, and Σ account values never exceeds it."""
    yield
    if "protocol" not in request.fixturenames:
        return
    protocol = request.getfixturevalue("protocol")
    ch, pool = protocol.clearinghouse, protocol.pool
    people = [account.address for account in accounts[:10]]
    for market in range(ch.market_count()):
        sizes = [ch.positions(person, market).size for person in people]
        longs = sum(size for size in sizes if size > 0)
        assert ch.long_open_interest(market) == ch.short_open_interest(market) == longs == -sum(s for s in sizes if s < 0)
    held = pool.total_held()
    assert held == pool.total_deposited() - pool.total_withdrawn()
    assert protocol.token.balanceOf(pool) >= held
    assert sum(ch.account_value(person) for person in people) <= held
