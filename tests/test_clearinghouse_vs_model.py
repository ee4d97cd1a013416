"""The contracts and the reference model, driven with the same actions, must agree on every number.

Each test runs a short story (deposits, trades single and batched, funding over time, withdrawals,
liquidations, bankruptcy) through `Mirror`, which after every action compares balances, positions,
funding indices, open interest and account values, and asserts open interest long == short and
collateral conservation (the pool holds deposits - withdrawals, and at least Σ account values).
"""

import ape
import pytest

from backstop.model.liquidation import LiquidationModel
from backstop.model.protocol import MarketParams, Model, ModelRevert, ReferencePrices
from conftest import BTC, ETH, USDC, WAD


class Mirror:
    def __init__(self, chain, protocol, config, keeper, signer, fund, expiry, people):
        self.chain, self.protocol, self.keeper, self.signer = chain, protocol, keeper, signer
        self._fund, self.expiry, self.people = fund, expiry, people
        self.model = Model(config.max_block_move, config.move_window, config.max_window_move, config.staleness,
                           protocol.clearinghouse.insurance_account())
        LiquidationModel(self.model, config.liquidation_discount, config.liquidation_penalty)
        for market_id, market in enumerate(config.markets):
            feed = protocol.oracle.feeds(market_id)
            self.model.initialize_feed(market_id, feed.index_price, feed.mark_price, feed.updated_at)
            self.model.block_reference[market_id] = ReferencePrices(*protocol.oracle.block_reference(market_id))
            self.model.window_reference[market_id] = ReferencePrices(*protocol.oracle.window_reference(market_id))
            listed_at = protocol.clearinghouse.funding_updated_at(market_id)
            self.model.list_market(MarketParams(*market.params()), listed_at)
        self.markets = range(len(config.markets))
        self.compare()

    # ------------------------------------------------------------ actions

    def fund(self, account, amount):
        self._fund(account, amount)
        self.model.deposit(account.address, amount)
        self.compare()

    def trade(self, *fills, sender):
        """Each fill is (buyer, seller, market, size, price); all settle in one transaction."""
        built = [self.signer.fill(b.address, s.address, m, size, price, self.expiry) for b, s, m, size, price in fills]
        receipt = self.protocol.clearinghouse.settle_fills([fill.abi for fill in built], sender=sender)
        self.model.settle_fills(built, receipt.timestamp)
        self.compare()
        return receipt

    def set_prices(self, market, index_price, mark_price):
        receipt = self.protocol.oracle.set_prices(market, index_price, mark_price, sender=self.keeper)
        self.model.set_prices(market, index_price, mark_price, receipt.timestamp, receipt.block_number)
        self.compare()
        return receipt

    def walk_mark(self, market, target):
        """Moves index and mark together to `target` as a keeper would: an update per block, each
        as far as the oracle's limits allow, waiting for the move window to end when its limit
        leaves no room."""
        while self.model.latest_prices(market) != (target, target):
            now = self.now()
            step = self.model.reachable_prices(market, target, target, now)
            if step == self.model.latest_prices(market):
                self.wait(self.model.window_end(market) - now)
            else:
                self.set_prices(market, *step)

    def now(self):
        return self.chain.blocks.head.timestamp

    def wait(self, seconds):
        self.chain.pending_timestamp += seconds
        self.chain.mine()
        self.compare()

    def accrue(self, market):
        receipt = self.protocol.clearinghouse.accrue_funding(market, sender=self.keeper)
        self.model.accrue_funding(market, receipt.timestamp)
        self.compare()

    def withdraw(self, account, amount):
        receipt = self.protocol.pool.withdraw(amount, sender=account)
        self.model.withdraw(account.address, amount, receipt.timestamp)
        self.compare()
        return receipt

    def liquidate(self, liquidator, account, market, size):
        receipt = self.protocol.liquidation.liquidate(account, market, size, sender=liquidator)
        taken = self.model.liquidation.liquidate(liquidator.address, account.address, market, size, receipt.timestamp)
        self.compare()
        return receipt, taken

    def flag_bankruptcy(self, account, sender):
        receipt = self.protocol.liquidation.flag_bankruptcy(account, sender=sender)
        deficit = self.model.liquidation.flag_bankruptcy(account.address, receipt.timestamp)
        self.compare()
        return receipt, deficit

    def expect_revert(self, reason, contract_call, model_call):
        """Both sides refuse with the same reason, and neither changes."""
        saved = self.model.snapshot()
        with ape.reverts(reason):
            contract_call()
        with pytest.raises(ModelRevert, match=reason):
            model_call(self.chain.pending_timestamp)
        assert self.model.snapshot() == saved
        self.compare()

    # ------------------------------------------------------------ the comparison

    def compare(self):
        ch, pool, model = self.protocol.clearinghouse, self.protocol.pool, self.model
        now = self.chain.blocks.head.timestamp
        for person in self.people:
            account = person.address
            assert pool.balance_of(account) == model.balance(account), f"balance of {account}"
            assert ch.bankrupt(account) == model.bankrupt.get(account, False)
            health = ch.account_health(account)
            expected = model.account_health(account, now)
            assert (health.value, health.initial_margin, health.maintenance_margin) == (
                expected.value, expected.initial_margin, expected.maintenance_margin
            ), f"health of {account}"
            for market in self.markets:
                position = ch.positions(account, market)
                assert (position.size, position.entry_price, position.funding_snapshot) == tuple(
                    vars(model.position(account, market)).values()
                ), f"position of {account} in {market}"
        oracle = self.protocol.oracle
        for market in self.markets:
            assert tuple(oracle.feeds(market)) == tuple(vars(model.feeds[market]).values()), f"feed of {market}"
            assert tuple(oracle.block_reference(market)) == tuple(vars(model.block_reference[market]).values())
            assert tuple(oracle.window_reference(market)) == tuple(vars(model.window_reference[market]).values())
            assert ch.funding_index(market) == model.funding_index.get(market, 0)
            assert ch.funding_updated_at(market) == model.funding_updated_at[market]
            assert ch.long_open_interest(market) == model.long_open_interest.get(market, 0)
            assert ch.long_open_interest(market) == ch.short_open_interest(market)
        assert model.open_interest_balanced()
        assert pool.total_held() == model.total_held() == pool.total_deposited() - pool.total_withdrawn()
        assert model.sum_account_values(now) <= model.total_held()


