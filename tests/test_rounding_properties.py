"""Rounding favours the pool, for any input: property tests of the reference model's formulas
(the same formulas as contracts/modules/margin_math.vy; tests/test_clearinghouse_vs_model.py holds
the contracts to the model). Runs under the hypothesis profile chosen by BACKSTOP_FUZZ."""

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from backstop.model.protocol import NOTIONAL_SCALE, WAD, blended_entry_price, funding_payment, margin_requirement, pnl

sizes = st.integers(min_value=1, max_value=10**9 * WAD)
prices = st.integers(min_value=1, max_value=10**9 * WAD)
indices = st.integers(min_value=-(10**30), max_value=10**30)
fractions = st.integers(min_value=1, max_value=WAD)


@given(size=sizes, entry=prices, price=prices)
def test_pnl__both_sides_never_pay_out_more_than_zero(size, entry, price):
    dust = pnl(size, entry, price) + pnl(-size, entry, price)
    assert dust in (-1, 0)


@given(size=sizes, entry=prices, price=prices)
def test_pnl__never_above_the_exact_value(size, entry, price):
    for signed in (size, -size):
        assert pnl(signed, entry, price) <= Fraction(signed * (price - entry), NOTIONAL_SCALE)


@given(size=sizes, now=indices, snapshot=indices)
def test_funding_payment__shorts_never_receive_more_than_longs_pay(size, now, snapshot):
    assert funding_payment(size, now, snapshot) + funding_payment(-size, now, snapshot) in (-1, 0)


@given(size=sizes, price=prices, fraction=fractions)
def test_margin_requirement__never_below_the_exact_value(size, price, fraction):
    exact = Fraction(size * price * fraction, NOTIONAL_SCALE * WAD)
    assert exact <= margin_requirement(size, price, fraction) < exact + 1
    assert margin_requirement(-size, price, fraction) == margin_requirement(size, price, fraction)


@given(held=sizes, entry=prices, added=sizes, price=prices)
def test_blended_entry_price__rounds_against_the_holder(held, entry, added, price):
    exact = Fraction(held * entry + added * price, held + added)
    assert exact <= blended_entry_price(held, entry, added, price) < exact + 1
    assert exact - 1 < blended_entry_price(-held, entry, -added, price) <= exact
