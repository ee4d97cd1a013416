"""The whole waterfall in the state machine (issue 16): the core machine of test_state_machine.py plus
the insurance vault and the ADL engine, their actors and the attackers that aim at them.

`WaterfallMachine` extends `ProtocolMachine` (every core rule and check still runs) with:
- depositors (a pure liquidity provider, two traders, the attacker) who deposit and mint, for
  themselves or as operators, request redemptions (for another controller, from another owner's
  shares), claim them through `redeem` and `withdraw` (EIP-7540), name operators, approve and
  transfer shares; anyone's `process_report`;
- the keeper's waterfall: `backstop` (takeovers and refusals by limit), ADL rounds opened for
  refused bankrupt accounts (those bankrupt together on the same markets and sides netted into one
  round, `join_round`, which the keeper also tries at other times and on other rounds; two accounts driven under
  in one gap for it) (crashes aimed at an account that first traded against every trader,
  at staggered prices, beside a profitable position on its own side) and executed under each
  policy with honest planner lists and hostile ones (stale, duplicated, out of order, incomplete,
  junk, the bankrupt side's own positions, a declaration that lies), rounds that reach their
  deadline and are ended by anyone (`finish_round`); the owner switches policies, the round
  duration and the vault's limits;
- auctions: the owner's schedule and the volunteer step, volunteers' takes of a round's auction
  (in the keeper's pass the liquidator and the market maker each take a third), the vault's
  unwinds started by the keeper or by anyone, their takes and cancels;
- attackers: the wash pair, the just-in-time deposit around a takeover, a winner that trades
  between the keeper's planning and execution, bursts of oracle updates, donations to the vault.

The reference model carries the vault (`VaultModel`) and the ADL engine (`AdlModel`), so every action
is one transaction of the whole exchange on both sides, and after every step the vault's and the
engines' state joins the comparison (shares, supply, requests, operators, allowances, unlock times,
income locked, the day's high, limits, totalAssets, drawdown, loss allowance; rounds per account and
per market, exposure and loss indices, policies, flags; auctions, volunteers' premiums not yet
settled, auction parameters). Every transaction's ADL events (hits, skips with their reasons,
settled volunteer takes, netted accounts, closed rounds) must equal the model's. The waterfall's invariants are checked
after every step in `WaterfallMachine.check_waterfall` (see tests/README.md for the map).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import pytest
from eth_account import Account as EthAccount
from eth_utils import keccak
from coincurve import PrivateKey
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition

from backstop.chain.events import EventDecoder
from backstop.keeper.adl_executor import netting_groups
from backstop.keeper.adl_planner import MarketToResolve, plan_market, winner_states
from backstop.model.adl import AdlModel, Declaration, MarketRound, Round
from backstop.model.liquidation import offered
from backstop.model.protocol import ZERO_ADDRESS, ModelRevert, pnl
from backstop.model.vault import VIRTUAL_ASSETS, VIRTUAL_SHARES, Request, VaultModel
from test_state_machine import (  # noqa: F401  (env is a fixture, found by name)
    PROFILE, RUNS, STATS, USDC, WAD, WALLET, ProtocolMachine, _abi, _model_from_chain, _run, action, env, market_id, rarely, replay,
)

KEEPER_ONLY = "keeper_roles: caller is not a keeper"
OWNER_ONLY = "ownable: caller is not the owner"
MAX_UINT = 2**256 - 1
# The accomplice of the wash pair: a second account of the attacker, with a key of its own.
ACCOMPLICE_KEY = keccak(text="backstop wash pair accomplice")
ACCOMPLICE = EthAccount.from_key(ACCOMPLICE_KEY).address
# Two more accounts that go bankrupt together in one gap (`crash_two_into_adl`), each with a key.
TWIN_KEYS = [keccak(text=f"backstop netting twin {i}") for i in range(2)]
TWINS = [EthAccount.from_key(key).address for key in TWIN_KEYS]
# The setup's vault: a liquidity provider's deposit, and short waits so that a run sees claims.
LP_DEPOSIT = 2_000_000 * USDC
LOCKUP, DELAY, PROFIT_UNLOCK = 2 * 3600, 3600, 86_400
# Loss caps small beside the traders' deficits (leverage 5x, 2,000 a takeover, 20,000 a day), so
# that refused bankrupt accounts, and so ADL rounds, are common; the owner's rule changes them.
VAULT_RISK_LIMITS = (5 * WAD, 2_000 * USDC, 20_000 * USDC)
# Examples x steps per profile (the core machine's are in test_state_machine.RUNS).
WATERFALL_RUNS = {"ci": {"max_examples": 45, "stateful_step_count": 150}, "deep": {"max_examples": 2_200, "stateful_step_count": 250}}
DEPOSITORS = 4  # the liquidity provider, alice, carol, the attacker

depositor = st.integers(0, DEPOSITORS - 1)
offset = st.integers(0, DEPOSITORS - 1)  # 0: the caller itself


# ================================================================ the setup

@pytest.fixture(scope="module")
def waterfall_env(env, accounts, protocol):
    """The core machine's funded setup plus: the accomplice (funded, approved), the depositors'
    approvals for the vault, the liquidity provider's deposit, short lock-up and delay; the model
    of it all (vault and ADL engine included) is read back from the chain and snapshotted."""
    e, fc = env, env.fc
    lp = accounts[2].address
    e.extra_accounts = [ACCOMPLICE, *TWINS]
    txs = []
    for address, key in zip(e.extra_accounts, [ACCOMPLICE_KEY, *TWIN_KEYS]):
        e.keys[address] = PrivateKey(key)
        fc.request("anvil_setBalance", [address, hex(10**21)])  # ether for its gas
        txs += [(e.owner, e.token.mint.call(address, WALLET)), (address, e.token.approve.call(e.pool.address, MAX_UINT))]
    txs.append((e.owner, e.token.mint.call(lp, WALLET)))
    for who in (lp, e.traders[0], e.traders[2], e.attacker):
        txs.append((who, e.token.approve.call(e.vault.address, MAX_UINT)))
    txs += [(e.owner, e.vault.set_lockup.call(LOCKUP, DELAY)), (e.owner, e.vault.set_profit_unlock.call(PROFIT_UNLOCK)),
            (e.owner, e.vault.set_risk_limits.call(*VAULT_RISK_LIMITS)), (lp, e.vault.deposit.call(LP_DEPOSIT, lp))]
    fc.send_many(txs)
    e.depositors = [lp, e.traders[0], e.traders[2], e.attacker]
    e.adl_events = EventDecoder(e.adl_engine.address, _abi(protocol.adl_engine))
    e.static_calls = {}
    e.base_block, e.base_time = fc.block()
    wallets = [*e.accounts, lp]
    e.base_wallets = dict(zip(wallets, fc.read([e.token.balanceOf.call(a) for a in wallets])))
    model = _model_from_chain(e)
    _attach_vault(e, model)
    _attach_adl(e, model)
    e.base_model = model.snapshot()
    e.base_snapshot = fc.snapshot()
    return e


def _attach_vault(e, model) -> VaultModel:
    """The vault's model, every storage value read from the chain."""
    v, fc = e.vault, e.fc
    lockup, delay, leverage, per_event, per_day, unlock = fc.read([
        v.lockup_period.call(), v.withdrawal_delay.call(), v.max_leverage.call(), v.loss_cap_per_event.call(),
        v.loss_cap_per_day.call(), v.profit_unlock_time.call(),
    ])
    vault = VaultModel(model, e.insurance, lockup, delay, leverage, per_event, per_day, unlock)
    (vault.total_supply, vault.last_report_value, vault.last_report, vault.locked_profit, vault.unlock_end, vault.high_day,
     vault.day_high) = fc.read([v.totalSupply.call(), v.last_report_value.call(), v.last_report.call(), v.locked_profit.call(),
                                v.unlock_end.call(), v.high_day.call(), v.day_high.call()])
    holders = [*e.depositors, e.insurance]
    for holder, shares, unlock_at in zip(holders, fc.read([v.balanceOf.call(h) for h in holders]),
                                         fc.read([v.unlock_time.call(h) for h in holders])):
        if shares:
            vault.balance_of[holder] = shares
        if unlock_at:
            vault.unlock_time[holder] = unlock_at
    assert sum(vault.balance_of.values()) == vault.total_supply, "shares held outside the machine's depositors"
    for controller, request in zip(e.depositors, fc.read([v.requests.call(c) for c in e.depositors])):
        if request[0]:
            vault.requests[controller] = Request(*request)
    pairs = [(c, o) for c in e.depositors for o in e.depositors if c != o]
    for (c, o), approved, allowance in zip(pairs, fc.read([v.isOperator.call(c, o) for c, o in pairs]), fc.read([v.allowance.call(c, o) for c, o in pairs])):
        if approved:
            vault.is_operator[(c, o)] = True
        if allowance:
            vault.allowance[(c, o)] = allowance
    for market, size in enumerate(fc.read([v.max_position.call(m) for m in range(e.market_count)])):
        vault.set_max_position(market, size)
    return vault


