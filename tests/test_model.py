"""Unit tests of the reference model (backstop/model/protocol.py) with hand-computed numbers; no
chain.

Units: collateral 1e6 (USD), prices and sizes 1e18. BTC at 100_000 USD, 1 BTC -> notional 100_000e6.
Market: initial margin 10%, maintenance 5%, band 1%, funding cap 1% per 8 h; liquidation discount 1%,
penalty 0.5%.
"""

from dataclasses import replace

import pytest

from backstop.model.liquidation import LiquidationModel
from backstop.model.protocol import (
    WAD,
    Fill,
    MarketParams,
    Model,
    ModelRevert,
    Order,
    Position,
    ReferencePrices,
    blended_entry_price,
    ceil_div,
    floor_div,
    funding_index_delta,
    funding_payment,
    margin_requirement,
    notional,
    pnl,
)

ONE = 10**18  # 1 BTC
USD = 10**6  # 1 collateral unit
PRICE = 100_000 * ONE  # 100_000 USD per BTC
T0 = 1_700_000_000
PERIOD = 8 * 3600
BTC = 0
ALICE, BOB, CAROL, INSURANCE = "alice", "bob", "carol", "insurance"
PARAMS = MarketParams(
    initial_margin=WAD // 10,
    maintenance_margin=WAD // 20,
    price_band=WAD // 100,
    max_open_interest=1_000 * ONE,
    funding_premium_cap=WAD // 100,
    funding_period=PERIOD,
)


def usd(amount):
    return amount * USD


def price(usd_per_btc):
    return usd_per_btc * ONE


