"""The clearinghouse's backstop: the insurance vault takes over failing accounts inside its risk limits.

Every story runs through `VaultMirror` (tests/test_insurance_vault.py): the contracts and the reference
model take the same actions and, after each, agree on every balance, position, flag, share and
vault counter. Numbers: BTC at 100k, maintenance margin 5%, backstop ratio 2/3; alice long 0.5 BTC
on 6k collateral is worth 1.5k at 91k (maintenance 2,275, backstop line 1,516) and -1k at 86k.
"""

from fractions import Fraction

from backstop.model.protocol import Position
from conftest import BTC, ETH, USDC, WAD
from test_insurance_vault import (  # noqa: F401  (fixtures are found by name in this module)
    BTC_PRICE, dave, erin, fast, mirror, move_btc, open_long, protocol_invariants,
)

ABOVE_LINE = "LiquidationEngine: account above the backstop line"
LOSS_CAP = "loss above the vault's allowance"
DAY = 86_400


def account_state(mirror, account):
    model = mirror.model
    return model.balance(account.address), [model.position(account.address, market) for market in mirror.markets]


def vault_state(mirror):
    vault = mirror.vault_model
    return account_state(mirror, mirror.protocol.vault), (vault.last_report_value, vault.locked_profit, vault.unlock_end, vault.day_high)


