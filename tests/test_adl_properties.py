"""ADL under hypothesis: random books, a crash, one bankrupt account the vault refuses, every policy.

`test_resolve_on_model__*` (model only, fast): 5 to 40 traders over 1 to 3 markets, random
collateral, sizes and entry prices (trades in two phases at different marks), a crash move, one
account made bankrupt whose takeover the vault refuses, and a vault with random capacity. The
keeper's planner (backstop/keeper/adl_planner.py) resolves the round on the reference model
(backstop/model/adl.py), and the design's ADL invariants (docs/design.md, "Invariants" 1, 2, 4, 6) must hold:

- every round closes: by its policy, or, when the book cannot resolve it, by the fallback one
  second past its deadline (`finish_round`);
- a round closed by its policy charges Σ haircuts == D exactly; any round balances to the unit:
  Σ haircuts + deficit spread over the winners' side - residual == D + the rounding of the
  bankrupt account's partial closes (at most one unit per part);
- no winner pays more than its profit at the round's price, over the whole round;
- only opposite-side winners are hit, in the policy's order; every account that was not hit keeps
  its balance and positions to the unit (flat accounts included; a spread loss is paid lazily);
- per market, vault absorption + force-closed size == the bankrupt size;
- while the round is open, every account holding nothing on a side the round can charge may
  withdraw; afterwards no side is exposed;
- no account ends with a negative value (other accounts already under water excepted, and, after a
  fallback, the accounts of the side the rest of the deficit was spread over), open interest
  long == short, the pool holds at least Σ account values;
- the bankrupt account ends flat at exactly zero; rounding dust is spread over the winners' side,
  never charged to the vault while anyone holds that side.

`test_execute__contract_equals_model_*` (chain): a smaller book on Anvil through `AdlMirror`
(tests/test_adl.py): the contracts and the model run the same round, agree after every call and
every engine event, and the same invariants hold on the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from backstop.keeper.adl_planner import MarketToResolve, plan_market, winner_states
from backstop.chain.deployment import ProtocolConfig
from backstop.model import adl
from backstop.model.adl import PRO_RATA, QUEUE_HYPERLIQUID, QUEUE_PNL_LEVERAGE, RISK_AWARE, AdlModel
from backstop.model.liquidation import LiquidationModel
from backstop.model.protocol import WAD, Fill, MarketParams, Model, ModelRevert, Order, pnl
from backstop.model.vault import VaultModel
from test_adl import EXTRAS, AdlMirror, mirror, protocol_invariants  # noqa: F401  (fixtures by name)
from test_insurance_vault import dave, erin, fast  # noqa: F401

USDC = 10**6
T0 = 1_700_000_000
POLICIES = (QUEUE_PNL_LEVERAGE, QUEUE_HYPERLIQUID, PRO_RATA, RISK_AWARE)
PRICES = (100_000 * WAD, 4_000 * WAD, 200 * WAD)  # BTC, ETH, SOL as deployed
PARAMS = MarketParams(
    initial_margin=WAD // 10, maintenance_margin=WAD // 20, price_band=WAD // 20,
    max_open_interest=10**9 * WAD, funding_premium_cap=WAD // 100, funding_period=8 * 3600,
)
VAULT = "0x" + "fa" * 20
ORACLE = ProtocolConfig()  # the deployed oracle's limits
ROUND_DURATION = 3600


def trader(index: int) -> str:
    return "0x%040x" % (0x1000 + index)


# ---------------------------------------------------------------- the book


@dataclass(frozen=True)
class Trade:
    buyer: int
    seller: int
    market: int
    # fraction (per mille) of the buyer's collateral x 9 used as notional: 9x leverage at 1000
    use: int


@dataclass(frozen=True)
class Book:
    """A crash scenario as plain data, so the model and the chain build the same one."""

    collateral: tuple[int, ...]  # per trader, 1e6 units; trader 0 is the one that goes bankrupt
    markets: int
    # per market: the second phase's mark as a percentage of the first, and the crash's
    second_phase: tuple[int, ...]
    crash: tuple[int, ...]
    # the victim's side per market: +1 long, -1 short, 0 none (at least one hurt by the crash)
    victim_sides: tuple[int, ...]
    victim_use: int  # per mille of 9x leverage the victim takes in each of its markets
    victim_counterparties: int  # how many of the deepest pockets take the other side of it
    trades: tuple[tuple[Trade, ...], tuple[Trade, ...]]  # phase 1, phase 2
    vault_deposit: int
    vault_max_position: tuple[int, ...]  # per market, in base units (1e18)
    batch_size: int


@st.composite
def books(draw, min_traders=5, max_traders=40, max_trades=60):
    n = draw(st.integers(min_traders, max_traders))
    markets = draw(st.integers(1, 3))
    collateral = tuple(draw(st.lists(st.integers(1_000, 200_000), min_size=n, max_size=n)))
    collateral = tuple(c * USDC for c in collateral)
    second = tuple(draw(st.lists(st.integers(85, 115), min_size=markets, max_size=markets)))
    crash = tuple(
        draw(st.lists(st.sampled_from([60, 65, 70, 75, 80, 85, 115, 120, 130, 140]), min_size=markets, max_size=markets))
    )
    # The victim is on the losing side of every crash by default; sometimes on the winning one in one market.
    sides = [-1 if c > 100 else 1 for c in crash]
    if markets > 1 and draw(st.booleans()):
        flip = draw(st.integers(0, markets - 1))
        sides[flip] = draw(st.sampled_from([0, -sides[flip]]))
    if all(side == 0 for side in sides):
        sides[0] = -1 if crash[0] > 100 else 1
    trade = st.builds(
        Trade, st.integers(0, n - 1), st.integers(0, n - 1), st.integers(0, markets - 1), st.integers(50, 1000)
    )
    phase1 = tuple(draw(st.lists(trade, min_size=1, max_size=max_trades)))
    phase2 = tuple(draw(st.lists(trade, max_size=max_trades // 2)))
    vault_deposit = draw(st.sampled_from([0, 1_000, 20_000, 300_000, 5_000_000])) * USDC
    max_position = tuple(
        draw(st.lists(st.sampled_from([0, WAD // 100, WAD, 10**6 * WAD]), min_size=markets, max_size=markets))
    )
    batch_size = draw(st.sampled_from([1, 2, 3, 250]))
    victim_use = draw(st.integers(700, 1000))
    counterparties = draw(st.integers(1, min(6, n - 1)))
    return Book(
        collateral, markets, second, crash, tuple(sides), victim_use, counterparties, (phase1, phase2), vault_deposit, max_position, batch_size
    )


class ModelExchange:
    """Builds a `Book` on the reference model: exchange, vault (refusing takeovers) and ADL engine."""

    def __init__(self, book: Book):
        self.book = book
        self.now = T0
        self.block = 0  # the model's block number: every price update in a block of its own
        self.model = Model(ORACLE.max_block_move, ORACLE.move_window, ORACLE.max_window_move, ORACLE.staleness, VAULT)
        LiquidationModel(self.model, WAD // 100, WAD // 100)
        self.model.transactional = True
        for market in range(book.markets):
            self.model.initialize_feed(market, PRICES[market], PRICES[market], self.now)
            self.model.list_market(PARAMS, self.now)
        # Loss cap 0: the vault refuses every account with a deficit (ADL must resolve it).
        self.vault = VaultModel(self.model, VAULT, 7 * 86400, 86400, 5 * WAD, 0, 0)
        for market in range(book.markets):
            self.vault.set_max_position(market, book.vault_max_position[market])
        self.engine = AdlModel(self.model, ROUND_DURATION)
        self.nonce = 0
        self.traders = [trader(i) for i in range(len(book.collateral))]

    def tick(self, seconds: int = 12) -> None:
        self.now += seconds

    def deposit(self) -> None:
        for account, amount in zip(self.traders, self.book.collateral):
            self.model.deposit(account, amount)
        if self.book.vault_deposit:
            self.model.deposit(VAULT, self.book.vault_deposit)

    def order_pair(self, buyer: str, seller: str, market: int, size: int, price: int):
        self.nonce += 2
        far = self.now + 10**8
        return Order(buyer, market, size, price, self.nonce, far), Order(seller, market, -size, price, self.nonce + 1, far)

    def try_trade(self, buyer: str, seller: str, market: int, size: int) -> bool:
        """One fill at the mark; False (nothing changed) if the model refuses it (margin)."""
        if buyer == seller or size <= 0:
            return False
        price = self.model.latest_prices(market)[1]
        buy, sell = self.order_pair(buyer, seller, market, size, price)
        try:
            self.model.settle_fills([Fill(buy, sell, size, price)], self.now)
        except ModelRevert:
            return False
        return True

    def size_for(self, account_index: int, market: int, use: int) -> int:
        """Notional = collateral x 9 x use / 1000 at the current mark, in base units."""
        price = self.model.latest_prices(market)[1]
        dollars = self.book.collateral[account_index] * 9 * use // 1000
        return max(dollars * 10**30 // price // 10**12 * 10**12, 10**12)  # whole 1e-6 units

    def move(self, market: int, percent_of_start: int) -> None:
        """Walks index and mark together to `percent_of_start` of the market's first price, a block
        (12 s) per update within the oracle's limits, waiting out a move window with no room left."""
        target = PRICES[market] * percent_of_start // 100
        while (current := self.model.latest_prices(market)[1]) != target:
            self.tick()
            price, _ = self.model.reachable_prices(market, target, target, self.now)
            if price == current:
                self.now = self.model.window_end(market)
            else:
                self.set_prices(market, price)

    def set_prices(self, market: int, price: int) -> None:
        self.block += 1
        self.model.set_prices(market, price, price, self.now, self.block)

    def refresh(self) -> None:
        self.tick()
        for market in range(self.book.markets):
            self.set_prices(market, self.model.latest_prices(market)[1])

    def build(self) -> str | None:
        """Deposits, two trading phases, the crash; returns None if the victim did not go under."""
        book = self.book
        self.deposit()
        victim = self.traders[0]
        # The victim's levered positions, against counterparties chosen by the first trades.
        for market, side in enumerate(book.victim_sides):
            if side == 0:
                continue
            size = self.size_for(0, market, book.victim_use) // max(1, sum(1 for s in book.victim_sides if s))
            # Against the deepest pockets (their margin rarely stops the trade), in equal parts.
            deepest = sorted(range(1, len(self.traders)), key=lambda i: -book.collateral[i])[: book.victim_counterparties]
            for i in deepest:
                part = size // len(deepest) // 10**12 * 10**12
                if side > 0:
                    self.try_trade(victim, self.traders[i], market, part)
                else:
                    self.try_trade(self.traders[i], victim, market, part)
        for phase, trades in enumerate(book.trades):
            if phase == 1:
                for market in range(book.markets):
                    self.move(market, book.second_phase[market])
            for t in trades:
                if 0 in (t.buyer, t.seller):
                    continue  # the victim trades only above
                self.try_trade(self.traders[t.buyer], self.traders[t.seller], t.market, self.size_for(t.buyer, t.market, t.use) // 4)
        for market in range(book.markets):
            self.move(market, book.crash[market])
        self.refresh()
        if self.model.account_value(victim, self.now) >= 0:
            return None
        return victim


def account_state(model: Model, account: str, markets: int):
    return model.balance(account), tuple(model.position(account, market) for market in range(markets))


@dataclass
class Before:
    """What the round's invariants compare against, read when the account is flagged."""

    deficit: int
    states: dict  # account -> (balance, positions)
    under_water: set  # other accounts already below zero
    bankrupt_sizes: dict
    prices: dict
    vault_value: int


def observe(model: Model, victim: str, now: int, markets: int) -> Before:
    vault = model.insurance_account
    accounts = sorted(model.accounts() | {vault})
    values = {account: model.account_value(account, now) for account in accounts}
    return Before(
        deficit=-model.account_health(victim, now, fresh=True).value,
        states={account: account_state(model, account, markets) for account in accounts},
        under_water={account for account, value in values.items() if value < 0 and account != victim},
        bankrupt_sizes={market: model.position(victim, market).size for market in range(markets)},
        prices={market: model.latest_prices(market)[1] for market in range(markets)},
        vault_value=values[vault],
    )


def check_round(exchange: ModelExchange, victim: str) -> adl.ClosedRound:
    """Refused takeover, flag, the round opened (bystanders still withdraw), the planner's batches,
    the fallback past the deadline if the book could not resolve it; every invariant of the round."""
    model, engine, now, markets = exchange.model, exchange.engine, exchange.now, exchange.book.markets
    refusal = model.liquidation.backstop(True, victim, now)
    assert refusal != "" and model.bankrupt[victim]
    before = observe(model, victim, now, markets)
    engine.open_round(victim, now)
    check_gate(model, engine, victim, markets)
    for market in range(markets):
        if engine.round(victim).markets_left & (1 << market):
            to_resolve = MarketToResolve.on_model(engine, victim, market)
            for batch in plan_market(to_resolve, winner_states(model, victim, market, now), exchange.book.batch_size):
                engine.execute(victim, market, batch.winners, batch.declaration, now)
    if engine.round(victim).markets_left:
        check_gate(model, engine, victim, markets)
        later = engine.round(victim).deadline + 1
        engine.finish_round(victim, later)
        exchange.now = later
    closed = engine.closed_rounds[-1]
    check_closed_round(model, engine, victim, exchange.now, markets, before, closed)
    return closed


def check_gate(model: Model, engine: AdlModel, victim: str, markets: int) -> None:
    """While the round is open only the bankrupt account and the accounts holding a side it can
    still charge wait; everyone else may withdraw what its margin allows."""
    exposed = {(m, 1 if engine.market_round(victim, m).bankrupt_size > 0 else 0)
               for m in range(markets) if engine.round(victim).markets_left & (1 << m)}
    assert {key for key, count in model.adl_exposure.items() if count} == exposed
    for account in model.accounts():
        holds_exposed = any((m, 0 if model.position(account, m).size > 0 else 1) in exposed
                            for m in range(markets) if model.position(account, m).size)
        assert model._withdrawal_waits(account) == (account == victim or model.bankrupt.get(account, False) or holds_exposed), account


def check_closed_round(model: Model, engine: AdlModel, victim: str, now: int, markets: int, before: Before, closed) -> None:
    vault = model.insurance_account
    assert closed.account == victim and not model.in_adl_round.get(victim) and not any(model.adl_exposure.values())
    assert engine.round(victim).markets_left == 0
    assert closed.deficit == before.deficit
    assert closed.haircuts == sum(hit.haircut for hit in closed.hits)
    if not closed.fallback:
        assert closed.haircuts == before.deficit  # Σ haircuts == D exactly
    hit_accounts = {hit.winner for hit in closed.hits}
    closed_size = {market: 0 for market in range(markets)}
    charged: dict = {}
    for hit in closed.hits:
        start = before.states[hit.winner][1][hit.market]
        # Only opposite-side winners, profitable at the round's price, never more than that profit.
        assert start.size != 0 and (start.size > 0) != (before.bankrupt_sizes[hit.market] > 0)
        assert hit.price == before.prices[hit.market]
        profit = pnl(start.size, start.entry_price, hit.price)
        assert 0 < profit and hit.haircut <= profit
        charged[(hit.winner, hit.market)] = charged.get((hit.winner, hit.market), 0) + hit.haircut
        assert charged[(hit.winner, hit.market)] <= profit  # over the round too
        assert hit.size_closed <= abs(start.size)
        assert hit.winner != victim and hit.winner not in before.under_water and hit.winner != vault
        closed_size[hit.market] += hit.size_closed
    absorbed = {market: 0 for market in range(markets)}
    for account, market, size in engine.absorptions:
        if account == victim:
            absorbed[market] += size
    for market in range(markets):
        # Vault absorption (the fallback's included) + force-closed size == the bankrupt size.
        assert absorbed[market] + closed_size[market] == abs(before.bankrupt_sizes[market])
        if adl.is_queue(engine.market_round(victim, market).policy) and not closed.fallback:
            assert absorbed[market] == 0
    # Every account that was not hit keeps its balance and positions to the unit.
    for account, state in before.states.items():
        if account in hit_accounts or account in (victim, vault):
            continue
        assert account_state(model, account, markets) == state, account
    # The round balances to the unit: what came in, less the residual, is D plus the rounding of
    # the partial closes (each realises the bankrupt account's PnL rounded down). Prices and
    # funding stand still in these books, so nothing else moves the account's value.
    parts = sum(1 for hit in closed.hits if hit.size_closed) + sum(1 for m in absorbed if absorbed[m])
    assert 0 <= closed.haircuts + closed.socialised - closed.residual - before.deficit <= parts
    assert closed.residual <= 0 or closed.socialised == 0
    # Dust is spread over the winners' side: the vault pays nothing while anyone holds it.
    paying = {(m, 1 if before.bankrupt_sizes[m] > 0 else 0) for m in range(markets) if before.bankrupt_sizes[m]}
    if any(model.short_open_interest.get(m, 0) if side else model.long_open_interest.get(m, 0) for m, side in paying):
        assert closed.residual >= 0
    # No negative account (other accounts already under water excepted). What a round spreads over
    # the winners' side by size is exempt: after a fallback the rest of the deficit (such an
    # account may go under water and through the waterfall), after a policy's close only the
    # rounding dust, which can take an account a haircut left a few units above zero at most that
    # dust below it (PRO_RATA_DUST_BELOW_ZERO).
    spread_over = {account for account in before.states
                   if any(model.position(account, m).size and (m, 0 if model.position(account, m).size > 0 else 1) in paying
                          for m in range(markets))} if closed.socialised else set()
    for account in before.states:
        if account not in before.under_water and account != vault:
            floor = (-math.inf if closed.fallback else -closed.socialised) if account in spread_over else 0
            assert model.account_value(account, now) >= floor, account
    assert model.open_interest_balanced()
    assert model.sum_account_values(now) <= model.total_held()
    # The bankrupt account is flat at exactly zero.
    assert model.open_markets.get(victim, 0) == 0 and model.balance(victim) == 0 and not model.bankrupt[victim]
    assert all(model.position(victim, market).size == 0 for market in range(markets))


MODEL_EXAMPLES = settings.default.max_examples * 4  # per policy: ci 200, deep 20,000 (about 1 ms each)


@pytest.mark.parametrize("policy", POLICIES, ids=[adl.POLICY_NAMES[p] for p in POLICIES])
@settings(max_examples=MODEL_EXAMPLES)
@given(book=books())
def test_resolve_on_model__every_adl_invariant_holds(policy, book):
    exchange = ModelExchange(book)
    victim = exchange.build()
    assume(victim is not None)
    for market in range(book.markets):
        exchange.engine.set_policy(market, policy)
    check_round(exchange, victim)


# ---------------------------------------------------------------- shrunk counterexamples, kept as regression tests

# A book hypothesis found: under the BitMEX queue the SOL market's last winner (trader 1) is capped
# at its whole profit at the round's price and 80,760 units of deficit are left; submitted again,
# the partly closed winner used to pay beyond its profit.
BROUGHT_BACK = Book(
    collateral=(14_210 * USDC, 9_226 * USDC, 1_000 * USDC, 24_697 * USDC, 6_275 * USDC, 3_977 * USDC), markets=3,
    second_phase=(85, 85, 85), crash=(140, 60, 75), victim_sides=(-1, 1, 1), victim_use=902, victim_counterparties=4,
    trades=((Trade(3, 5, 0, 271), Trade(4, 5, 0, 986)), (Trade(1, 3, 2, 181), Trade(2, 5, 2, 50))),
    vault_deposit=0, vault_max_position=(0, 0, 0), batch_size=1,
)


# A book hypothesis found: under pro-rata a winner's haircut, capped at its value, leaves it at 1
# unit, and the round's rounding dust spread over its side by size then takes it to -1.
PRO_RATA_DUST_BELOW_ZERO = Book(
    collateral=(1_000 * USDC,) * 5, markets=3, second_phase=(85, 85, 85), crash=(130, 60, 60), victim_sides=(-1, 1, 1),
    victim_use=700, victim_counterparties=3, trades=((Trade(2, 1, 0, 730),), (Trade(2, 1, 0, 806),)),
    vault_deposit=1_000 * USDC, vault_max_position=(0, 0, 10**16), batch_size=1,
)


def test_execute__pro_rata_dust_takes_a_capped_winner_at_most_the_dust_below_zero():
    exchange = ModelExchange(PRO_RATA_DUST_BELOW_ZERO)
    victim = exchange.build()
    for market in range(3):
        exchange.engine.set_policy(market, PRO_RATA)
    check_round(exchange, victim)
    assert exchange.model.account_value(trader(1), exchange.now) == -1


def test_execute__winner_brought_back_never_pays_beyond_its_profit():
    exchange = ModelExchange(BROUGHT_BACK)
    victim = exchange.build()
    model, engine, now, sol = exchange.model, exchange.engine, exchange.now, 2
    model.liquidation.backstop(True, victim, now)
    before = observe(model, victim, now, 3)
    engine.open_round(victim, now)
    for market in range(3):
        if engine.round(victim).markets_left & (1 << market):
            for batch in plan_market(MarketToResolve.on_model(engine, victim, market), winner_states(model, victim, market, now), 1):
                engine.execute(victim, market, batch.winners, batch.declaration, now)
    state = engine.market_round(victim, sol)
    assert (state.size_left, state.deficit_left) == (0, 80_760)
    winner = trader(1)
    start = before.states[winner][1][sol]
    profit = pnl(start.size, start.entry_price, state.price)
    charged = sum(h.haircut for h in engine.round_hits[victim] if h.winner == winner and h.market == sol)
    assert charged == profit == 1_298_181_400  # all of it
    assert model.position(winner, sol).size != 0  # partly closed, and its rest shows no profit now
    engine.execute(victim, sol, [winner], adl.Declaration(), now)
    assert engine.skips[-1] == adl.Skip(victim, winner, sol, adl.SKIP_UNPROFITABLE)
    assert sum(h.haircut for h in engine.round_hits[victim] if h.winner == winner and h.market == sol) == profit
    engine.finish_round(victim, engine.round(victim).deadline + 1)  # the rest goes to the fallback
    assert engine.closed_rounds[-1].socialised >= 80_760


# ---------------------------------------------------------------- contract == model on random books (chain)


class ChainExchange(ModelExchange):
    """Builds a `Book` through `AdlMirror`: every deposit, fill and price on the chain and the
    model, compared after each. The model says first whether a fill passes its margin checks; only
    those are sent."""

    def __init__(self, book: Book, mirror: AdlMirror, depositor, sender):
        self.book, self.mirror, self.depositor, self.sender = book, mirror, depositor, sender
        self.model, self.engine, self.nonce = mirror.model, mirror.adl_model, 0
        self.people = EXTRAS[: len(book.collateral)]
        self.traders = [person.address for person in self.people]
        self.by_address = {person.address: person for person in self.people}
        mirror.set_risk_limits(5 * WAD, 0, 0)  # refuses every account with a deficit
        for market in range(book.markets):
            mirror.set_max_position(market, book.vault_max_position[market])

    @property
    def now(self) -> int:
        return self.mirror.now()

    def tick(self, seconds: int = 12) -> None:
        pass  # the chain's clock runs by itself

    def deposit(self) -> None:
        for person, amount in zip(self.people, self.book.collateral):
            self.mirror.fund_for(person, amount)
        if self.book.vault_deposit:
            self.mirror.deposit(self.depositor, self.book.vault_deposit)

    def try_trade(self, buyer: str, seller: str, market: int, size: int) -> bool:
        saved = self.model.snapshot()
        if not super().try_trade(buyer, seller, market, size):
            return False
        self.model.restore(saved)
        price = self.model.latest_prices(market)[1]
        self.mirror.trade((self.by_address[buyer], self.by_address[seller], market, size, price), sender=self.sender)
        return True

    def move(self, market: int, percent_of_start: int) -> None:
        self.mirror.walk_mark(market, PRICES[market] * percent_of_start // 100)

    def set_prices(self, market: int, price: int) -> None:
        self.mirror.set_prices(market, price, price)


CHAIN_EXAMPLES = max(3, settings.default.max_examples // 16)  # per policy: ci 3 (12 in all), deep 312


# Found by hypothesis once the oracle walked crashes a block at a time: market 1's winners hold
# too little value to cover its part, so the keeper's lists leave it open and the round ends at
# its deadline through the fallback.
UNCOVERABLE_MARKET = Book(
    collateral=(1_000_000_000, 131_071_000_000, 1_000_000_000, 7_699_000_000), markets=2, second_phase=(85, 85),
    crash=(130, 60), victim_sides=(-1, 1), victim_use=700, victim_counterparties=3,
    trades=((Trade(0, 0, 0, 50), Trade(1, 3, 0, 150), Trade(0, 0, 0, 50), Trade(0, 0, 0, 50), Trade(0, 0, 0, 50)), ()),
    vault_deposit=0, vault_max_position=(0, 0), batch_size=1,
)


# Books found on the model (issue 16) where each case that random books reach only by luck happens
# for sure; `test_fixed_books__reach_their_case` proves each still does, the chain test below runs
# each under every policy.
# Under the Hyperliquid queue a winner's haircut is capped (its account value) and the remainder
# spills over to the winners after it; the round still closes with Σ haircuts == D.
CAPPED_SPILL = Book(
    collateral=(3_522_000_000, 3_332_000_000, 3_600_000_000, 56_621_000_000, 60_756_000_000, 1_826_000_000), markets=1,
    second_phase=(85,), crash=(80,), victim_sides=(1,), victim_use=785, victim_counterparties=3,
    trades=((Trade(1, 1, 0, 246),), (Trade(4, 4, 0, 167), Trade(1, 2, 0, 381), Trade(4, 1, 0, 165), Trade(2, 2, 0, 901))),
    vault_deposit=20_000_000_000, vault_max_position=(10**24,), batch_size=1,
)
# Under risk-aware the size is matched before the deficit: the last winners pay a haircut and
# close nothing (haircut-only hits).
HAIRCUT_ONLY = Book(
    collateral=(2_204_000_000, 27_877_000_000, 32_421_000_000, 3_112_000_000, 19_216_000_000, 27_284_000_000, 1_001_000_000, 113_177_000_000),
    markets=1, second_phase=(95,), crash=(60,), victim_sides=(1,), victim_use=701, victim_counterparties=6,
    trades=((Trade(2, 4, 0, 68), Trade(7, 0, 0, 588), Trade(4, 5, 0, 834), Trade(6, 7, 0, 943), Trade(7, 7, 0, 803), Trade(4, 6, 0, 389),
             Trade(7, 6, 0, 702), Trade(7, 2, 0, 123)), (Trade(3, 6, 0, 490), Trade(6, 3, 0, 173))),
    vault_deposit=300_000_000_000, vault_max_position=(WAD,), batch_size=250,
)
# Under pro-rata the vault (20,000 deposited, no position limit to speak of) absorbs up to its
# leverage limit, less than the bankrupt size; the winners close the rest.
VAULT_AT_ITS_LEVERAGE = Book(
    collateral=(53_052_000_000, 2_679_000_000, 82_681_000_000, 1_008_000_000), markets=1, second_phase=(100,), crash=(70,),
    victim_sides=(1,), victim_use=743, victim_counterparties=2,
    trades=((Trade(3, 2, 0, 50), Trade(3, 3, 0, 185), Trade(1, 3, 0, 442), Trade(3, 3, 0, 121), Trade(2, 2, 0, 400), Trade(0, 3, 0, 167),
             Trade(2, 1, 0, 150), Trade(1, 3, 0, 621)), ()),
    vault_deposit=20_000_000_000, vault_max_position=(10**24,), batch_size=3,
)


def _resolve_with_probes(book: Book, policy: int, monkeypatch) -> tuple[adl.ClosedRound, ModelExchange, bool]:
    """The book resolved on the model under `policy`; also whether any haircut was capped (the
    engine asked more of a queue winner than `haircut_room` allowed)."""
    asked, capped = [0], [False]
    queue_share, haircut_room = adl.queue_share, adl.haircut_room

    def share(size_left, deficit_left, position):
        size, haircut = queue_share(size_left, deficit_left, position)
        asked[0] = haircut
        return size, haircut

    def room(*args):
        allowed = haircut_room(*args)
        capped[0] = capped[0] or allowed < asked[0]
        return allowed

    monkeypatch.setattr(adl, "queue_share", share)
    monkeypatch.setattr(adl, "haircut_room", room)
    exchange = ModelExchange(book)
    victim = exchange.build()
    assert victim is not None
    for market in range(book.markets):
        exchange.engine.set_policy(market, policy)
    return check_round(exchange, victim), exchange, capped[0]


def test_fixed_books__reach_their_case(monkeypatch):
    closed, _, capped = _resolve_with_probes(CAPPED_SPILL, QUEUE_HYPERLIQUID, monkeypatch)
    assert capped and not closed.fallback and closed.haircuts == closed.deficit
    closed, _, _ = _resolve_with_probes(HAIRCUT_ONLY, RISK_AWARE, monkeypatch)
    assert any(hit.size_closed == 0 and hit.haircut > 0 for hit in closed.hits) and closed.haircuts == closed.deficit
    closed, exchange, _ = _resolve_with_probes(VAULT_AT_ITS_LEVERAGE, PRO_RATA, monkeypatch)
    absorbed = sum(size for _, _, size in exchange.engine.absorptions)
    bankrupt_size = abs(exchange.engine.market_round(closed.account, 0).bankrupt_size)
    assert 0 < absorbed < bankrupt_size and not closed.fallback


@pytest.mark.parametrize("policy", POLICIES, ids=[adl.POLICY_NAMES[p] for p in POLICIES])
@settings(max_examples=CHAIN_EXAMPLES)
@given(book=books(min_traders=4, max_traders=8, max_trades=8))
@example(book=UNCOVERABLE_MARKET)
@example(book=CAPPED_SPILL)
@example(book=HAIRCUT_ONLY)
@example(book=VAULT_AT_ITS_LEVERAGE)
def test_execute__contract_equals_model_on_random_books(mirror, dave, keeper, stranger, policy, book):
    checkpoint = mirror.checkpoint()
    try:
        exchange = ChainExchange(book, mirror, dave, stranger)
        victim = exchange.build()
        assume(victim is not None)
        for market in range(book.markets):
            mirror.set_policy(market, policy)
        tx, refusal = mirror.backstop(keeper, exchange.by_address[victim])
        assert refusal != "" and mirror.model.bankrupt[victim]
        now = mirror.now()
        before = observe(mirror.model, victim, now, book.markets)
        mirror.resolve(exchange.by_address[victim], book.batch_size)
        if mirror.adl_model.round(victim).markets_left:  # the book could not resolve it: the fallback
            mirror.wait_past(mirror.adl_model.round(victim).deadline)
            mirror.finish_round(exchange.by_address[victim], stranger)
        closed = mirror.adl_model.closed_rounds[-1]
        check_closed_round(mirror.model, mirror.adl_model, victim, mirror.now(), book.markets, before, closed)
    finally:
        mirror.rollback(checkpoint)