def new_model(mark=PRICE, **deposits):
    model = Model(max_block_move=WAD // 5, move_window=60, max_window_move=WAD // 2, staleness=60, insurance_account=INSURANCE)
    LiquidationModel(model, discount=WAD // 100, penalty=WAD // 200)
    model.initialize_feed(BTC, PRICE, mark, now=T0)
    assert model.list_market(PARAMS, now=T0) == BTC
    for account, amount in deposits.items():
        model.deposit(account, amount)
    return model


nonces = iter(range(1, 10**9))
blocks = iter(range(1, 10**9))  # every price update in a block of its own


def orders(buyer, seller, size, limit=PRICE, expiry=T0 + 3600):
    return (
        Order(buyer, BTC, size, limit, next(nonces), expiry),
        Order(seller, BTC, -size, limit, next(nonces), expiry),
    )


def reduce_only(order):
    return replace(order, reduce_only=True)


def trade(model, buyer, seller, size, at=PRICE, now=T0):
    buy, sell = orders(buyer, seller, size, at)
    model.settle_fill(buy, sell, size, at, now)


def move_price(model, usd_per_btc, now):
    model.set_prices(BTC, price(usd_per_btc), price(usd_per_btc), now, next(blocks))


# ---------------------------------------------------------------- fixed point and margin math


def test_floor_div__rounds_negative_down_and_positive_down():
    assert floor_div(-7, 2) == -4
    assert floor_div(-6, 2) == -3
    assert floor_div(7, 2) == 3
    assert floor_div(-1, 10**30) == -1


def test_ceil_div__rounds_up_only_when_inexact():
    assert ceil_div(7, 2) == 4
    assert ceil_div(6, 2) == 3
    assert ceil_div(0, 5) == 0


def test_pnl__loss_rounds_up_gain_rounds_down():
    assert pnl(-1, 1, 2) == -1  # short loses 1e-30 units: one whole unit
    assert pnl(1, 2, 1) == -1  # long loses
    assert pnl(1, 1, 2) == 0  # long gains: rounds to zero
    assert pnl(-1, 2, 1) == 0  # short gains
    assert pnl(ONE, PRICE, price(101_000)) == usd(1_000)
    assert pnl(-ONE, PRICE, price(101_000)) == -usd(1_000)


def test_funding_payment__rising_index_longs_pay_shorts_receive():
    assert funding_payment(ONE, ONE, 0) == -USD  # index up 1 USD per BTC: a long pays 1 USD
    assert funding_payment(-ONE, ONE, 0) == USD
    assert funding_payment(ONE, 0, ONE) == USD  # falling index: longs receive


def test_funding_payment__payment_rounds_up_receipt_rounds_down():
    assert funding_payment(1, 1, 0) == -1
    assert funding_payment(-1, 1, 0) == 0
    assert funding_payment(ONE, 1_736_111_111_111_111, 0) == -1_737
    assert funding_payment(-ONE, 1_736_111_111_111_111, 0) == 1_736


def test_margin_requirement__ceil():
    assert margin_requirement(ONE, PRICE, WAD // 10) == usd(10_000)
    assert margin_requirement(-ONE, PRICE, WAD // 10) == usd(10_000)
    assert margin_requirement(1, 1, 1) == 1
    assert margin_requirement(0, PRICE, WAD // 10) == 0


def test_notional__floor():
    assert notional(-ONE, PRICE) == usd(100_000)
    assert notional(1, 1) == 0


def test_blended_entry_price__long_rounds_up():
    assert blended_entry_price(ONE, 100, ONE, 101) == 101  # 100.5 -> 101
    assert blended_entry_price(1, 100, 2, 101) == 101  # 100.67 -> 101
    assert blended_entry_price(0, 0, ONE, PRICE) == PRICE


def test_blended_entry_price__short_rounds_down():
    assert blended_entry_price(-ONE, 100, -ONE, 101) == 100
    assert blended_entry_price(-1, 100, -2, 101) == 100
    assert blended_entry_price(0, 0, -ONE, PRICE) == PRICE


def test_funding_index_delta__premium_capped_at_cap_times_index():
    cap = price(1_000)  # 1% of 100_000
    assert funding_index_delta(PRICE, price(105_000), WAD // 100, PERIOD, PERIOD) == cap
    assert funding_index_delta(PRICE, price(95_000), WAD // 100, PERIOD, PERIOD) == -cap
    assert funding_index_delta(PRICE, price(105_000), WAD // 100, PERIOD // 2, PERIOD) == cap // 2


def test_funding_index_delta__uncapped_premium_floors():
    assert funding_index_delta(PRICE, PRICE + 10 * ONE, WAD // 100, 1, 3) == 3_333_333_333_333_333_333
    assert funding_index_delta(PRICE, PRICE - 10 * ONE, WAD // 100, 1, 3) == -3_333_333_333_333_333_334
    assert funding_index_delta(PRICE, PRICE + 10 * ONE, WAD // 100, 0, 3) == 0


# ---------------------------------------------------------------- trading and funding


def test_settle_fill__trade_then_price_move_moves_values():
    model = new_model(alice=usd(20_000), bob=usd(20_000))
    trade(model, ALICE, BOB, ONE)
    assert model.position(ALICE, BTC) == Position(ONE, PRICE, 0)
    assert model.position(BOB, BTC) == Position(-ONE, PRICE, 0)
    assert model.long_open_interest[BTC] == model.short_open_interest[BTC] == ONE
    assert model.open_markets == {ALICE: 1, BOB: 1}
    health = model.account_health(ALICE, T0)
    assert (health.value, health.initial_margin, health.maintenance_margin) == (usd(20_000), usd(10_000), usd(5_000))

    move_price(model, 105_000, T0 + 10)
    assert model.account_value(ALICE, T0 + 10) == usd(25_000)
    assert model.account_value(BOB, T0 + 10) == usd(15_000)
    assert model.account_health(BOB, T0 + 10).maintenance_margin == usd(5_250)
    assert model.sum_account_values(T0 + 10) == model.total_held() == usd(40_000)
    assert model.open_interest_balanced()


def test_settle_fill__closing_realises_pnl_into_balance():
    model = new_model(alice=usd(20_000), bob=usd(20_000), carol=usd(20_000))
    trade(model, ALICE, BOB, ONE)
    move_price(model, 101_000, T0 + 10)
    trade(model, CAROL, ALICE, ONE, at=price(101_000), now=T0 + 10)  # alice sells her long to carol
    assert model.position(ALICE, BTC) == Position(0, 0, 0)
    assert model.balance(ALICE) == usd(21_000)
    assert model.open_markets[ALICE] == 0
    assert model.position(CAROL, BTC) == Position(ONE, price(101_000), 0)
    assert model.open_interest_balanced()


def test_accrue_funding__long_pays_short_receives_with_floor():
    model = new_model(mark=PRICE + 50 * ONE, alice=usd(20_000), bob=usd(20_000))  # premium 50 USD
    trade(model, ALICE, BOB, ONE)
    model.accrue_funding(BTC, T0 + 1)
    assert model.funding_index[BTC] == 50 * ONE // PERIOD == 1_736_111_111_111_111
    # unrealised PnL at the mark: +-50 USD; funding over one second: -1737 / +1736 units
    assert model.account_value(ALICE, T0 + 1) == usd(20_050) - 1_737
    assert model.account_value(BOB, T0 + 1) == usd(19_950) + 1_736
    assert model.sum_account_values(T0 + 1) == model.total_held() - 1  # the dust stays in the pool


def test_set_prices__funding_accrues_at_the_prices_before_the_update():
    """No premium for an hour, then one of 50 USD: the update accrues the hour at no premium
    first, so the premium is charged from the update on (one second of it by T0 + 3601)."""
    model = new_model(alice=usd(20_000), bob=usd(20_000))
    trade(model, ALICE, BOB, ONE)
    model.set_prices(BTC, PRICE, PRICE + 50 * ONE, T0 + 3_600, next(blocks))
    assert (model.funding_index[BTC], model.funding_updated_at[BTC]) == (0, T0 + 3_600)
    model.accrue_funding(BTC, T0 + 3_601)
    assert model.funding_index[BTC] == 50 * ONE // PERIOD


def test_set_prices__a_block_moves_at_most_its_limit_and_a_window_at_most_its_own():
    """Limits 20% a block and 50% a 60-second window: two updates in one block reach +20% of the
    block's first price and no further; the next block another 20% (+44%); the one after stops
    at +50% of the window's first price, and the window after it starts from there."""
    model = new_model()
    block = next(blocks)
    model.set_prices(BTC, price(110_000), price(110_000), T0 + 1, block)
    model.set_prices(BTC, price(120_000), price(120_000), T0 + 1, block)
    with pytest.raises(ModelRevert, match="Oracle: mark move above block limit"):
        model.set_prices(BTC, price(120_000), price(120_000) + 1, T0 + 1, block)
    model.set_prices(BTC, price(144_000), price(144_000), T0 + 2, next(blocks))
    assert model.reachable_prices(BTC, price(200_000), price(200_000), T0 + 3) == (price(150_000), price(150_000))
    with pytest.raises(ModelRevert, match="Oracle: index move above window limit"):
        model.set_prices(BTC, price(150_000) + 1, price(150_000), T0 + 3, next(blocks))
    model.set_prices(BTC, price(150_000), price(150_000), T0 + 3, next(blocks))
    assert model.window_reference[BTC] == ReferencePrices(PRICE, PRICE, T0 + 1)
    model.set_prices(BTC, price(180_000), price(180_000), T0 + 61, next(blocks))  # a new window: +20% of 150k
    assert model.window_reference[BTC] == ReferencePrices(price(150_000), price(150_000), T0 + 61)


def test_settle_fill__partial_fills_then_cancel():
    model = new_model(alice=usd(50_000), bob=usd(50_000))
    buy, sell = orders(ALICE, BOB, 3 * ONE)
    model.settle_fill(buy, sell, ONE, PRICE, T0)
    model.settle_fill(buy, sell, ONE, PRICE, T0)
    assert model.filled_size(buy) == model.filled_size(sell) == 2 * ONE
    with pytest.raises(ModelRevert, match="Clearinghouse: not the order's account"):
        model.cancel_order(BOB, buy)
    model.cancel_order(ALICE, buy)
    assert model.filled_size(buy) == 3 * ONE
    with pytest.raises(ModelRevert, match="Clearinghouse: fill exceeds order remaining"):
        model.settle_fill(buy, sell, ONE, PRICE, T0)


def test_settle_fill__a_nonce_fills_once_in_full():
    """An order filled in full spends its nonce: another order of the same account with the same
    nonce is refused, and cancelling one order cancels every order with its nonce."""
    model = new_model(alice=usd(50_000), bob=usd(50_000), carol=usd(50_000))
    buy, sell = orders(ALICE, BOB, ONE)
    model.settle_fill(buy, sell, ONE, PRICE, T0)
    assert model.partly_filled == {}  # filled in one go: a nonce bit, no per-order slot
    twin = replace(buy, size=2 * ONE)  # same account and nonce, another order
    other_sell = replace(sell, nonce=sell.nonce + 100)
    assert model.filled_size(twin) == 2 * ONE
    with pytest.raises(ModelRevert, match="Clearinghouse: fill exceeds order remaining"):
        model.settle_fill(twin, other_sell, ONE, PRICE, T0)
    partial = replace(sell, account=CAROL, size=-3 * ONE)
    model.settle_fill(replace(buy, nonce=buy.nonce + 200), partial, ONE, PRICE, T0)
    assert model.filled_size(partial) == ONE and model.partly_filled == {partial: ONE}
    model.cancel_order(CAROL, replace(partial, size=-ONE))  # a sibling with the same nonce
    assert model.filled_size(partial) == 3 * ONE


def test_settle_fill__revert_leaves_state_unchanged():
    model = new_model(mark=PRICE + 50 * ONE, alice=usd(20_000), bob=usd(20_000))
    trade(model, ALICE, BOB, ONE)
    before = model.snapshot()
    outside = price(101_100)  # 1.05% above the mark of 100_050
    buy, sell = orders(ALICE, BOB, ONE, outside)
    with pytest.raises(ModelRevert) as revert:
        model.settle_fill(buy, sell, ONE, outside, T0 + 30)  # accrues funding before the band check
    assert revert.value.reason == "Clearinghouse: price outside band"
    assert model.snapshot() == before


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda m: m.settle_fill(*orders(ALICE, BOB, ONE), ONE, PRICE, T0 + 61), "Oracle: stale price"),
        (lambda m: m.settle_fill(*orders(ALICE, BOB, ONE, expiry=T0 - 1), ONE, PRICE, T0), "Clearinghouse: order expired"),
        (lambda m: m.settle_fill(*orders(ALICE, BOB, 10 * ONE), 10 * ONE, PRICE, T0), "Clearinghouse: below initial margin"),
        (lambda m: m.withdraw(ALICE, usd(20_001), T0), "MarginPool: amount above balance"),
        (lambda m: m.set_prices(BTC, price(121_000), PRICE, T0 + 1, 1), "Oracle: index move above block limit"),
        (lambda m: m.settle_fill(reduce_only(orders(ALICE, BOB, ONE)[0]), orders(ALICE, BOB, ONE)[1], ONE, PRICE, T0), "Clearinghouse: reduce-only order would grow the position"),
    ],
)
def test_model__failed_checks_raise_contract_reason_and_change_nothing(change, reason):
    model = new_model(alice=usd(20_000), bob=usd(20_000))
    before = model.snapshot()
    with pytest.raises(ModelRevert) as revert:
        change(model)
    assert revert.value.reason == reason
    assert model.snapshot() == before


def test_withdraw__below_initial_margin_reverts():
    model = new_model(alice=usd(20_000), bob=usd(20_000))
    trade(model, ALICE, BOB, ONE)
    assert model.withdrawable(ALICE, T0) == usd(10_000)
    model.withdraw(ALICE, usd(10_000), T0)  # value 10_000 = initial margin: allowed
    with pytest.raises(ModelRevert, match="MarginPool: withdrawal below initial margin"):
        model.withdraw(ALICE, 1, T0)
    assert model.total_held() == usd(30_000)
    with pytest.raises(ModelRevert, match="Oracle: stale price"):
        model.withdrawable(ALICE, T0 + 61)


def test_settle_fills__all_or_nothing():
    model = new_model(alice=usd(20_000), bob=usd(20_000), carol=usd(20_000))
    good = Fill(*orders(ALICE, BOB, ONE), ONE, PRICE)
    bad = Fill(*orders(CAROL, BOB, 2 * ONE), 2 * ONE, PRICE)  # bob would hold -3 BTC on 20_000
    before = model.snapshot()
    with pytest.raises(ModelRevert, match="Clearinghouse: below initial margin"):
        model.settle_fills([good, bad], T0)
    assert model.snapshot() == before
    model.settle_fills([good], T0)
    assert model.position(BOB, BTC).size == -ONE


# ---------------------------------------------------------------- liquidation


def short_two_btc():
    """Bob short 2 BTC at 100_000 with 20_000 (exactly initial margin); alice long; carol liquidates."""
    model = new_model(alice=usd(40_000), bob=usd(20_000), carol=usd(30_000))
    trade(model, ALICE, BOB, 2 * ONE)
    return model


def test_liquidate__healthy_account_reverts():
    model = short_two_btc()
    with pytest.raises(ModelRevert, match="LiquidationEngine: account healthy"):
        model.liquidation.liquidate(CAROL, BOB, BTC, ONE, T0)


def test_liquidate__partial_pays_discount_and_penalty_in_full():
    model = short_two_btc()
    now = T0 + 10
    move_price(model, 105_000, now)  # bob: value 10_000 < maintenance 10_500
    assert model.liquidation.liquidate(CAROL, BOB, BTC, ONE, now) == ONE
    # bob realises -5_000 on 1 BTC; fees on 105_000 notional: discount 1_050, penalty 525
    assert model.position(BOB, BTC) == Position(-ONE, PRICE, 0)
    assert model.balance(BOB) == usd(20_000 - 5_000 - 1_050 - 525)
    assert model.account_value(BOB, now) == usd(8_425)  # 8_425 / 5_250 > 10_000 / 10_500: healthier
    assert model.balance(CAROL) == usd(31_050)
    assert model.position(CAROL, BTC) == Position(-ONE, price(105_000), 0)  # carol takes over the short
    assert model.balance(INSURANCE) == usd(525)
    assert model.sum_account_values(now) == model.total_held() == usd(90_000)
    assert model.open_interest_balanced()


def test_liquidate__partial_reverts_when_fees_would_exhaust_value():
    model = short_two_btc()
    now = T0 + 10
    move_price(model, 109_500, now)  # bob: value 1_000 < discount on 1 BTC (1_095)
    before = model.snapshot()
    with pytest.raises(ModelRevert, match="LiquidationEngine: partial liquidation must leave the account healthier"):
        model.liquidation.liquidate(CAROL, BOB, BTC, ONE, now)
    assert model.snapshot() == before


def test_liquidate__full_bounds_penalty_by_remaining_value():
    model = short_two_btc()
    now = T0 + 10
    move_price(model, 108_500, now)  # bob: value 3_000, maintenance 10_850
    assert model.liquidation.liquidate(CAROL, BOB, BTC, 5 * ONE, now) == 2 * ONE  # clamped to the position
    # bob realises -17_000; notional 217_000: discount 2_170 in full, penalty min(1_085, 830) = 830
    assert model.position(BOB, BTC) == Position(0, 0, 0)
    assert model.open_markets[BOB] == 0
    assert model.balance(BOB) == 0
    assert model.balance(CAROL) == usd(32_170)
    assert model.balance(INSURANCE) == usd(830)
    assert model.position(CAROL, BTC) == Position(-2 * ONE, price(108_500), 0)
    assert model.sum_account_values(now) == model.total_held() == usd(90_000)


def test_liquidate__full_bounds_discount_by_remaining_value():
    model = short_two_btc()
    now = T0 + 10
    move_price(model, 109_500, now)  # bob: value 1_000; discount on 219_000 would be 2_190
    assert model.liquidation.liquidate(CAROL, BOB, BTC, 2 * ONE, now) == 2 * ONE
    assert model.balance(BOB) == 0
    assert model.balance(CAROL) == usd(31_000)
    assert model.balance(INSURANCE) == 0


def test_flag_bankruptcy__negative_value_freezes_account():
    model = short_two_btc()
    now = T0 + 10
    with pytest.raises(ModelRevert, match="LiquidationEngine: account solvent"):
        model.liquidation.flag_bankruptcy(BOB, now)
    move_price(model, 111_000, now)  # bob: 20_000 - 22_000
    assert model.liquidation.flag_bankruptcy(BOB, now) == usd(2_000)
    assert model.bankrupt[BOB]
    assert model.withdrawable(BOB, now) == 0
    with pytest.raises(ModelRevert, match="LiquidationEngine: account bankrupt"):
        model.liquidation.liquidate(CAROL, BOB, BTC, ONE, now)