@pytest.fixture
def mirror(chain, protocol, config, keeper, signer, fund, expiry, alice, bob, carol, liquidator, vault):
    return Mirror(chain, protocol, config, keeper, signer, fund, expiry, [alice, bob, carol, liquidator, vault])


BTC_PRICE = 100_000 * WAD
ETH_PRICE = 4_000 * WAD


def test_settle_fills__single_fill_matches_model(mirror, alice, bob, stranger):
    mirror.fund(alice, 5_000 * USDC)
    mirror.fund(bob, 5_000 * USDC)
    receipt = mirror.trade((alice, bob, BTC, WAD // 4, BTC_PRICE), sender=stranger)
    trade = receipt.events.filter(mirror.protocol.clearinghouse.Trade)[0]
    assert (trade.buyer, trade.seller, trade.size, trade.price) == (alice.address, bob.address, WAD // 4, BTC_PRICE)
    assert mirror.model.position(alice.address, BTC).entry_price == BTC_PRICE


def test_settle_fills__batch_with_reduce_and_flip_matches_model(mirror, alice, bob, carol, stranger):
    for person in (alice, bob, carol):
        mirror.fund(person, 20_000 * USDC)
    mirror.trade(
        (alice, bob, BTC, WAD // 2, BTC_PRICE),
        (alice, carol, BTC, WAD // 3, BTC_PRICE + 7 * WAD),  # blends alice's entry, rounded up
        (carol, bob, ETH, 3 * WAD, ETH_PRICE),
        (bob, alice, BTC, WAD // 5, BTC_PRICE - 11 * WAD),  # alice reduces: realised loss
        (carol, bob, BTC, WAD, BTC_PRICE + 3 * WAD),  # carol flips from short to long
        sender=stranger,
    )
    assert mirror.model.position(carol.address, BTC).size == WAD - WAD // 3
    assert mirror.model.balance(alice.address) < 20_000 * USDC


def test_funding__longs_pay_shorts_over_time_matches_model(mirror, alice, bob, keeper, stranger):
    mirror.fund(alice, 10_000 * USDC)
    mirror.fund(bob, 10_000 * USDC)
    mirror.trade((alice, bob, BTC, WAD // 2, BTC_PRICE), sender=stranger)
    mirror.set_prices(BTC, BTC_PRICE, BTC_PRICE + 300 * WAD)  # mark above index: longs pay
    for _ in range(4):
        mirror.wait(2 * 3600)
        mirror.accrue(BTC)
    assert mirror.model.funding_index[BTC] > 300 * WAD  # a full period of the 300 premium, and more
    # Settle both sides' funding by trading a little: what shorts receive never exceeds what longs pay.
    mirror.set_prices(BTC, BTC_PRICE, BTC_PRICE + 300 * WAD)  # fresh again for the trade
    before = {p: mirror.model.balance(p.address) for p in (alice, bob)}
    mirror.trade((bob, alice, BTC, WAD // 100, BTC_PRICE + 300 * WAD), sender=stranger)
    paid = before[alice] - mirror.model.balance(alice.address)
    received = mirror.model.balance(bob.address) - before[bob]
    assert 0 < received <= paid


def test_withdraw__down_to_initial_margin_matches_model(mirror, alice, bob, stranger):
    mirror.fund(alice, 10_000 * USDC)
    mirror.fund(bob, 10_000 * USDC)
    mirror.trade((alice, bob, BTC, WAD // 2, BTC_PRICE), sender=stranger)
    now = mirror.chain.blocks.head.timestamp
    health = mirror.model.account_health(alice.address, now)
    free = health.value - health.initial_margin
    mirror.expect_revert(
        "MarginPool: withdrawal below initial margin",
        lambda: mirror.protocol.pool.withdraw(free + 1, sender=alice),
        lambda now: mirror.model.withdraw(alice.address, free + 1, now),
    )
    receipt = mirror.withdraw(alice, free)
    assert receipt.events.filter(mirror.protocol.pool.Withdrawal)[0].amount == free


def test_liquidate__full_position_matches_model(mirror, alice, bob, liquidator, vault, stranger):
    mirror.fund(alice, 6_000 * USDC)
    mirror.fund(bob, 20_000 * USDC)
    mirror.fund(liquidator, 50_000 * USDC)
    mirror.trade((alice, bob, BTC, WAD // 2, BTC_PRICE), sender=stranger)  # 50k notional on 6k: 12% margin
    mirror.walk_mark(BTC, BTC_PRICE * 91 // 100)  # alice value 1.5k < 5% of 45.5k
    now = mirror.chain.blocks.head.timestamp
    health = mirror.model.account_health(alice.address, now)
    assert 0 <= health.value < health.maintenance_margin
    receipt, taken = mirror.liquidate(liquidator, alice, BTC, 10 * WAD)  # clamped to the position
    assert taken == WAD // 2
    event = receipt.events.filter(mirror.protocol.liquidation.Liquidation)[0]
    assert (event.size, event.discount, event.penalty) == (WAD // 2, 455 * USDC, 455 * USDC)
    assert mirror.model.position(liquidator.address, BTC).size == WAD // 2
    assert mirror.model.balance(vault.address) == 455 * USDC  # the penalty goes to the insurance vault


def test_liquidate__partial_leaves_account_healthier_matches_model(mirror, alice, bob, liquidator, stranger):
    mirror.fund(alice, 6_000 * USDC)
    mirror.fund(bob, 20_000 * USDC)
    mirror.fund(liquidator, 50_000 * USDC)
    mirror.trade((alice, bob, BTC, WAD // 2, BTC_PRICE), sender=stranger)
    mirror.walk_mark(BTC, BTC_PRICE * 95 // 100)  # value 3.5k < MM 2.375k? no: healthy
    now = mirror.chain.blocks.head.timestamp
    mirror.expect_revert(
        "LiquidationEngine: account healthy",
        lambda: mirror.protocol.liquidation.liquidate(alice, BTC, WAD // 10, sender=liquidator),
        lambda now: mirror.model.liquidation.liquidate(liquidator.address, alice.address, BTC, WAD // 10, now),
    )
    mirror.walk_mark(BTC, BTC_PRICE * 92 // 100)  # value 2k < MM 2.3k
    before = mirror.model.account_health(alice.address, mirror.chain.blocks.head.timestamp)
    mirror.liquidate(liquidator, alice, BTC, WAD // 10)
    after = mirror.model.account_health(alice.address, mirror.chain.blocks.head.timestamp)
    assert after.value * before.maintenance_margin > before.value * after.maintenance_margin
    assert mirror.model.position(alice.address, BTC).size == WAD // 2 - WAD // 10


def test_flag_bankruptcy__deficit_tracked_exactly_matches_model(mirror, alice, bob, stranger):
    mirror.fund(alice, 6_000 * USDC)
    mirror.fund(bob, 20_000 * USDC)
    mirror.trade((alice, bob, BTC, WAD // 2, BTC_PRICE), sender=stranger)
    mirror.walk_mark(BTC, BTC_PRICE * 80 // 100)  # loss 10k on 6k: deficit 4k
    receipt, deficit = mirror.flag_bankruptcy(alice, sender=stranger)
    assert deficit == 4_000 * USDC
    assert receipt.events.filter(mirror.protocol.liquidation.BankruptcyFlagged)[0].deficit == deficit
    mirror.expect_revert(
        "LiquidationEngine: account bankrupt",
        lambda: mirror.protocol.liquidation.liquidate(alice, BTC, WAD, sender=bob),
        lambda now: mirror.model.liquidation.liquidate(bob.address, alice.address, BTC, WAD, now),
    )