def crash_btc(mirror, percent):
    """Moves BTC from 100k to `percent` of it, in steps within the oracle's limit."""
    mirror.walk_mark(BTC, BTC_PRICE * percent // 100)


# ---------------------------------------------------------------- takeovers inside the limits

def test_backstop__below_the_line_anyone_hands_every_position_to_the_vault(mirror, alice, bob, dave, stranger):
    mirror.deposit(dave, 50_000 * USDC)
    open_long(mirror, alice, bob, 6_000 * USDC)
    mirror.trade((bob, alice, ETH, 2 * WAD, 4_000 * WAD), sender=stranger)  # alice also short 2 ETH
    crash_btc(mirror, 91)
    health = mirror.model.account_health(alice.address, mirror.now())
    assert health.value == 1_500 * USDC and health.value * 3 < health.maintenance_margin * 2  # below the line
    price = mirror.price()

    tx, refusal = mirror.backstop(stranger, alice)

    assert refusal == ""
    takeover = tx.one("Takeover")
    assert (takeover.vault, takeover.value, takeover.markets) == (mirror.vault_address, 1_500 * USDC, 2)
    recorded = tx.one("TakeoverRecorded")
    assert (recorded.account, recorded.loss, recorded.drawdown) == (alice.address, 0, 0)
    # The vault holds every position at the mark, and all of alice's remaining value as collateral.
    vault = mirror.vault_address
    assert (mirror.model.position(vault, BTC).size, mirror.model.position(vault, BTC).entry_price) == (WAD // 2, 91_000 * WAD)
    assert (mirror.model.position(vault, ETH).size, mirror.model.position(vault, ETH).entry_price) == (-2 * WAD, 4_000 * WAD)
    assert mirror.model.balance(vault) == 51_500 * USDC
    # The trader keeps nothing: no positions, no balance, nothing to withdraw.
    assert account_state(mirror, alice) == (0, [Position()] * 3)
    assert mirror.model.open_markets.get(alice.address, 0) == 0
    mirror.reverts(
        "MarginPool: amount above balance", alice, mirror.c.pool.withdraw.call(1),
        lambda now: mirror.model.withdraw(alice.address, 1, now),
    )
    # The buffer is the depositors' income: locked by the takeover's report, it reaches the share
    # price only as it unlocks, linearly over `profit_unlock_time`.
    assert tx.one("ProfitLocked").gain == 1_500 * USDC
    assert Fraction(*mirror.price()) == Fraction(*price)
    vault = mirror.vault_model
    mirror.wait(vault.profit_unlock_time // 3)
    elapsed = mirror.now() - vault.last_report
    assert vault.total_assets(mirror.now()) == 50_000 * USDC + 1_500 * USDC * elapsed // vault.profit_unlock_time  # a third
    mirror.wait(mirror.vault_model.profit_unlock_time)
    assert mirror.vault_model.total_assets(mirror.now()) == 51_500 * USDC
    assert Fraction(*mirror.price()) > Fraction(*price)


def test_backstop__between_the_line_and_maintenance_only_a_keeper(mirror, alice, bob, dave, keeper, stranger):
    mirror.deposit(dave, 50_000 * USDC)
    open_long(mirror, alice, bob, 6_000 * USDC)
    crash_btc(mirror, 92)  # value 2k: below maintenance 2.3k, above the line 1.53k
    backstop = mirror.c.liquidation.backstop.call(alice.address)
    for caller in (stranger, bob, dave):
        mirror.reverts(ABOVE_LINE, caller, backstop, lambda now: mirror.model.liquidation.backstop(False, alice.address, now))
    tx, refusal = mirror.backstop(keeper, alice)
    assert refusal == "" and tx.one("Takeover").value == 2_000 * USDC


def test_backstop__healthy_account_reverts_for_anyone(mirror, alice, bob, carol, dave, keeper, stranger):
    mirror.deposit(dave, 50_000 * USDC)
    open_long(mirror, alice, bob, 6_000 * USDC)
    crash_btc(mirror, 93)  # value 2.5k above maintenance 2,325
    backstop = mirror.c.liquidation.backstop.call(alice.address)
    mirror.reverts(ABOVE_LINE, keeper, backstop, lambda now: mirror.model.liquidation.backstop(True, alice.address, now))
    mirror.reverts(ABOVE_LINE, stranger, backstop, lambda now: mirror.model.liquidation.backstop(False, alice.address, now))
    mirror.fund(carol, 1_000 * USDC)  # collateral, no position
    mirror.reverts(
        "LiquidationEngine: no position", keeper, mirror.c.liquidation.backstop.call(carol.address),
        lambda now: mirror.model.liquidation.backstop(True, carol.address, now),
    )
    mirror.reverts(
        "LiquidationEngine: the vault cannot take itself over", keeper, mirror.c.liquidation.backstop.call(mirror.vault_address),
        lambda now: mirror.model.liquidation.backstop(True, mirror.vault_address, now),
    )


def test_backstop__vault_profits_when_the_price_recovers(mirror, alice, bob, dave, stranger):
    mirror.deposit(dave, 50_000 * USDC)
    open_long(mirror, alice, bob, 6_000 * USDC)
    price_before = Fraction(*mirror.price())
    crash_btc(mirror, 91)
    assert mirror.backstop(stranger, alice)[1] == ""
    move_btc(mirror, -7)  # the taken-over long loses 3,185 first: more than the 1.5k buffer held back
    assert mirror.vault_model.total_assets(mirror.now()) == mirror.vault_value() == 48_315 * USDC  # at once
    assert Fraction(*mirror.price()) < price_before
    mirror.walk_mark(BTC, BTC_PRICE)  # then BTC is back at 100k: worth 56k, a gain on the last report
    assert mirror.vault_value() == 56_000 * USDC
    tx, locked = mirror.process_report(stranger)
    assert tx.one("ProfitLocked").gain == 4_500 * USDC and locked <= 6_000 * USDC
    assert Fraction(*mirror.price()) < Fraction(56_000 * USDC + 1, mirror.vault_model.total_supply + 10**6)
    # Once unlocked, dave's shares are worth the takeover's buffer and the recovery.
    mirror.wait(mirror.vault_model.unlock_end - mirror.now())
    assert mirror.read(mirror.c.vault.convertToAssets.call(mirror.shares(dave))) == 56_000 * USDC - 1
    assert Fraction(*mirror.price()) > price_before


def test_backstop__bankrupt_account_inside_the_loss_cap_is_covered(mirror, alice, bob, dave, stranger):
    mirror.deposit(dave, 50_000 * USDC)
    open_long(mirror, alice, bob, 6_000 * USDC)
    crash_btc(mirror, 86)
    tx, deficit = mirror.flag_bankruptcy(alice, sender=stranger)
    assert deficit == 1_000 * USDC and mirror.model.bankrupt[alice.address]
    price = mirror.price()

    tx, refusal = mirror.backstop(stranger, alice)

    assert refusal == ""
    assert tx.one("Takeover").value == -1_000 * USDC
    recorded = tx.one("TakeoverRecorded")
    assert (recorded.loss, recorded.drawdown) == (1_000 * USDC, 1_000 * USDC)  # the deficit is today's drawdown
    assert account_state(mirror, alice) == (0, [Position()] * 3)
    assert not mirror.model.bankrupt[alice.address]  # resolved: no ADL needed
    assert mirror.vault_model.total_assets(mirror.now()) == 49_000 * USDC
    assert Fraction(*mirror.price()) < Fraction(*price)


def test_liquidate__penalty_raises_the_vaults_share_price_as_it_unlocks(mirror, alice, bob, dave, liquidator, stranger):
    mirror.deposit(dave, 50_000 * USDC)
    open_long(mirror, alice, bob, 6_000 * USDC)
    mirror.fund(liquidator, 100_000 * USDC)
    crash_btc(mirror, 91)
    price = mirror.price()
    worth = mirror.read(mirror.c.vault.convertToAssets.call(mirror.shares(dave)))
    tx, _ = mirror.liquidate(liquidator, alice, BTC, WAD)
    assert tx.one("Liquidation").penalty == 455 * USDC
    assert mirror.vault_value() == 50_455 * USDC
    assert mirror.price() == price  # not yet: income reaches the share price through a report, locked
    tx, locked = mirror.process_report(stranger)
    assert locked == 455 * USDC and mirror.price() == price
    unlock = mirror.vault_model.profit_unlock_time
    assert mirror.vault_model.unlock_end == mirror.now() + unlock
    mirror.wait(unlock // 5)
    elapsed = mirror.now() - mirror.vault_model.last_report
    assert mirror.vault_model.total_assets(mirror.now()) == 50_000 * USDC + 455 * USDC * elapsed // unlock  # a fifth, linearly
    mirror.wait(unlock)
    assert Fraction(*mirror.price()) > Fraction(*price)
    # dave's shares gain the penalty, less what the virtual shares keep (a fraction of a unit here).
    assert worth + 455 * USDC - 1 <= mirror.read(mirror.c.vault.convertToAssets.call(mirror.shares(dave))) <= worth + 455 * USDC


# ---------------------------------------------------------------- refusals: nothing moves

def test_backstop__loss_above_the_allowance_is_refused_and_flags_bankruptcy(mirror, alice, bob, dave, stranger):
    mirror.deposit(dave, 50_000 * USDC)
    mirror.set_risk_limits(5 * WAD, 500 * USDC, 5_000_000 * USDC)
    open_long(mirror, alice, bob, 6_000 * USDC)
    crash_btc(mirror, 86)  # deficit 1k > cap 500
    before = account_state(mirror, alice), vault_state(mirror)

    tx, refusal = mirror.backstop(stranger, alice)

    assert refusal == LOSS_CAP
    assert tx.one("BankruptcyFlagged").deficit == 1_000 * USDC
    assert (account_state(mirror, alice), vault_state(mirror)) == before
    assert mirror.model.bankrupt[alice.address]
    # Refused again: already flagged, no second flag.
    tx, refusal = mirror.backstop(stranger, alice)
    assert refusal == LOSS_CAP and not tx.all("BankruptcyFlagged")
    # The owner raises the cap: the same account is now taken over and unflagged.
    mirror.set_risk_limits(5 * WAD, 1_000 * USDC, 5_000_000 * USDC)
    tx, refusal = mirror.backstop(stranger, alice)
    assert refusal == "" and tx.one("TakeoverRecorded").loss == 1_000 * USDC
    assert not mirror.model.bankrupt[alice.address]


def test_backstop__position_above_the_vaults_limit_is_refused(mirror, alice, bob, carol, dave, keeper, stranger):
    mirror.deposit(dave, 50_000 * USDC)
    mirror.set_max_position(BTC, 4 * WAD // 10)
    open_long(mirror, alice, bob, 6_000 * USDC)
    crash_btc(mirror, 91)
    before = account_state(mirror, alice), vault_state(mirror)
    tx, refusal = mirror.backstop(stranger, alice)
    assert refusal == "position above the vault's limit"
    assert not tx.all("BankruptcyFlagged") and not mirror.model.bankrupt.get(alice.address, False)  # value 1.5k >= 0
    assert (account_state(mirror, alice), vault_state(mirror)) == before
    # At exactly the limit the takeover passes.
    mirror.set_max_position(BTC, WAD // 2)
    assert mirror.backstop(stranger, alice)[1] == ""
    # A takeover that shrinks the vault's position passes whatever the limit.
    mirror.set_max_position(BTC, WAD // 10)
    mirror.fund(carol, 3_000 * USDC)
    mirror.trade((bob, carol, BTC, 3 * WAD // 10, 91_000 * WAD), sender=stranger)  # carol short 0.3 BTC
    mirror.walk_mark(BTC, 97_000 * WAD)  # carol: 1.2k, below maintenance 1,455
    tx, refusal = mirror.backstop(keeper, carol)
    assert refusal == "" and mirror.model.position(mirror.vault_address, BTC).size == WAD // 5


def test_backstop__leverage_above_the_vaults_limit_is_refused(mirror, alice, bob, dave, stranger):
    mirror.deposit(dave, 5_000 * USDC)  # after the takeover: 45.5k notional on 6.5k equity = 7x > 5x
    open_long(mirror, alice, bob, 6_000 * USDC)
    crash_btc(mirror, 91)
    before = account_state(mirror, alice), vault_state(mirror)
    tx, refusal = mirror.backstop(stranger, alice)
    assert refusal == "leverage above the vault's limit"
    assert (account_state(mirror, alice), vault_state(mirror)) == before
    mirror.set_risk_limits(7 * WAD, 10**6 * USDC, 5 * 10**6 * USDC)  # exactly 7x is allowed
    assert mirror.backstop(stranger, alice)[1] == ""


def test_backstop__empty_vault_cannot_cover_a_deficit(mirror, alice, bob, stranger):
    open_long(mirror, alice, bob, 6_000 * USDC)
    crash_btc(mirror, 86)
    tx, refusal = mirror.backstop(stranger, alice)
    assert refusal == "vault equity exhausted"
    assert tx.one("BankruptcyFlagged").deficit == 1_000 * USDC


def test_backstop__daily_loss_cap_accumulates_and_resets_the_next_day(mirror, alice, bob, carol, dave, stranger):
    mirror.deposit(dave, 50_000 * USDC)
    mirror.set_risk_limits(5 * WAD, 1_000 * USDC, 1_500 * USDC)
    open_long(mirror, alice, bob, 6_000 * USDC)
    open_long(mirror, carol, bob, 6_000 * USDC)
    crash_btc(mirror, 86)  # both -1k
    tx, refusal = mirror.backstop(stranger, alice)
    assert refusal == "" and tx.one("TakeoverRecorded").drawdown == 1_000 * USDC
    assert mirror.read(mirror.c.vault.loss_allowance.call()) == 500 * USDC
    tx, refusal = mirror.backstop(stranger, carol)
    assert refusal == LOSS_CAP and tx.one("BankruptcyFlagged").account == carol.address
    # The next day the allowance is whole again.
    mirror.wait(DAY - mirror.now() % DAY)
    assert mirror.read(mirror.c.vault.loss_allowance.call()) == 1_000 * USDC
    mirror.refresh()
    tx, refusal = mirror.backstop(stranger, carol)
    assert refusal == "" and tx.one("TakeoverRecorded").drawdown == 1_000 * USDC
    assert mirror.vault_model.high_day == mirror.now() // DAY
    assert not mirror.model.bankrupt[carol.address]


# ---------------------------------------------------------------- bankruptcy flags

def test_clear_bankruptcy__only_a_flagged_account_back_above_zero(mirror, alice, bob, stranger):
    open_long(mirror, alice, bob, 6_000 * USDC)
    liquidation = mirror.c.liquidation
    mirror.reverts("LiquidationEngine: not bankrupt", stranger, liquidation.clear_bankruptcy.call(alice.address),
                   lambda now: mirror.model.liquidation.clear_bankruptcy(alice.address, now))
    crash_btc(mirror, 86)  # alice -1k, the empty vault refuses her
    mirror.flag_bankruptcy(alice, sender=stranger)
    mirror.reverts("LiquidationEngine: account still in deficit", stranger, liquidation.clear_bankruptcy.call(alice.address),
                   lambda now: mirror.model.liquidation.clear_bankruptcy(alice.address, now))
    mirror.walk_mark(BTC, BTC_PRICE * 95 // 100)  # alice worth 3.5k again
    tx = mirror.clear_bankruptcy(alice, sender=stranger)
    assert tx.one("BankruptcyCleared").account == alice.address
    assert not mirror.model.bankrupt[alice.address]


def test_backstop__a_flagged_vault_takes_over_nothing(mirror, alice, bob, carol, dave, stranger):
    mirror.deposit(dave, 10_000 * USDC)
    open_long(mirror, alice, bob, 6_000 * USDC)
    open_long(mirror, carol, bob, 6_000 * USDC)
    crash_btc(mirror, 91)
    assert mirror.backstop(stranger, alice)[1] == ""  # the vault now holds alice's long: worth 11.5k
    mirror.walk_mark(BTC, BTC_PRICE * 65 // 100)  # its long loses 13k: the vault is 1.5k short
    mirror.flag_bankruptcy(mirror.protocol.vault, sender=stranger)
    tx, refusal = mirror.backstop(stranger, carol)
    assert refusal == "vault flagged bankrupt"
    assert tx.one("TakeoverRefused").reason == refusal