def _attach_adl(e, model) -> AdlModel:
    a, fc = e.adl_engine, e.fc
    engine = AdlModel(model, fc.read([a.round_duration.call()])[0])
    for market, policy in enumerate(fc.read([a.policy.call(m) for m in range(e.market_count)])):
        engine.policy[market] = policy
    assert not any(fc.read([e.ch.in_adl_round.call(x) for x in e.accounts])), "the setup must have no open round"
    # Rounds other tests closed on the shared chain leave their per-market records: the model starts with them.
    pairs = [(x, m) for x in e.accounts for m in range(e.market_count)]
    for (x, m), state in zip(pairs, fc.read([a.market_rounds.call(x, m) for x, m in pairs])):
        if any(state):
            engine.market_rounds[(x, m)] = MarketRound(*state)
    return engine


# ================================================================ the machine

@dataclass
class OpenRound:
    """What the harness remembers of a round while it is open (for the invariants and stale lists)."""

    deadline: int
    deficit: int  # D when it opened, plus the deficits netted into it
    auction_events: int  # the LiquidationEngine's auction events before it opened
    plans: dict = field(default_factory=dict)  # market -> the winners of an earlier plan


class WaterfallMachine(ProtocolMachine):
    """Core protocol + insurance vault + ADL engine."""

    time_dependent = (*ProtocolMachine.time_dependent, "vault_view", "claim_preview")
    CHECKS = ("check", "check_waterfall")

    def __init__(self):
        super().__init__()
        e = self.env
        vault = VaultModel.__new__(VaultModel)
        vault.exchange = self.model
        engine = AdlModel.__new__(AdlModel)
        engine.exchange = self.model
        engine.hits, engine.skips, engine.absorptions, engine.closed_rounds, engine.volunteer_takes, engine.joins = [], [], [], [], [], []
        self.model.vault, self.model.adl = vault, engine
        self.model.restore(e.base_model)
        self.vault, self.engine = vault, engine
        self.lp = e.depositors[0]
        self.open_rounds: dict[str, OpenRound] = {}
        self.watched = set(a for a, _ in self.engine.market_rounds)  # accounts whose rounds are compared
        self.closed_seen = 0  # closed rounds already checked
        self.absorptions_seen = 0  # the vault's absorptions already checked
        self.share_price_before: Fraction | None = None
        self.share_actions_only = True  # this step did nothing but share actions (deposit, request, claim, ...)

    # ------------------------------------------------------------ plumbing

    @property
    def depositors(self) -> list[str]:
        return self.env.depositors

    def vault_act(self, label, sender, call, model_action) -> object:
        """`act` for the vault, keeping the pool's books (vault deposits and claims are pool deposits
        and withdrawals) and the wallets of caller and receiver."""
        deposited, withdrawn = self.model.total_deposited, self.model.total_withdrawn
        outcome = self.act(label, sender, call, model_action)
        self.deposited += self.model.total_deposited - deposited
        self.withdrawn += self.model.total_withdrawn - withdrawn
        return outcome

    def engine_act(self, label, sender, call, model_action, same_time=False):
        """`act` for a waterfall engine action (not a share action: the vault's value may move)."""
        self.share_actions_only = False
        return self.act(label, sender, call, model_action, same_time)

    def act(self, label, sender, call, model_action, same_time=False):
        if not label.startswith("vault:"):
            self.share_actions_only = False
        engine = self.engine
        before = (len(engine.hits), len(engine.skips), len(engine.volunteer_takes), len(engine.closed_rounds), len(engine.joins))
        outcome = super().act(label, sender, call, model_action, same_time)
        if outcome.ok:
            self.check_adl_events(label, before)
        return outcome

    def check_adl_events(self, label, before):
        """The ADL engine's events in the last transaction are exactly those the model's transaction
        implies: each hit (winner, size, price, haircut), each skip with its reason, each netted account, each settlement
        of volunteer takes, each closed round's totals, in order."""
        engine = self.engine
        hits, skips, takes, closed, joins = before
        got: dict = {"AdlHit": [], "AdlSkipped": [], "AdlVolunteerTakes": [], "AdlRoundClosed": [], "AdlRoundJoined": []}
        for name, fields in self.env.adl_events.decode(self.fc.last_receipt["logs"]):
            if name in got:
                got[name].append(tuple(fields.values()))
        expected = {
            "AdlHit": [tuple(vars(hit).values()) for hit in engine.hits[hits:]],
            "AdlSkipped": [tuple(vars(skip).values()) for skip in engine.skips[skips:]],
            "AdlVolunteerTakes": engine.volunteer_takes[takes:],
            "AdlRoundClosed": [(c.account, c.deficit, c.haircuts, c.notional_closed, c.notional_absorbed, c.residual, c.socialised, c.fallback)
                               for c in engine.closed_rounds[closed:]],
            "AdlRoundJoined": engine.joins[joins:],
        }
        for name in got:
            assert got[name] == expected[name], f"{label}: the chain's {name} events differ from the model's"

    def pass_time(self, seconds):
        self.share_actions_only = False
        super().pass_time(seconds)

    def refresh_prices(self, label="refresh_prices"):
        return self.push_prices(label, [(m, *self.model.latest_prices(m)) for m in range(self.env.market_count)])

    def share_price(self) -> Fraction:
        return Fraction(self.vault.total_assets(self.t) + VIRTUAL_ASSETS, self.vault.total_supply + VIRTUAL_SHARES)

    # ------------------------------------------------------------ depositors

    @action(who=depositor, to=offset, assets=rarely(st.just(0), st.one_of(st.integers(1, 10_000 * USDC), st.integers(1, 500).map(lambda x: x * 1_000 * USDC)), 15),
            use_mint=st.booleans())
    def vault_deposit(self, who, to, assets, use_mint):
        """A deposit (or a mint of the shares `assets` buys), for oneself or, as its operator, for
        another depositor (refused unless the receiver named the caller)."""
        caller, receiver = self.depositors[who], self.depositors[(who + to) % DEPOSITORS]
        if use_mint:
            shares = self.vault.convert_to_shares(assets, self.vault.total_assets(self.t))
            outcome = self.vault_act("vault: mint", caller, self.env.vault.mint.call(shares, receiver),
                                     lambda now: self.vault.mint(caller, shares, now, receiver))
            paid = outcome.result if outcome.ok else 0
        else:
            outcome = self.vault_act("vault: deposit", caller, self.env.vault.deposit.call(assets, receiver),
                                     lambda now: self.vault.deposit(caller, assets, now, receiver))
            paid = assets if outcome.ok else 0
        self.wallets[caller] -= paid

    @action(who=depositor, controller=offset, owner=offset, fraction_bp=rarely(st.sampled_from([0, 10_001, 20_000]), st.integers(1, 10_000), 10))
    def vault_request(self, who, controller, owner, fraction_bp):
        """requestRedeem of a share of the owner's shares for a controller: refused while locked, for
        a controller or owner that did not authorise the caller, above the balance, or while a
        claimable request waits."""
        caller = self.depositors[who]
        controller, owner = self.depositors[(who + controller) % DEPOSITORS], self.depositors[(who + owner) % DEPOSITORS]
        shares = self.vault.balance_of.get(owner, 0) * fraction_bp // 10_000
        self.vault_act("vault: requestRedeem", caller, self.env.vault.requestRedeem.call(shares, controller, owner),
                       lambda now: self.vault.request_redeem(caller, shares, now, controller, owner))

    @action(who=depositor, controller=offset, receiver=offset, use_redeem=st.booleans(),
            fraction_bp=rarely(st.sampled_from([0, 10_001]), st.one_of(st.just(10_000), st.integers(1, 10_000)), 10))
    def vault_claim(self, who, controller, receiver, use_redeem, fraction_bp):
        """A claim of (part of) a controller's request through `redeem` (shares) or `withdraw`
        (assets), paid to a receiver: refused before it is claimable, above the request, for a caller
        that is not the controller's operator, or while the vault's margin cannot pay it."""
        caller = self.depositors[who]
        controller, receiver = self.depositors[(who + controller) % DEPOSITORS], self.depositors[(who + receiver) % DEPOSITORS]
        request = self.vault.requests.get(controller, Request())
        if use_redeem:
            shares = request.shares * fraction_bp // 10_000
            outcome = self.vault_act("vault: redeem", caller, self.env.vault.redeem.call(shares, receiver, controller),
                                     lambda now: self.vault.redeem(caller, shares, now, receiver, controller))
            paid = outcome.result if outcome.ok else 0
        else:
            owed = self.vault.claim_preview(controller, self.t + 1).owed if request.shares else 0
            assets = owed * fraction_bp // 10_000
            outcome = self.vault_act("vault: withdraw", caller, self.env.vault.withdraw.call(assets, receiver, controller),
                                     lambda now: self.vault.withdraw(caller, assets, now, receiver, controller))
            paid = assets if outcome.ok else 0
        self.wallets[receiver] += paid

    @action(who=depositor, other=st.integers(1, DEPOSITORS - 1), approved=st.booleans(), allowance=rarely(st.just(MAX_UINT), st.integers(0, 10**12), 3))
    def vault_authorise(self, who, other, approved, allowance):
        """A depositor names (or revokes) another as its EIP-7540 operator and sets its share allowance."""
        caller, operator = self.depositors[who], self.depositors[(who + other) % DEPOSITORS]
        self.act("vault: setOperator", caller, self.env.vault.setOperator.call(operator, approved),
                 lambda now: self.vault.set_operator(caller, operator, approved))
        self.act("vault: approve", caller, self.env.vault.approve.call(operator, allowance),
                 lambda now: self.vault.approve(caller, operator, allowance))

    @action(who=depositor, to=st.integers(1, DEPOSITORS - 1), fraction_bp=rarely(st.just(10_001), st.integers(0, 10_000), 10),
            from_owner=st.booleans())
    def vault_transfer(self, who, to, fraction_bp, from_owner):
        """Shares move by `transfer` or, spending an allowance, `transferFrom` (locked shares do not)."""
        caller, receiver = self.depositors[who], self.depositors[(who + to) % DEPOSITORS]
        owner = receiver if from_owner else caller
        amount = self.vault.balance_of.get(owner, 0) * fraction_bp // 10_000
        if from_owner:  # the caller takes from the owner's balance to itself
            self.act("vault: transferFrom", caller, self.env.vault.transferFrom.call(owner, caller, amount),
                     lambda now: self.vault.transfer_from(caller, owner, caller, amount, now))
        else:
            self.act("vault: transfer", caller, self.env.vault.transfer.call(receiver, amount),
                     lambda now: self.vault.transfer(caller, receiver, amount, now))

    @action(who=st.integers(0, 6))
    def process_report(self, who):
        """Anyone books the vault's gains and losses since the last report."""
        sender = [*self.actors, self.env.liquidator, self.env.attacker][who]
        self.engine_act("process_report", sender, self.env.vault.process_report.call(), lambda now: self.vault.process_report(now))

    @action(amount=st.integers(1, 10**6 * USDC))
    def donate_to_vault(self, amount):
        """Tokens sent straight to the vault's address: idle, they move no share price (V8)."""
        failure = self.fc.send(self.env.attacker, self.env.token.transfer.call(self.env.vault.address, amount))
        assert failure is None, failure
        self.t, self.block = self.t + 1, self.block + 1
        STATS.transactions += 1
        self.wallets[self.env.vault.address] += amount  # the vault's idle tokens: its "wallet", never counted
        self.wallets[self.env.attacker] -= amount
        self.changed = True
        STATS.outcomes[("vault: donate", "ok")] += 1

    # ------------------------------------------------------------ the owner's limits and policies

    @action(what=st.sampled_from(["risk", "position", "lockup", "unlock"]), leverage_bp=rarely(st.just(0), st.integers(5_000, 100_000), 15),
            cap_per_event=st.one_of(st.just(0), st.integers(1, 50_000).map(lambda x: x * USDC), st.just(10**15)),
            cap_per_day=st.one_of(st.just(0), st.integers(1, 200_000).map(lambda x: x * USDC), st.just(10**15)),
            market=market_id, size=st.sampled_from([0, WAD // 100, WAD, 100 * WAD, 10**6 * WAD]),
            seconds=st.sampled_from([0, 60, 3600, 86_399, 86_400, 3 * 86_400, 365 * 86_400 + 1]), by_owner=rarely(st.just(False), st.just(True), 10))
    def set_vault_limits(self, what, leverage_bp, cap_per_event, cap_per_day, market, size, seconds, by_owner):
        """The owner changes the vault's takeover limits, a position limit, the lock-up and delay or
        the income's unlocking time (rarely invalid; rarely from someone else: refused)."""
        sender = self.env.owner if by_owner else self.env.attacker

        def owner_only(model_call):
            def run(now):
                if not by_owner:
                    raise ModelRevert(OWNER_ONLY)
                return model_call(now)
            return run

        v = self.env.vault
        if what == "risk":
            leverage = leverage_bp * WAD // 10_000
            self.engine_act("set_risk_limits", sender, v.set_risk_limits.call(leverage, cap_per_event, cap_per_day),
                            owner_only(lambda now: self.vault.set_risk_limits(leverage, cap_per_event, cap_per_day)))
        elif what == "position":
            self.engine_act("set_max_position", sender, v.set_max_position.call(market, size),
                            owner_only(lambda now: self.vault.set_max_position(market, size)))
        elif what == "lockup":
            self.engine_act("set_lockup", sender, v.set_lockup.call(seconds, seconds // 2),
                            owner_only(lambda now: self.vault.set_lockup(seconds, seconds // 2)))
        else:
            self.engine_act("set_profit_unlock", sender, v.set_profit_unlock.call(seconds),
                            owner_only(lambda now: self.vault.set_profit_unlock(seconds)))

    @action(market=st.integers(0, 3), policy=rarely(st.just(4), st.integers(0, 3), 12), by_owner=rarely(st.just(False), st.just(True), 10))
    def set_policy(self, market, policy, by_owner):
        """The owner switches a market's ADL policy (rounds already open keep theirs)."""
        sender = self.env.owner if by_owner else self.env.attacker

        def run(now):
            if not by_owner:
                raise ModelRevert(OWNER_ONLY)
            self.engine.set_policy(market, policy)

        self.engine_act("set_policy", sender, self.env.adl_engine.set_policy.call(market, policy), run)

    @action(duration=st.sampled_from([59, 60, 600, 3_600, 7 * 86_400, 7 * 86_400 + 1]))
    def set_round_duration(self, duration):
        self.engine_act("set_round_duration", self.env.owner, self.env.adl_engine.set_round_duration.call(duration),
                        lambda now: self.engine.set_round_duration(duration))

    # ------------------------------------------------------------ the keeper's waterfall

    def candidates(self) -> list[str]:
        """Accounts the waterfall may act on: traders, the liquidator and the accomplice."""
        return [*self.actors, self.env.liquidator, *self.env.extra_accounts]

    def backstop(self, label, sender, account):
        is_keeper = sender == self.env.keeper
        outcome = self.engine_act(label, sender, self.env.liquidation.backstop.call(account),
                                  lambda now: self.model.liquidation.backstop(is_keeper, account, now))
        if outcome.ok:
            STATS.notes["takeovers" if outcome.result == "" else f"takeovers refused: {outcome.result}"] += 1
        return outcome

    @action(account=st.integers(0, 20), by_keeper=rarely(st.just(False), st.just(True), 4))
    def keeper_backstop(self, account, by_keeper):
        """The keeper (or anyone, below the backstop ratio) hands a failing account to the vault:
        taken over within the vault's limits, else refused by name and, if bankrupt, flagged."""
        candidates = self.candidates()
        failing = [a for a in candidates if self.model.open_markets.get(a, 0) and self.health(a).value < self.health(a).maintenance_margin]
        target = (failing or candidates)[account % len(failing or candidates)]
        self.backstop("backstop", self.env.keeper if by_keeper else self.env.attacker, target)

    @action(account=st.integers(0, 20))
    def open_round(self, account):
        """The keeper opens an ADL round for a flagged account (refused if not flagged, already in a
        round, or solvent at fresh prices)."""
        flagged = [a for a in self.env.accounts if self.model.bankrupt.get(a, False) and not self.model.in_adl_round.get(a, False)]
        target = (flagged or self.env.accounts)[account % len(flagged or self.env.accounts)]
        self._open_round(target)

    def _open_round(self, target):
        events_before = len(self.model.liquidation.auction_events)
        outcome = self.engine_act("adl: open_round", self.env.keeper, self.env.adl_engine.open_round.call(target),
                                  lambda now: self.engine.open_round(target, now))
        if outcome.ok:
            self.watched.add(target)
            if target in self.engine.rounds:
                self.open_rounds[target] = OpenRound(self.engine.rounds[target].deadline, self.engine.rounds[target].deficit, events_before)
            STATS.notes["ADL rounds opened"] += 1
        return outcome

    def plan(self, account, market, batch_size=250):
        """The keeper's planner on the model's book at the next block's time."""
        now = self.t + 1
        return plan_market(MarketToResolve.on_model(self.engine, account, market), winner_states(self.model, account, market, now), batch_size)

    @action(account=st.integers(0, 20), market=market_id,
            kind=st.sampled_from(["honest", "honest", "stale", "duplicated", "reversed", "incomplete", "junk", "same_side", "lying"]),
            batch_size=st.sampled_from([1, 2, 3, 250]), pick=st.integers(0, 1_000))
    def adl_execute(self, account, market, kind, batch_size, pick):
        """The keeper executes one batch of a round in a market: the planner's first batch, or a
        hostile list built from it (a plan from an earlier step, entries duplicated, reversed, one
        dropped, junk accounts of every kind, positions on the bankrupt account's own side, or a
        declaration below the true weights). A hostile list never reverts the call; it only skips
        entries (the model says which)."""
        open_accounts = sorted(self.engine.rounds) or self.env.accounts
        self.keeper_execute(open_accounts[account % len(open_accounts)], market, kind, batch_size, pick)

    def keeper_execute(self, target, market, kind, batch_size, pick):
        """`adl_execute` for a given round."""
        in_round = target in self.engine.rounds and self.engine.rounds[target].markets_left & (1 << market)
        batches = self.plan(target, market, batch_size) if in_round else []
        winners, declaration = (batches[0].winners, batches[0].declaration) if batches else ([], Declaration())
        remembered = self.open_rounds.get(target)
        if kind == "stale" and remembered and market in remembered.plans:
            winners = remembered.plans[market]
        elif kind == "duplicated" and winners:
            winners = winners + winners[: 1 + pick % len(winners)]
        elif kind == "reversed":
            winners = winners[::-1]
        elif kind == "incomplete" and winners:
            winners = winners[:pick % len(winners)] + winners[pick % len(winners) + 1:]
        elif kind == "junk":
            everyone = self.env.accounts
            winners = [everyone[(pick + 7 * i) % len(everyone)] for i in range(1 + pick % 6)] + winners
        elif kind == "same_side" and in_round:
            long_side = self.engine.market_round(target, market).bankrupt_size > 0
            same = [a for a in self.candidates() if a != target and self.model.position(a, market).size
                    and (self.model.position(a, market).size > 0) == long_side]
            winners = same + winners + same[:1]
        elif kind == "lying":
            declaration = Declaration(declaration.haircut_level, declaration.close_level, declaration.haircut_weight * (pick % 100) // 100,
                                      declaration.close_weight * (pick % 100) // 100)
        if remembered is not None and batches:
            remembered.plans.setdefault(market, batches[0].winners)
        self.execute(f"adl: execute {kind}", target, market, winners, declaration)

    def execute(self, label, target, market, winners, declaration):
        """One `execute` on both sides; then every hit is held to invariant 6 against the state
        before the call: an opposite-side winner, profitable at the round's price, charged at most
        that profit, its profit there falling by at least the haircut."""
        state = self.engine.market_round(target, market)
        before = {w: self.model.position(w, market) for w in winners}
        hits = len(self.engine.hits)
        outcome = self.engine_act(label, self.env.keeper,
                                  self.env.adl_engine.execute.call(target, market, winners, declaration.as_tuple()),
                                  lambda now: self.engine.execute(target, market, winners, declaration, now))
        if outcome.ok:
            charged: dict = {}
            for hit in self.engine.hits[hits:]:
                start = before[hit.winner]
                assert start.size and (start.size > 0) != (state.bankrupt_size > 0), f"{hit.winner} hit on the bankrupt account's side"
                assert hit.price == state.price
                profit = max(pnl(start.size, start.entry_price, state.price), 0)
                charged[hit.winner] = charged.get(hit.winner, 0) + hit.haircut
                assert charged[hit.winner] <= profit, f"{hit.winner} paid {charged[hit.winner]} above its profit {profit} at the round's price"
                now_position = self.model.position(hit.winner, market)
                left = max(pnl(now_position.size, now_position.entry_price, state.price), 0) if now_position.size else 0
                assert left <= profit - charged[hit.winner], f"{hit.winner} keeps more profit than it had less its haircuts"
                STATS.notes["ADL hits"] += 1
        return outcome

    @action(account=st.integers(0, 20), by_anyone=st.integers(0, 6))
    def finish_round(self, account, by_anyone):
        """Anyone ends a round past its deadline (refused before it, or without an open round)."""
        open_accounts = sorted(self.engine.rounds) or self.env.accounts
        target = open_accounts[account % len(open_accounts)]
        sender = [*self.actors, self.env.liquidator, self.env.attacker][by_anyone]
        if self.engine_act("adl: finish_round", sender, self.env.adl_engine.finish_round.call(target),
                           lambda now: self.engine.finish_round(target, now)).ok:
            STATS.notes["ADL rounds ended by finish_round"] += 1

    @precondition(lambda self: self.engine.rounds)
    @action(extra=st.sampled_from([0, 1, 2]))
    def wait_for_deadline(self, extra):
        """Time runs to the earliest deadline still ahead (else the earliest); the keeper refreshes the
        prices one block before, and anyone calls `finish_round` exactly at the deadline (refused),
        or one or two seconds past it (it goes through)."""
        ahead = [(r.deadline, a) for a, r in self.engine.rounds.items() if r.deadline + extra >= self.t + 2]
        deadline, account = min(ahead or [(r.deadline, a) for a, r in self.engine.rounds.items()])
        if deadline + extra - 2 > self.t:
            self.pass_time(deadline + extra - 2 - self.t)
        self.refresh_prices()
        STATS.notes[f"finish_round {self.t + 1 - deadline:+d} s from the deadline" if self.t + 1 - deadline <= 2 else "finish_round later"] += 1
        self.engine_act("adl: finish_round at the deadline", self.env.attacker, self.env.adl_engine.finish_round.call(account),
                        lambda now: self.engine.finish_round(account, now))

    @action(batch_size=st.sampled_from([1, 3, 250]))
    def keeper_waterfall(self, batch_size):
        self.keeper_pass(batch_size)

    def keeper_pass(self, batch_size):
        """The honest keeper's whole pass: liquidations (the core sweep), a backstop for every
        account still below maintenance, a round for every refused bankrupt account, the planner's
        batches for every open round, and `finish_round` for every round past its deadline. Before
        the rounds, two volunteers (the liquidator, then the market maker) each take a third of
        what each running auction offers."""
        self.sweep(10_000)
        for account, market in self.running_auctions():
            for volunteer in (self.env.liquidator, self.maker):
                self.volunteer_take("waterfall: volunteer take", volunteer, account, market, 3_333, "any")
        for account in self.candidates():
            if self.model.in_adl_round.get(account, False) or not self.model.open_markets.get(account, 0):
                continue
            h = self.health(account)
            if h.value < h.maintenance_margin:
                self.backstop("waterfall: backstop", self.env.keeper, account)
        flagged = [a for a in self.env.accounts if self.model.bankrupt.get(a, False) and not self.model.in_adl_round.get(a, False)]
        sides = lambda a: [(m, self.model.position(a, m).size > 0) for m in range(self.env.market_count) if self.model.position(a, m).size]  # noqa: E731
        for host, members in netting_groups(flagged, sides, self.env.vault.address):
            if self._open_round(host).ok:
                for member in members:
                    self.join_round(member, host)
        self.execute_rounds(batch_size)

    @action(account=st.integers(0, 20), host=st.integers(0, 20), open_first=st.booleans(), same_time=st.booleans())
    def keeper_join_round(self, account, host, open_first, same_time):
        """The keeper nets a flagged account into a round (`open_first`: one it opens now for another
        flagged account): refused unless the round opened at this block's time and has not acted,
        the account holds its markets on its side and is below zero at its prices."""
        flagged = [a for a in self.env.accounts if self.model.bankrupt.get(a, False) and not self.model.in_adl_round.get(a, False)]
        target = (flagged or self.env.accounts)[account % len(flagged or self.env.accounts)]
        others = [a for a in flagged if a != target]
        if open_first and others:
            chosen = others[host % len(others)]
            self._open_round(chosen)
        else:
            hosts = sorted(self.engine.rounds) or self.env.accounts
            chosen = hosts[host % len(hosts)]
        self.join_round(target, chosen, same_time)

    def join_round(self, account, host, same_time=True):
        outcome = self.engine_act("adl: join_round", self.env.keeper, self.env.adl_engine.join_round.call(account, host),
                                  lambda now: self.engine.join_round(account, host, now), same_time)
        if outcome.ok:
            # Rule A8: the account ends flat at zero and free; the round's D grows by its deficit.
            assert self.model.open_markets.get(account, 0) == 0 and self.model.balance(account) == 0 and not self.model.bankrupt.get(account, False)
            if host in self.open_rounds:
                self.open_rounds[host].deficit += self.engine.joins[-1][2]
            self.watched.add(account)
            STATS.notes["ADL accounts netted into a round"] += 1
        return outcome

    @action(trader=st.integers(0, 3), depth_bp=st.integers(-8_000, -1), batch_size=st.sampled_from([1, 3, 250]),
            keeper=st.sampled_from(["honest", "honest", "none", "stale", "duplicated", "reversed", "incomplete", "junk", "same_side", "lying"]),
            stagger_bp=st.sampled_from([0, 0, 150, 400, 700]), bystander=st.booleans(), pick=st.integers(0, 1_000))
    def crash_into_adl(self, trader, depth_bp, batch_size, keeper, stagger_bp, bystander, pick):
        """A gap aimed at one account (`drive`: its value walked to `depth_bp` / 10,000 of its
        maintenance margin, below zero), then the keeper's pass: a takeover within the vault's loss
        allowance, else a refusal, the flag and an ADL round, which the honest keeper executes at
        once; or a hostile keeper sends one list of the kind `adl_execute` builds to each market of
        the round at once; or the round is left open for the other rules (`none`: hostile lists,
        trades, the deadline, auctions).
        The victim is the accomplice while it holds nothing (else a trader): it first opens a
        position against every trader in parts, so that its round has several winners to rank;
        with `stagger_bp` the price moves that far against it between the parts (winners who
        entered during the fall have little profit per unit, so their haircuts meet their caps and
        spill over); with `bystander` one trader first takes the victim's side and the price rises
        15% its way, so that at the round's price it holds a profitable position on the bankrupt
        side (which no list may get charged)."""
        victim = ACCOMPLICE
        if self.model.open_markets.get(victim, 0) or self.model.bankrupt.get(victim, False):
            self.drive(trader, depth_bp, 10_000)
        else:
            market, long = trader % self.env.market_count, trader % 2 == 0
            self.top_up("adl setup: deposit", victim)
            # the traders with free margin to take the other side (a fill that fails fails its batch)
            others = [a for a in self.actors[:-1] if not self.model.bankrupt.get(a, False)
                      and self.health(a).value - self.health(a).initial_margin > 500 * USDC]
            if bystander and len(others) > 1:
                rider = others.pop()
                price = self.mark(market)
                size = max(self.capacity(rider, market, price) // 4, 1)
                self.pair_with_maker("adl setup: a bystander on the victim's side", rider, market, size if long else -size, price)
                self.move_mark("adl setup: prices", market, 1_500 if long else -1_500)
            part = self.capacity(victim, market, self.mark(market)) * 90 // 100 // max(len(others), 1)
            fills = []
            for i, other in enumerate(others):
                if stagger_bp and i:
                    if fills:
                        self.settle("adl setup: several counterparties", fills)
                        fills = []
                    self.move_mark("adl setup: prices", market, -stagger_bp if long else stagger_bp)
                    self.refresh_prices("adl setup: refresh")
                price = self.mark(market)
                size = max(min(part, self.capacity(victim, market, price) * 80 // 100, self.capacity(other, market, price) // 3), 1)
                buyer, seller = (victim, other) if long else (other, victim)
                buy, sell = self.new_order(buyer, market, size, price), self.new_order(seller, market, -size, price)
                fills.append((buy, self.sign(buy), sell, self.sign(sell), size, price))
            if fills:
                self.settle("adl setup: several counterparties", fills)
            self.drive_account(victim, trader, depth_bp, 10_000)
        if keeper == "honest":
            self.keeper_pass(batch_size)
            return
        for account in self.candidates():
            h = self.health(account)
            if self.model.open_markets.get(account, 0) and h.value < 0 and not self.model.in_adl_round.get(account, False):
                if self.backstop("crash: backstop", self.env.keeper, account).result and self._open_round(account).ok and keeper != "none":
                    for market in range(self.env.market_count):
                        if account in self.engine.rounds and self.engine.rounds[account].markets_left & (1 << market):
                            self.keeper_execute(account, market, keeper, batch_size, pick)

    @action(market=st.integers(0, 2), long=st.booleans(), depth_bp=st.integers(-8_000, -1), batch_size=st.sampled_from([1, 3, 250]))
    def crash_two_into_adl(self, market, long, depth_bp, batch_size):
        """Two accounts bankrupt in one gap, so that the keeper nets them: the twins, while both are
        flat and free, open the same side of one market from the market maker at the same leverage
        (95% of what their margin allows), the price is walked against them until the first is worth
        `depth_bp` / 10,000 of its maintenance margin (the second goes with it), and the keeper's pass
        hands both to the vault; the refused ones, flagged at the same time on the same market and
        side, share one round (`join_round`)."""
        if any(self.model.open_markets.get(t, 0) or self.model.bankrupt.get(t, False) or self.model.in_adl_round.get(t, False) for t in TWINS):
            return
        market %= self.env.market_count
        price, fills = self.mark(market), []
        for twin in TWINS:
            self.top_up("twins setup: deposit", twin)
            size = self.capacity(twin, market, price) * 95 // 100
            buyer, seller = (twin, self.maker) if long else (self.maker, twin)
            buy, sell = self.new_order(buyer, market, size, price), self.new_order(seller, market, -size, price)
            fills.append((buy, self.sign(buy), sell, self.sign(sell), size, price))
        if not self.settle("twins setup: open", fills).ok:
            return
        joins = len(self.engine.joins)
        self.drive_account(TWINS[0], market, depth_bp, 10_000)
        self.keeper_pass(batch_size)
        if len(self.engine.joins) > joins:
            STATS.notes["twins netted into one round"] += 1

    def top_up(self, label, account):
        """`account` deposits 20,000 from its wallet when it is worth less than 1,000: enough to
        open a position that a crash can take below zero."""
        if self.health(account).value < 1_000 * USDC:
            amount = 20_000 * USDC
            if self.act(label, account, self.env.pool.deposit.call(amount), lambda now: self.model.deposit(account, amount)).ok:
                self.deposited += amount
                self.wallets[account] -= amount

    def pair_with_maker(self, label, account, market, size, price):
        """`account` buys (`size` > 0) or sells from the market maker at `price`."""
        buyer, seller = (account, self.maker) if size > 0 else (self.maker, account)
        buy, sell = self.new_order(buyer, market, abs(size), price), self.new_order(seller, market, -abs(size), price)
        return self.settle(label, [(buy, self.sign(buy), sell, self.sign(sell), abs(size), price)])

    def move_mark(self, label, market, move_bp):
        """Both prices of a market walked by `move_bp` / 10,000 (the other way if that would leave
        the machine's price range), an update per block within the oracle's limits."""
        index_price, mark_price = self.model.latest_prices(market)
        move_bp = self.within_range(market, mark_price, move_bp)
        self.walk(label, market, max(index_price * (10_000 + move_bp) // 10_000, 1), max(mark_price * (10_000 + move_bp) // 10_000, 1))

    def execute_rounds(self, batch_size):
        for account in sorted(self.engine.rounds):
            if self.engine.rounds[account].deadline < self.t + 1:
                self.engine_act("waterfall: finish_round", self.env.attacker, self.env.adl_engine.finish_round.call(account),
                                lambda now, a=account: self.engine.finish_round(a, now))
                continue
            for market in range(self.env.market_count):
                if account in self.engine.rounds and self.engine.rounds[account].markets_left & (1 << market):
                    for batch in self.plan(account, market, batch_size):
                        if not self.execute("waterfall: execute", account, market, batch.winners, batch.declaration).ok:
                            break

    @action(account=st.integers(0, 6), amount_bp=rarely(st.just(10_001), st.just(10_000), 5))
    def withdraw_what_the_gate_allows(self, account, amount_bp):
        """Invariant 9 (A6): an account withdraws exactly what the pool says it may (all of it must
        go through; one unit more is refused); an account no open round can charge is not held back."""
        who = [*self.actors, self.env.liquidator, self.env.attacker][account]
        now = self.t + 1
        try:
            allowed = self.model.withdrawable(who, now)
        except ModelRevert:
            return  # a market it holds is paused or stale: the pool cannot price it
        if not self.model._withdrawal_waits(who):
            h = self.model.account_health(who, now, fresh=True)
            assert allowed == max(min(self.model.balance(who), h.value - h.initial_margin), 0), "an unexposed account held back"
        amount = allowed * amount_bp // 10_000 + (amount_bp > 10_000)
        if amount == 0:
            return
        outcome = self.act("withdraw_gate", who, self.env.pool.withdraw.call(amount), lambda now: self.model.withdraw(who, amount, now))
        assert outcome.ok == (amount_bp <= 10_000), "the gate's answer and the withdrawal disagree"
        if outcome.ok:
            self.withdrawn += amount
            self.wallets[who] += amount

    # ------------------------------------------------------------ auctions

    @action(volunteers=rarely(st.just(False), st.just(True), 4), premium_bp=rarely(st.sampled_from([0, 2_001]), st.integers(1, 2_000), 15),
            ramp=st.sampled_from([60, 300, 600]), extra=st.sampled_from([0, 300, 900]),
            min_notional=st.sampled_from([0, 100 * USDC, 10_000 * USDC]), by_owner=rarely(st.just(False), st.just(True), 10))
    def set_auction_params(self, volunteers, premium_bp, ramp, extra, min_notional, by_owner):
        """The owner sets the auctions' schedule and dust rule and switches the volunteer step (rarely
        a premium out of bounds, or a caller other than the owner: refused)."""
        premium, duration = premium_bp * 10**14, ramp + extra
        sender = self.env.owner if by_owner else self.env.attacker

        def run(now):
            if not by_owner:
                raise ModelRevert(OWNER_ONLY)
            self.model.liquidation.set_auction_params(premium, ramp, duration, min_notional, volunteers)

        self.engine_act("auction: set_auction_params", sender,
                        self.env.liquidation.set_auction_params.call(premium, ramp, duration, min_notional, volunteers), run)

    def running_auctions(self) -> list[tuple[str, int]]:
        return sorted(key for key, auction in self.model.liquidation.auctions.items() if auction.lot != 0 and auction.end > self.t + 1)

    @precondition(lambda self: self.running_auctions())
    @action(pick=st.integers(0, 100), taker=st.integers(0, 6),
            fraction_bp=rarely(st.sampled_from([0, 10_001, 20_000]), st.sampled_from([1, 10, 100, 500, 1_000, 2_500, 5_000, 10_000]), 12),
            wait=st.sampled_from([0, 0, 30, 120, 300, 600]), limit=st.sampled_from(["any", "any", "at_price", "tight"]))
    def take(self, pick, taker, fraction_bp, wait, limit):
        """A volunteer (a trader, the market maker, the liquidator, the attacker) takes part of a
        running auction (a bankrupt account's in its ADL round, or the vault's unwind) at the price
        reached after waiting: refused above the size offered, beyond the taker's limit, for the
        auctioned account itself, a bankrupt taker, a taker left below initial margin, a remainder
        below the dust rule, at a stale price, or after the end."""
        running = self.running_auctions()
        account, market = running[pick % len(running)]
        if wait:
            self.pass_time(wait)
            self.refresh_prices()
        self.volunteer_take("auction: take", [*self.actors, self.env.liquidator, self.env.attacker][taker], account, market, fraction_bp, limit)

    def volunteer_take(self, label, who, account, market, fraction_bp, limit):
        """`who` takes `fraction_bp` / 10,000 of what `account`'s auction in `market` offers, with a
        limit price that takes any price, exactly the current one, or one unit short of it."""
        liquidation = self.model.liquidation
        auction = liquidation.auction(account, market)
        size = offered(auction.lot, self.model.position(account, market).size) * fraction_bp // 10_000
        try:
            price = liquidation.auction_price(account, market, self.t + 1)
        except ModelRevert:
            price = self.mark(market)
        buys = auction.lot > 0
        limit_price = {"any": MAX_UINT if buys else 0, "at_price": price, "tight": price - 1 if buys else price + 1}[limit]
        outcome = self.engine_act(label, who, self.env.liquidation.take.call(account, market, size, limit_price),
                                  lambda now: liquidation.take(who, account, market, size, limit_price, now))
        if outcome.ok:
            STATS.notes["volunteer takes" if auction.volunteer else "unwind takes"] += 1

    @precondition(lambda self: self.model.open_markets.get(self.env.insurance, 0))
    @action(market=market_id, fraction_bp=rarely(st.sampled_from([0, 20_000]), st.integers(1, 10_000), 12),
            by_keeper=st.booleans(), controller=st.integers(-1, DEPOSITORS - 1))
    def start_unwind(self, market, fraction_bp, by_keeper, controller):
        """The vault's position offered in an auction: by the keeper, any part at any time; by anyone
        else only what is above the vault's targets or what `controller`'s claimable request needs
        (refused within them, with no position, while an auction runs, or with the vault flagged)."""
        held = abs(self.model.position(self.env.insurance, market).size)
        size = held * fraction_bp // 10_000
        who = self.env.keeper if by_keeper else self.env.attacker
        claimant = self.depositors[controller] if controller >= 0 else ZERO_ADDRESS
        outcome = self.engine_act("auction: start_unwind", who, self.env.liquidation.start_unwind.call(market, size, claimant),
                                  lambda now: self.model.liquidation.start_unwind(by_keeper, market, size, claimant, now))
        if outcome.ok:
            STATS.notes["unwinds started"] += 1

    @action(market=market_id, by_keeper=rarely(st.just(False), st.just(True), 8))
    def cancel_unwind(self, market, by_keeper):
        """The keeper cancels a running unwind (never a volunteer auction; refused to anyone else)."""

        def run(now):
            if not by_keeper:
                raise ModelRevert(KEEPER_ONLY)
            self.model.liquidation.cancel_unwind(market, now)

        self.engine_act("auction: cancel_unwind", self.env.keeper if by_keeper else self.env.attacker,
                        self.env.liquidation.cancel_unwind.call(market), run)

    # ------------------------------------------------------------ attackers

    @action(market=market_id, long_loses=st.booleans(), share_bp=st.integers(5_000, 10_000), blocks=st.integers(1, 12),
            collateral=st.integers(1_000, 50_000))
    def wash_pair(self, market, long_loses, share_bp, blocks, collateral):
        """The attacker and its accomplice trade against each other at the most leverage the market
        allows; the keeper walks the price against one of them, a block at a time within the
        oracle's limit, and after each block the honest keeper's pass runs (its success in every
        such block is the design's assumption, so a block it leaves unresolved is not asserted). Once the losing side is
        resolved (liquidated or taken over) the walk stops and the winning side closes what is no
        longer matched by its partner (beyond that its gains would come from an ordinary bet against
        the market). With the block limit below the maintenance margin (design W1) the pair never
        ends with more than it put in."""
        pair = (self.env.attacker, ACCOMPLICE)
        if any(self.model.open_markets.get(a, 0) or self.model.bankrupt.get(a, False) for a in pair):
            return
        start = sum(self.wallets[a] + self.model.account_value(a, self.t) for a in pair)
        amount = collateral * USDC
        for who in pair:
            if self.act("wash: deposit", who, self.env.pool.deposit.call(amount), lambda now, w=who: self.model.deposit(w, amount)).ok:
                self.deposited += amount
                self.wallets[who] -= amount
        loser, winner = pair if long_loses else pair[::-1]
        price = self.mark(market)
        size = self.capacity(loser, market, price) * 99 // 100
        long, short = (loser, winner) if long_loses else (winner, loser)
        buy, sell = self.new_order(long, market, size, price), self.new_order(short, market, -size, price)
        if not self.settle("wash: open", [(buy, self.sign(buy), sell, self.sign(sell), size, price)]).ok:
            return
        guarded = self.model.max_block_move < self.model.markets[market].maintenance_margin
        for _ in range(blocks):
            index_price, mark_price = self.model.latest_prices(market)
            step = self.model.max_block_move * share_bp // 10_000
            factor = WAD - step if long_loses else WAD + step
            target = (max(index_price * factor // WAD, 1), max(mark_price * factor // WAD, 1))
            if self.model.reachable_prices(market, *target, self.t + 1) != target:
                break  # the window's limit: the walk stops, as a keeper's would
            if not self.push_prices("wash: gap", [(market, *target)]).ok:
                break
            self.keeper_pass(250)
            h = self.health(loser)
            if self.model.open_markets.get(loser, 0) and h.value < h.maintenance_margin:
                # The keeper could neither liquidate nor hand it to the vault (the liquidator's
                # margin, the vault's limits): W1 assumes someone acts in every such block.
                guarded = False
            if self.model.position(loser, market).size != (size if long_loses else -size):
                break
        unmatched = self.model.position(winner, market).size + self.model.position(loser, market).size
        if unmatched and not self.model.bankrupt.get(winner, False):
            price = self.mark(market)
            buyer, seller = (self.maker, winner) if unmatched > 0 else (winner, self.maker)
            buy, sell = self.new_order(buyer, market, abs(unmatched), price), self.new_order(seller, market, -abs(unmatched), price)
            if not self.settle("wash: close unmatched", [(buy, self.sign(buy), sell, self.sign(sell), abs(unmatched), price)]).ok:
                STATS.notes["wash pairs whose winner could not close (not asserted)"] += 1
                return
        end = sum(self.wallets[a] + self.model.account_value(a, self.t) for a in pair)
        if guarded:
            assert end <= start, f"the wash pair ended with {end} for {start}"
            STATS.notes["wash pairs that ended with less than they put in"] += 1
        else:
            STATS.notes["wash pairs under a block limit at or above maintenance, or left unresolved by the keeper (not asserted)"] += 1

    @action(victim=st.integers(0, 20), assets=st.integers(1, 2_000).map(lambda x: x * 1_000 * USDC),
            loss_while_waiting=st.booleans(), depth_bp=st.integers(-8_000, -1))
    def jit_deposit(self, victim, assets, loss_while_waiting, depth_bp):
        """The attacker deposits just before a takeover it saw coming, then leaves as soon as it can:
        the takeover's gain is locked, so it is paid no more than its pro-rata part of the share
        price it held through. With `loss_while_waiting` a gap takes an account into a deficit the
        vault covers while the request waits: the claim pays min(value at request, value at claim),
        so the loss is shared with those who stay."""
        attacker = self.env.attacker
        if self.vault.requests.get(attacker, Request()).shares or self.vault.balance_of.get(attacker, 0):
            return
        outcome = self.vault_act("vault: deposit", attacker, self.env.vault.deposit.call(assets, attacker),
                                 lambda now: self.vault.deposit(attacker, assets, now, attacker))
        if not outcome.ok:
            return
        self.wallets[attacker] -= assets
        shares = outcome.result
        failing = [a for a in self.candidates() if self.model.open_markets.get(a, 0) and self.health(a).value < self.health(a).maintenance_margin]
        if failing:
            # Invariant 5 (V6): the takeover's gain is locked: the share price the attacker entered
            # at rises by no more than the income the schedule unlocks in the next second.
            entered = self.share_price()
            unlocking = self.vault._locked_now(self.t) - self.vault._locked_now(self.t + 1)
            if self.backstop("jit: backstop", self.env.keeper, failing[victim % len(failing)]).result == "":
                assert self.share_price() <= entered + Fraction(unlocking + 1, self.vault.total_supply + VIRTUAL_SHARES), \
                    "a takeover raised the share price at once"
        request = lambda now: self.vault.request_redeem(attacker, shares, now)  # noqa: E731
        if not self.vault_act("vault: requestRedeem", attacker, self.env.vault.requestRedeem.call(shares, attacker, attacker), request).ok:
            self.pass_time(max(self.vault.unlock_time.get(attacker, 0) - self.t - 1, 1))  # locked: wait out the lock-up
            self.refresh_prices("jit: refresh")
            if not self.vault_act("vault: requestRedeem", attacker, self.env.vault.requestRedeem.call(shares, attacker, attacker), request).ok:
                return
        if loss_while_waiting:
            self.drive(victim, depth_bp, 10_000)
            self.keeper_pass(250)
        if attacker not in self.vault.requests:
            return
        claimable = self.vault.requests[attacker]
        # Fresh prices one block before the claim, the claim at exactly `claimable_at` (the edge).
        self.pass_time(max(claimable.claimable_at - self.t - 2, 1))
        self.refresh_prices("jit: refresh")
        price_at_claim = Fraction(self.vault.total_assets(self.t + 1) + VIRTUAL_ASSETS, self.vault.total_supply + VIRTUAL_SHARES)
        claim = self.vault_act("vault: redeem", attacker, self.env.vault.redeem.call(claimable.shares, attacker, attacker),
                               lambda now: self.vault.redeem(attacker, claimable.shares, now, attacker, attacker))
        if claim.ok:
            self.wallets[attacker] += claim.result
            # Paid min(value at request, value at claim): never above either.
            assert claim.result <= claimable.assets and claim.result <= claimable.shares * price_at_claim, "a claim paid above min(value at request, value now)"
            STATS.notes["JIT deposits claimed"] += 1

    @precondition(lambda self: self.engine.rounds)
    @action(account=st.integers(0, 20), market=market_id, which=st.integers(0, 100), fraction_bp=st.integers(1, 20_000),
            loses_elsewhere=st.booleans(), blocks=st.integers(1, 4))
    def winner_trades_before_execution(self, account, market, which, fraction_bp, loses_elsewhere, blocks):
        """The keeper plans; before its batch lands a planned winner closes part of its position (or
        flips it) against the market maker, or (`loses_elsewhere`) takes a levered long in another
        market that a gap of a few blocks then eats, so that its account is worth little beside its
        profit; the keeper's now stale list still executes, skipping or charging within what each
        winner has left (its profit at the round's price and what its account can lose)."""
        target = sorted(self.engine.rounds)[account % len(self.engine.rounds)]
        if not self.engine.rounds[target].markets_left & (1 << market):
            return
        batches = self.plan(target, market)
        if not batches or not batches[0].winners:
            return
        # Only a winner that signs its own orders trades: the vault can be a winner too, it cannot.
        traders = [w for w in batches[0].winners if w in self.env.keys]
        if not traders:
            return
        winner = traders[which % len(traders)]
        if loses_elsewhere:
            other = (market + 1) % self.env.market_count
            price = self.mark(other)
            size = self.capacity(winner, other, price) * 95 // 100
            if self.pair_with_maker("winner levers up elsewhere", winner, other, size, price).ok:
                for _ in range(blocks):
                    index_price, mark_price = self.model.latest_prices(other)
                    factor = WAD - self.model.max_block_move
                    gap = (max(index_price * factor // WAD, 1), max(mark_price * factor // WAD, 1))
                    if self.model.reachable_prices(other, *gap, self.t + 1) != gap or not self.push_prices("gap elsewhere", [(other, *gap)]).ok:
                        break
            self.execute("adl: execute planned before a loss elsewhere", target, market, batches[0].winners, batches[0].declaration)
            return
        position = self.model.position(winner, market).size
        size, price = max(abs(position) * fraction_bp // 10_000, 1), self.mark(market)
        self.pair_with_maker("winner trades", winner, market, -size if position > 0 else size, price)
        self.execute("adl: execute planned before a trade", target, market, batches[0].winners, batches[0].declaration)

    @action(market=market_id, updates=st.integers(2, 12), share_bp=st.integers(2_000, 6_000), down=st.booleans())
    def oracle_burst(self, market, updates, share_bp, down):
        """Many updates of one market in one block, each a share of the block limit in the same
        direction: refused as soon as the block's move from where it started exceeds the limit (O1)."""
        index_price, mark_price = self.model.latest_prices(market)
        step = self.model.max_block_move * share_bp // 10_000
        factor = WAD - step if down else WAD + step
        burst = []
        for _ in range(updates):
            index_price, mark_price = max(index_price * factor // WAD, 1), max(mark_price * factor // WAD, 1)
            burst.append((market, index_price, mark_price))
        self.push_prices("oracle burst", burst)

    # ------------------------------------------------------------ state compared after every step

    def chain_reads(self) -> dict:
        e = self.env
        if getattr(e, "waterfall_calls", None) is None:
            v, a, ch, token = e.vault, e.adl_engine, e.ch, e.token
            calls = {}
            for fn in ("totalSupply", "last_report_value", "last_report", "locked_profit", "unlock_end", "high_day", "day_high", "max_leverage",
                       "loss_cap_per_event", "loss_cap_per_day", "lockup_period", "withdrawal_delay", "profit_unlock_time"):
                calls[("vault", fn)] = getattr(v, fn).call()
            for fn in ("totalAssets", "drawdown", "loss_allowance", "profit_locked"):
                calls[("vault_view", fn)] = getattr(v, fn).call()
            holders = [*e.depositors, e.insurance]
            for h in holders:
                calls[("shares", h)] = v.balanceOf.call(h)
                calls[("unlock_time", h)] = v.unlock_time.call(h)
            for c in e.depositors:
                calls[("request", c)] = v.requests.call(c)
                calls[("claim_preview", c)] = v.claim_preview.call(c)
                for o in e.depositors:
                    if o != c:
                        calls[("operator", c, o)] = v.isOperator.call(c, o)
                        calls[("allowance", c, o)] = v.allowance.call(c, o)
            calls[("wallet", e.depositors[0])] = token.balanceOf.call(e.depositors[0])
            for m in range(e.market_count):
                calls[("max_position", m)] = v.max_position.call(m)
                calls[("policy", m)] = a.policy.call(m)
                for side in (0, 1):
                    calls[("adl_exposure", m, side)] = ch.adl_exposure.call(m, side)
                    calls[("loss_index", m, side)] = ch.loss_index.call(m, side)
            calls[("round_duration",)] = a.round_duration.call()
            liq = e.liquidation
            for fn in ("auction_premium", "auction_ramp", "auction_duration", "auction_min_notional", "volunteer_auctions"):
                calls[("auction_params", fn)] = getattr(liq, fn).call()
            for x in e.accounts:
                calls[("in_adl_round", x)] = ch.in_adl_round.call(x)
            e.waterfall_calls = calls
            e.round_calls = {x: [(("round", x), a.rounds.call(x)), *((("market_round", x, m), a.market_rounds.call(x, m)) for m in range(e.market_count))]
                             for x in e.accounts}
            e.auction_calls = {x: [*((("auction", x, m), e.liquidation.auctions.call(x, m)) for m in range(e.market_count)),
                                   *((("volunteer_premium", x, m), e.liquidation.volunteer_premium.call(x, m)) for m in range(e.market_count))]
                               for x in e.accounts}
        # Rounds and their markets of every account that has been in one (the others stay zero),
        # the auctions of those accounts and of the vault.
        rounds = {key: call for x in self.watched for key, call in e.round_calls[x]}
        auctions = {key: call for x in {*self.watched, e.insurance} for key, call in e.auction_calls[x]}
        return {**super().chain_reads(), **e.waterfall_calls, **rounds, **auctions}

    def handed_positions(self) -> set[str]:
        """The vault, when this step gave it a bankrupt account's positions: a round past its
        deadline hands its rest to the vault at the mark, flagged bankrupt or not (the fallback
        cannot fail: design 4.3); a flagged vault takes nothing else (its capacity is zero)."""
        absorbed = len(self.engine.absorptions) > self.absorptions_seen
        self.absorptions_seen = len(self.engine.absorptions)
        return {self.env.insurance} if absorbed else set()

    def expected_state(self, keys) -> dict:
        vault, engine, m, t = self.vault, self.engine, self.model, self.t
        out = super().expected_state([k for k in keys if k[0] not in WATERFALL_KINDS])
        views = {"totalAssets": lambda: vault.total_assets(t), "drawdown": lambda: vault.drawdown(t),
                 "loss_allowance": lambda: vault.loss_allowance(t), "profit_locked": lambda: vault.profit_locked(t)}
        for key in keys:
            kind = key[0]
            if kind not in WATERFALL_KINDS:
                continue
            if kind == "vault":
                out[key] = vault.total_supply if key[1] == "totalSupply" else getattr(vault, key[1])
            elif kind == "vault_view":
                out[key] = views[key[1]]()
            elif kind == "shares":
                out[key] = vault.balance_of.get(key[1], 0)
            elif kind == "unlock_time":
                out[key] = vault.unlock_time.get(key[1], 0)
            elif kind == "request":
                r = vault.requests.get(key[1], Request())
                out[key] = (r.shares, r.assets, r.claimable_at)
            elif kind == "claim_preview":
                out[key] = tuple(vault.claim_preview(key[1], t))
            elif kind == "operator":
                out[key] = vault.is_operator.get((key[1], key[2]), False)
            elif kind == "allowance":
                out[key] = vault.allowance.get((key[1], key[2]), 0)
            elif kind == "max_position":
                out[key] = vault.max_position.get(key[1], 0)
            elif kind == "policy":
                out[key] = engine.policy.get(key[1], 0)
            elif kind == "adl_exposure":
                out[key] = m.adl_exposure.get((key[1], key[2]), 0)
            elif kind == "loss_index":
                out[key] = m.loss_index.get((key[1], key[2]), 0)
            elif kind == "round_duration":
                out[key] = engine.round_duration
            elif kind == "in_adl_round":
                out[key] = m.in_adl_round.get(key[1], False)
            elif kind == "round":
                out[key] = tuple(vars(engine.rounds.get(key[1], Round())).values())
            elif kind == "market_round":
                out[key] = tuple(vars(engine.market_rounds.get((key[1], key[2]), MarketRound())).values())
            elif kind == "auction_params":
                out[key] = getattr(m.liquidation, key[1])
            elif kind == "auction":
                out[key] = tuple(vars(m.liquidation.auction(key[1], key[2])).values())
            elif kind == "volunteer_premium":
                out[key] = m.liquidation.volunteer_premium(key[1], key[2])
        return out

    # ------------------------------------------------------------ the waterfall's invariants

    @invariant()
    def check_waterfall(self):
        try:
            self._check_waterfall()
        except BaseException:
            from test_state_machine import _record_failure
            _record_failure()
            raise

    def _check_waterfall(self):
        m, engine, vault, t = self.model, self.engine, self.vault, self.t
        # Invariant 9 (A4): every round closes within its deadline plus one transaction: past it,
        # `finish_round` by anyone goes through (the model's copy of it, whose agreement with the
        # contract every `finish_round` step checks).
        for account, current in list(engine.rounds.items()):
            if t + 1 > current.deadline:
                saved = m.snapshot()
                try:
                    engine.finish_round(account, t + 1)
                except ModelRevert as refused:
                    raise AssertionError(f"the round of {account} cannot be finished past its deadline: {refused.reason}")
                finally:
                    m.restore(saved)
        # Invariant 9 (A6): only the bankrupt and the holders of a side an open round can still
        # charge wait to withdraw; the exposure counters are exactly the open rounds' sides.
        exposed: dict = {}
        for account, current in engine.rounds.items():
            for market in range(self.env.market_count):
                if current.markets_left & (1 << market):
                    side = (market, 1 if engine.market_rounds[(account, market)].bankrupt_size > 0 else 0)
                    exposed[side] = exposed.get(side, 0) + 1
        assert {k: c for k, c in m.adl_exposure.items() if c} == exposed, "ADL exposure is not the open rounds' sides"
        for account in [*self.env.accounts, *self.depositors]:
            holds = any((mk, 0 if m.position(account, mk).size > 0 else 1) in exposed
                        for mk in range(self.env.market_count) if m.position(account, mk).size)
            assert m._withdrawal_waits(account) == (m.bankrupt.get(account, False) or holds), f"the gate of {account}"
        # Invariant 6 (A2): a round its policy closed charged Σ haircuts == D to the unit; every
        # closed round's bankrupt account ends flat, at zero, unflagged.
        for closed in engine.closed_rounds[self.closed_seen:]:
            assert closed.haircuts == sum(hit.haircut for hit in closed.hits)
            if not closed.fallback:
                assert closed.haircuts == closed.deficit, f"round of {closed.account}: Σ haircuts {closed.haircuts} != D {closed.deficit}"
            opened = self.open_rounds.get(closed.account)
            if opened is not None:
                # Invariant 10: a volunteer auction's premiums join its round's D, each exactly once.
                premiums = sum(event[6] for event in m.liquidation.auction_events[opened.auction_events:]
                               if event[0] == "AuctionTaken" and event[1] == closed.account)
                assert closed.deficit == opened.deficit + premiums, f"round of {closed.account}: D {closed.deficit} != {opened.deficit} + premiums {premiums}"
            if closed.account != m.insurance_account:
                assert m.open_markets.get(closed.account, 0) == 0 and not m.bankrupt.get(closed.account, False)
            self.open_rounds.pop(closed.account, None)
            STATS.notes["ADL rounds closed by the fallback" if closed.fallback else "ADL rounds closed by their policy"] += 1
            if len({hit.winner for hit in closed.hits}) > 1:
                STATS.notes["ADL rounds that hit several winners"] += 1
        self.closed_seen = len(engine.closed_rounds)
        # Shares: Σ balances == supply; a request's escrow is held by the vault itself.
        assert sum(vault.balance_of.values()) == vault.total_supply
        assert vault.balance_of.get(vault.address, 0) == sum(r.shares for r in vault.requests.values())
        # Invariant 5 (V6, V8): a step of share actions only (deposits, mints, requests, claims,
        # transfers, donations) never moves the share price against holders while the vault holds
        # no position (one with positions moves with its PnL and funding, second by second).
        price = self.share_price()
        if self.share_actions_only and self.share_price_before is not None and not m.open_markets.get(vault.address, 0):
            assert price >= self.share_price_before, f"share price fell from {self.share_price_before} to {price} on share actions"
        self.share_price_before = price
        self.share_actions_only = True


WATERFALL_KINDS = {
    "vault", "vault_view", "shares", "unlock_time", "request", "claim_preview", "operator", "allowance", "max_position", "policy",
    "adl_exposure", "loss_index", "round_duration", "in_adl_round", "round", "market_round", "auction_params", "auction",
    "volunteer_premium",
}


def test_waterfall_state_machine(waterfall_env):
    """The waterfall machine under the active profile."""
    runs = {**RUNS, **WATERFALL_RUNS.get(PROFILE, {})}
    runs["max_examples"] = int(os.environ.get("BACKSTOP_SM_EXAMPLES", runs["max_examples"]))
    runs["stateful_step_count"] = int(os.environ.get("BACKSTOP_SM_STEPS", runs["stateful_step_count"]))
    _run(WaterfallMachine, waterfall_env, **runs)


PROGRAMS = Path(__file__).parent / "programs"


def test_regression__finish_round_hands_its_rest_to_a_flagged_vault(waterfall_env):
    """Found by the deep run (seed 20261202, after 323,915 waterfall steps; hypothesis gave up
    shrinking it): the insurance vault, flagged bankrupt and in no round of its own, takes what is
    left of another account's bankrupt positions when that round reaches its deadline
    (`finish_round`), so a flagged account's positions move outside its own round."""
    state = replay(waterfall_env, (PROGRAMS / "fallback_into_a_flagged_vault.txt").read_text(), WaterfallMachine)
    last = state.engine.closed_rounds[-1]
    assert last.fallback and last.notional_absorbed > 0 and state.model.bankrupt.get(state.env.insurance)
    assert state.engine.absorptions[-1][0] == last.account and not state.model.in_adl_round.get(state.env.insurance)
