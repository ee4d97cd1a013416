# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title AdlEngine
@notice Auto-deleveraging, the last layer of the waterfall. An account whose value is negative
        and that the insurance vault refused is resolved in one ADL round:
        - its deficit D is charged to profitable positions on the other side (haircuts, each at
          most that position's profit and its account's value; they add up to D exactly);
        - its positions are offset: by the vault within its risk limits (pro-rata and risk-aware
          policies) and by force-closing winners, all at one price per market, the mark when the
          round opened.
        A keeper opens the round and submits the winners in policy order, in one or more
        transactions; the engine re-checks each winner (opposite side, profitable now, size
        clamped to its current position) and the order. The round stays open until D and every
        position are resolved, and withdrawals wait while any round is open.
@dev Gas grows with the winners a transaction touches, never with the positions open. The
     engine cannot enumerate a market's accounts; `ranking_keys` and `adl_indicator` rank the
     accounts a client passes (from the clearinghouse's PositionUpdate events), so anyone can
     audit a keeper's order. The policies' formulas are in modules/adl_math.vy.
"""

from snekmate.auth import ownable
from interfaces import IWaterfallClearinghouse
from interfaces import IInsuranceVault
from interfaces import IMarginPool
from interfaces import IOracle
from modules import adl_math
from modules import fixed_point
from modules import keeper_roles
from modules import margin_math

initializes: ownable
initializes: keeper_roles[ownable := ownable]

exports: (
    ownable.owner,
    ownable.transfer_ownership,
    keeper_roles.is_keeper,
    keeper_roles.set_keeper,
)


# ---------------------------------------------------------------- events

event AdlRoundOpened:
    account: indexed(address)
    deficit: uint256
    # @dev bit m set for each market the account has a position in
    markets: uint256

event VaultAbsorption:
    account: indexed(address)
    vault: indexed(address)
    market: indexed(uint256)
    size: uint256
    price: uint256

event AdlHit:
    account: indexed(address)
    winner: indexed(address)
    market: indexed(uint256)
    size_closed: uint256
    price: uint256
    haircut: uint256

event AdlMarketResolved:
    account: indexed(address)
    market: indexed(uint256)
    policy: uint256
    deficit_share: uint256
    size_absorbed: uint256
    size_closed: uint256
    notional_closed: uint256

event AdlRoundClosed:
    account: indexed(address)
    deficit: uint256
    haircuts: uint256
    notional_closed: uint256
    notional_absorbed: uint256
    # @dev what was left in the account once flat, moved to (+) or from (-) the vault
    residual: int256

event UpdatePolicy:
    market: indexed(uint256)
    policy: uint256


# ---------------------------------------------------------------- structs

struct Round:
    # @dev the account's deficit D when the round opened (collateral units)
    deficit: uint256
    # @dev haircuts charged so far; equal to `deficit` when the round closes
    haircuts: uint256
    # @dev bit m set while market m has size or deficit left
    markets_left: uint256
    # @dev notional force-closed from winners at the round's prices (collateral units)
    notional_closed: uint256
    # @dev notional the vault absorbed at the round's prices (collateral units)
    notional_absorbed: uint256

struct MarketRound:
    # @dev the market's policy when the round opened
    policy: uint256
    # @dev the mark when the round opened; every close of the round is at this price
    price: uint256
    # @dev the bankrupt account's position when the round opened
    bankrupt_size: int256
    # @dev base units still to offset
    size_left: uint256
    # @dev this market's share of the deficit still to charge
    deficit_left: uint256
    # @dev this market's share of the deficit
    deficit_share: uint256
    # @dev base units the vault absorbed
    size_absorbed: uint256
    # @dev base units force-closed from winners
    size_closed: uint256
    # @dev ranking key of the last winner processed; the next one must not rank above it
    last_key: uint256
    # @dev the last winner processed; ties in key go by increasing address
    last_account: address

struct Declaration:
    # @dev risk-aware: leverage (1e18) at and above which a winner gives all its profit
    haircut_level: uint256
    # @dev risk-aware: leverage (1e18) the force-closes drain the most levered winners down to
    close_level: uint256
    # @dev pro-rata and risk-aware: haircut weights of this call's winners and all later ones
    haircut_weight: uint256
    # @dev pro-rata and risk-aware: close weights of this call's winners and all later ones
    close_weight: uint256

struct Candidate:
    size: int256
    # @dev unrealised PnL at the round's price, positive
    profit: uint256
    # @dev cross-margin account value, positive
    value: int256
    # @dev the policy's ranking key
    key: uint256
    # @dev cross-margin leverage on the account's net exposure (risk-aware)
    net_leverage: uint256
    # @dev signed sum of the account's notionals over its markets (risk-aware)
    net_notional: int256


# ---------------------------------------------------------------- constants

MAX_MARKETS: constant(uint256) = 16
# @dev Largest list of winners in one `execute`; the clearinghouse takes as many settlements.
MAX_CANDIDATES: constant(uint256) = 400
# @dev Largest list of accounts a ranking view takes.
MAX_RANKED: constant(uint256) = 10000


# ---------------------------------------------------------------- storage

# @dev Positions, account values and the waterfall hooks.
clearinghouse: public(immutable(IWaterfallClearinghouse))
# @dev Mark prices.
oracle: public(immutable(IOracle))
# @dev Collateral balances (read only; they move through the clearinghouse).
pool: public(immutable(IMarginPool))
# @dev ADL policy per market (adl_math constants).
policy: public(HashMap[uint256, uint256])
# @dev The open round of each bankrupt account (all zero when none).
rounds: public(HashMap[address, Round])
# @dev The open round of each bankrupt account, per market.
market_rounds: public(HashMap[address, HashMap[uint256, MarketRound]])


# ---------------------------------------------------------------- constructor

@deploy
def __init__(clearing: IWaterfallClearinghouse, price_oracle: IOracle):
    """
    @notice Deploys the engine; the deployer becomes owner. Every market starts on the
            BitMEX-style queue; wire it with `Clearinghouse.set_adl_engine`.
    @param clearing The clearinghouse.
    @param price_oracle The oracle the clearinghouse uses.
    """
    ownable.__init__()
    clearinghouse = clearing
    oracle = price_oracle
    pool = IMarginPool(staticcall clearing.pool())


# ---------------------------------------------------------------- owner

@external
def set_policy(market: uint256, new_policy: uint256):
    """
    @notice Sets a market's ADL policy; rounds already open keep the policy they opened with.
    @dev Owner only. 0 queue (PnL% x leverage), 1 queue (Hyperliquid), 2 pro-rata, 3 risk-aware.
    @param market The market id.
    @param new_policy The policy.
    """
    ownable._check_owner()
    assert market < staticcall clearinghouse.market_count(), "AdlEngine: unknown market"
    assert new_policy < adl_math.POLICY_COUNT, "AdlEngine: unknown policy"
    self.policy[market] = new_policy
    log UpdatePolicy(market=market, policy=new_policy)


# ---------------------------------------------------------------- rounds

@external
def open_round(account: address):
    """
    @notice Opens the ADL round of a flagged account whose value is still negative: fixes its
            deficit D, one price per market (the fresh mark) and each market's share of D (in
            proportion to the account's loss there); under the pro-rata and risk-aware policies
            the vault then absorbs as much of each position as its limits allow.
    @dev Keeper only. A round with nothing left to force-close or charge closes at once; so does
         the round of an account without positions (a deficit left in its balance, e.g. rounding
         dust): there are no winners to charge, so the vault covers it as the residual.
    @param account The bankrupt account.
    """
    keeper_roles._check_keeper()
    flags: IWaterfallClearinghouse.AccountFlag = staticcall clearinghouse.account_flags(account)
    assert IWaterfallClearinghouse.AccountFlag.BANKRUPT in flags and IWaterfallClearinghouse.AccountFlag.IN_ADL_ROUND not in flags, "AdlEngine: not flagged or round open"
    # Fresh prices: the deficit fixes the haircuts of the whole round.
    value: int256 = (staticcall clearinghouse.fresh_account_health(account)).value
    assert value < 0, "AdlEngine: account solvent"
    extcall clearinghouse.set_account_flags(account, flags | IWaterfallClearinghouse.AccountFlag.IN_ADL_ROUND)
    deficit: uint256 = convert(-value, uint256)
    open_mask: uint256 = staticcall clearinghouse.open_markets(account)

    losses: uint256[MAX_MARKETS] = empty(uint256[MAX_MARKETS])
    sizes: uint256[MAX_MARKETS] = empty(uint256[MAX_MARKETS])
    total_loss: uint256 = 0
    total_size: uint256 = 0
    for market: uint256 in range(MAX_MARKETS):
        if open_mask & (1 << market) == 0:
            continue
        price: uint256 = self._fresh_mark(market)
        position: IWaterfallClearinghouse.Position = staticcall clearinghouse.positions(account, market)
        losses[market] = convert(max(-margin_math.pnl(position.size, position.entry_price, price), 0), uint256)
        sizes[market] = convert(abs(position.size), uint256)
        total_loss += losses[market]
        total_size += sizes[market]
        self.market_rounds[account][market] = MarketRound(
            policy=self.policy[market], price=price, bankrupt_size=position.size, size_left=sizes[market],
            deficit_left=0, deficit_share=0, size_absorbed=0, size_closed=0, last_key=max_value(uint256), last_account=empty(address),
        )
    self.rounds[account] = Round(deficit=deficit, haircuts=0, markets_left=open_mask, notional_closed=0, notional_absorbed=0)
    log AdlRoundOpened(account=account, deficit=deficit, markets=open_mask)

    # D is split by the loss in each market (by size if no market shows a loss): the winners of
    # a market pay for what was lost there.
    deficit_left: uint256 = deficit
    weight_left: uint256 = total_loss if total_loss > 0 else total_size
    for market: uint256 in range(MAX_MARKETS):
        if open_mask & (1 << market) == 0:
            continue
        weight: uint256 = losses[market] if total_loss > 0 else sizes[market]
        part: uint256 = adl_math.share(deficit_left, weight, weight_left)
        deficit_left -= part
        weight_left -= weight
        self.market_rounds[account][market].deficit_left = part
        self.market_rounds[account][market].deficit_share = part
        if not adl_math.is_queue(self.market_rounds[account][market].policy):
            self._absorb(account, market)
        self._resolve_if_done(account, market, False)
    if open_mask == 0:
        self._close_round(account)


@external
def execute(account: address, market: uint256, winners: DynArray[address, MAX_CANDIDATES], declaration: Declaration, last: bool):
    """
    @notice Charges and force-closes the next winners of a round in one market, in policy order.
            Queue policies close each winner in turn (the last one partly) at the bankruptcy
            price: a haircut of closed size x (bankruptcy price - mark). Pro-rata charges
            haircuts in proportion to profit and closes in proportion to size; risk-aware by
            leverage water-filling (see adl_math). For those two the keeper declares the weights
            of this call's winners plus all later ones; each winner's share is its weight over
            the weight left, and the last takes what is left, so the sums are exact.
    @dev Keeper only. Each winner must be on the other side of the bankrupt position,
         profitable at the round's price, with positive account value, not bankrupt, and rank no
         higher than the winner before it (queues: key descending; risk-aware: net leverage
         descending; pro-rata: address ascending; ties by address ascending). Haircuts are capped
         by the winner's profit and account value (less one unit if it is partly closed), closes
         by its position.
    @param account The bankrupt account.
    @param market The market.
    @param winners The winners, in policy order.
    @param declaration Levels and weights (ignored by the queue policies).
    @param last True if this call must resolve the market: it reverts if it leaves size or
           deficit in it.
    """
    keeper_roles._check_keeper()
    assert self.rounds[account].markets_left & (1 << market) != 0, "AdlEngine: no open round in this market"
    state: MarketRound = self.market_rounds[account][market]
    direction: int256 = 1 if state.bankrupt_size > 0 else -1
    haircut_weight_left: uint256 = declaration.haircut_weight
    close_weight_left: uint256 = declaration.close_weight
    transfers: DynArray[IWaterfallClearinghouse.PositionTransfer, MAX_CANDIDATES] = []
    haircuts: uint256 = 0
    closed: uint256 = 0

    # Each winner's account value is summed here from its pool balance and positions, with every
    # market's latest mark and funding index read once per call: the same figure as
    # Clearinghouse.account_health, without its margin requirements and per-account price reads.
    marks: uint256[MAX_MARKETS] = empty(uint256[MAX_MARKETS])
    indices: int256[MAX_MARKETS] = empty(int256[MAX_MARKETS])
    loaded: uint256 = 0

    for winner: address in winners:
        assert state.size_left > 0 or state.deficit_left > 0, "AdlEngine: market already resolved"
        assert not self._is_bankrupt(winner), "AdlEngine: winner bankrupt"
        held: IWaterfallClearinghouse.Position = staticcall clearinghouse.positions(winner, market)
        assert held.size != 0 and (held.size > 0) != (state.bankrupt_size > 0), "AdlEngine: winner not on the opposite side"
        open_mask: uint256 = staticcall clearinghouse.open_markets(winner)
        missing: uint256 = open_mask & ~loaded
        if missing != 0:
            loaded |= missing
            for other: uint256 in range(MAX_MARKETS):
                if missing == 0:
                    break
                if missing & (1 << other) == 0:
                    continue
                missing &= ~(1 << other)
                marks[other] = self._latest_mark(other)
                indices[other] = staticcall clearinghouse.current_funding_index(other)
        account_value: int256 = staticcall pool.balance_of(winner)
        for other: uint256 in range(MAX_MARKETS):
            if open_mask == 0:
                break
            if open_mask & (1 << other) == 0:
                continue
            open_mask &= ~(1 << other)
            other_position: IWaterfallClearinghouse.Position = held
            if other != market:
                other_position = staticcall clearinghouse.positions(winner, other)
            account_value += margin_math.pnl(other_position.size, other_position.entry_price, marks[other])
            account_value += margin_math.funding_payment(other_position.size, indices[other], other_position.funding_snapshot)
        candidate: Candidate = self._evaluate_at(winner, market, held, state.price, state.policy, account_value)
        assert candidate.profit > 0, "AdlEngine: winner not profitable"
        assert candidate.value > 0, "AdlEngine: winner has no account value"
        assert candidate.key < state.last_key or (candidate.key == state.last_key and convert(winner, uint256) > convert(state.last_account, uint256)), "AdlEngine: winner out of policy order"
        state.last_key = candidate.key
        state.last_account = winner

        position: uint256 = convert(abs(candidate.size), uint256)
        size: uint256 = 0
        haircut: uint256 = 0
        if adl_math.is_queue(state.policy):
            size = min(position, state.size_left)
            # Once the size is matched, capped haircuts leave deficit for the next in line.
            haircut = adl_math.share(state.deficit_left, size, state.size_left) if state.size_left > 0 else state.deficit_left
        else:
            # Weights count only while there is deficit or size left to split.
            haircut_weight: uint256 = 0
            close_weight: uint256 = 0
            if state.deficit_left > 0:
                haircut_weight = candidate.profit
                if state.policy == adl_math.RISK_AWARE:
                    haircut_weight = adl_math.risk_aware_haircut_weight(candidate.profit, candidate.net_leverage, declaration.haircut_level)
            if state.size_left > 0:
                close_weight = position
                if state.policy == adl_math.RISK_AWARE:
                    close_weight = adl_math.risk_aware_close_weight(candidate.size, state.price, candidate.net_notional, candidate.value, declaration.close_level)
            assert haircut_weight <= haircut_weight_left and close_weight <= close_weight_left, "AdlEngine: declared weights below the winners' weights"
            haircut = adl_math.share(state.deficit_left, haircut_weight, haircut_weight_left)
            size = min(position, adl_math.share(state.size_left, close_weight, close_weight_left))
            haircut_weight_left -= haircut_weight
            close_weight_left -= close_weight
        # A partial close realises its PnL rounded down, up to one unit below the marked value:
        # a haircut capped by the value leaves that unit, so the winner never ends below zero.
        room: uint256 = convert(candidate.value, uint256)
        if size > 0 and size < position:
            room -= 1
        haircut = min(haircut, min(candidate.profit, room))

        state.size_left -= size
        state.deficit_left -= haircut
        haircuts += haircut
        closed += size
        transfers.append(IWaterfallClearinghouse.PositionTransfer(counterparty=winner, size=convert(size, int256) * direction, payment=haircut))
        log AdlHit(account=account, winner=winner, market=market, size_closed=size, price=state.price, haircut=haircut)

    extcall clearinghouse.transfer_positions(account, market, state.price, transfers)
    state.size_closed += closed
    self.market_rounds[account][market] = state
    current: Round = self.rounds[account]
    current.haircuts += haircuts
    current.notional_closed += margin_math.notional(convert(closed, int256), state.price)
    if state.size_left == 0 and state.deficit_left == 0 and current.markets_left == 1 << market:
        # The round closes in this call: its totals go straight to the closing event and its
        # storage is cleared, never written.
        self._log_market_resolved(account, market, state)
        self._finish_round(account, current)
        return
    self.rounds[account].haircuts = current.haircuts
    self.rounds[account].notional_closed = current.notional_closed
    self._resolve_if_done(account, market, last)


# ---------------------------------------------------------------- views

@external
@view
def ranking_keys(market: uint256, long_side: bool, accounts: DynArray[address, MAX_RANKED]) -> DynArray[uint256, MAX_RANKED]:
    """
    @notice The ADL ranking key of each account's position on one side of a market, at the
            latest mark and under the market's policy: higher goes first (pro-rata: the profit,
            the share of a haircut). Zero for an account that is not a winner on that side.
    @dev Sort by key descending, then address ascending, for the canonical order a keeper must
         follow under the queues and risk-aware. Pro-rata has no queue: `execute` takes its
         winners by address ascending, and the key only shows each one's haircut weight. Pass
         the accounts from the clearinghouse's PositionUpdate events.
    @param market The market id.
    @param long_side True to rank the longs (who pay when a short goes bankrupt).
    @param accounts The accounts to rank.
    @return One key per account.
    """
    keys: DynArray[uint256, MAX_RANKED] = []
    for account: address in accounts:
        keys.append(self._ranking_key(account, market, long_side))
    return keys


@external
@view
def adl_indicator(account: address, market: uint256, accounts: DynArray[address, MAX_RANKED]) -> uint256:
    """
    @notice A position's ADL indicator: the quintile of its place in its side's ranking, 5 for
            the first fifth in line, 1 for the last; 0 if it is not a winner.
    @dev `accounts` is the side's universe (including `account` or not); O(len(accounts)).
    @param account The account.
    @param market The market id.
    @param accounts The accounts with positions in the market.
    @return 0 to 5.
    """
    size: int256 = (staticcall clearinghouse.positions(account, market)).size
    key: uint256 = self._ranking_key(account, market, size > 0)
    if key == 0:
        return 0
    ahead: uint256 = 0
    ranked: uint256 = 1
    for other: address in accounts:
        if other == account:
            continue
        other_key: uint256 = self._ranking_key(other, market, size > 0)
        if other_key == 0:
            continue
        ranked += 1
        if other_key > key or (other_key == key and convert(other, uint256) < convert(account, uint256)):
            ahead += 1
    return 5 - 5 * ahead // ranked


@external
@view
def vault_capacity(account: address, market: uint256) -> uint256:
    """
    @notice How much of `account`'s position in `market` the vault could absorb now, within its
            position and leverage limits, at the latest mark: the part of a bankrupt position no
            policy needs to force-close.
    @param account The account.
    @param market The market id.
    @return Base units, at most the position.
    """
    size: int256 = (staticcall clearinghouse.positions(account, market)).size
    if size == 0:
        return 0
    vault: address = staticcall clearinghouse.insurance_account()
    return min(convert(abs(size), uint256), self._vault_capacity(vault, account, market, self._latest_mark(market), size > 0))


# ---------------------------------------------------------------- internals

@internal
def _absorb(account: address, market: uint256):
    """
    @dev The vault takes as much of the bankrupt position as its limits allow, at the round's
         price: a trade at the mark moves no value, so only its exposure grows.
    """
    state: MarketRound = self.market_rounds[account][market]
    vault: address = staticcall clearinghouse.insurance_account()
    size: uint256 = min(state.size_left, self._vault_capacity(vault, account, market, state.price, state.bankrupt_size > 0))
    if size == 0:
        return
    direction: int256 = 1 if state.bankrupt_size > 0 else -1
    extcall clearinghouse.transfer_positions(
        account, market, state.price, [IWaterfallClearinghouse.PositionTransfer(counterparty=vault, size=convert(size, int256) * direction, payment=0)]
    )
    self.market_rounds[account][market].size_left = state.size_left - size
    self.market_rounds[account][market].size_absorbed = size
    self.rounds[account].notional_absorbed += margin_math.notional(convert(size, int256), state.price)
    log VaultAbsorption(account=account, vault=vault, market=market, size=size, price=state.price)


@internal
def _resolve_if_done(account: address, market: uint256, must_resolve: bool):
    state: MarketRound = self.market_rounds[account][market]
    if state.size_left > 0 or state.deficit_left > 0:
        assert not must_resolve, "AdlEngine: deficit or position left unresolved"
        return
    log AdlMarketResolved(
        account=account, market=market, policy=state.policy, deficit_share=state.deficit_share, size_absorbed=state.size_absorbed,
        size_closed=state.size_closed, notional_closed=margin_math.notional(convert(state.size_closed, int256), state.price),
    )
    markets_left: uint256 = self.rounds[account].markets_left & ~(1 << market)
    self.rounds[account].markets_left = markets_left
    if markets_left == 0:
        self._close_round(account)


@internal
def _log_market_resolved(account: address, market: uint256, state: MarketRound):
    log AdlMarketResolved(
        account=account, market=market, policy=state.policy, deficit_share=state.deficit_share, size_absorbed=state.size_absorbed,
        size_closed=state.size_closed, notional_closed=margin_math.notional(convert(state.size_closed, int256), state.price),
    )


@internal
def _close_round(account: address):
    self._finish_round(account, self.rounds[account])


@internal
def _finish_round(account: address, finished: Round):
    """
    @dev Closes a round once the account is flat: what is left in its balance (funding while the
         round ran, rounding of partial closes) goes to or comes from the insurance vault, so the
         account ends at exactly zero, and its flags are lifted.
    """
    assert staticcall clearinghouse.open_markets(account) == 0, "AdlEngine: round leaves a position"
    residual: int256 = staticcall pool.balance_of(account)
    vault: address = staticcall clearinghouse.insurance_account()
    if account != vault:
        if residual > 0:
            extcall clearinghouse.transfer_balance(account, vault, convert(residual, uint256))
        elif residual < 0:
            extcall clearinghouse.transfer_balance(vault, account, convert(-residual, uint256))
    extcall clearinghouse.set_account_flags(account, empty(IWaterfallClearinghouse.AccountFlag))
    log AdlRoundClosed(
        account=account, deficit=finished.deficit, haircuts=finished.haircuts, notional_closed=finished.notional_closed,
        notional_absorbed=finished.notional_absorbed, residual=residual,
    )
    self.rounds[account] = empty(Round)


@internal
@view
def _ranking_key(account: address, market: uint256, long_side: bool) -> uint256:
    if self._is_bankrupt(account):
        return 0
    position: IWaterfallClearinghouse.Position = staticcall clearinghouse.positions(account, market)
    if position.size == 0 or (position.size > 0) != long_side:
        return 0
    market_policy: uint256 = self.policy[market]
    candidate: Candidate = self._evaluate(account, market, position, self._latest_mark(market), market_policy)
    if candidate.profit == 0 or candidate.value <= 0:
        return 0
    if market_policy == adl_math.PRO_RATA:
        return candidate.profit
    return max(candidate.key, 1)


@internal
@view
def _evaluate(account: address, market: uint256, position: IWaterfallClearinghouse.Position, price: uint256, market_policy: uint256) -> Candidate:
    """
    @dev A position's profit at `price`, its account's value and the policy's ranking key.
         The key is zero for a position without profit or an account without value.
    """
    return self._evaluate_at(account, market, position, price, market_policy, (staticcall clearinghouse.account_health(account)).value)


@internal
@view
def _evaluate_at(account: address, market: uint256, position: IWaterfallClearinghouse.Position, price: uint256, market_policy: uint256, account_value: int256) -> Candidate:
    """
    @dev `_evaluate` with the account's value (at the latest prices) already known.
    """
    size: int256 = position.size
    candidate: Candidate = empty(Candidate)
    candidate.size = size
    candidate.profit = convert(max(margin_math.pnl(size, position.entry_price, price), 0), uint256)
    candidate.value = account_value
    if candidate.profit == 0 or candidate.value <= 0:
        return candidate
    if adl_math.is_queue(market_policy):
        candidate.key = adl_math.queue_key(market_policy, size, position.entry_price, price, candidate.value)
    elif market_policy == adl_math.RISK_AWARE:
        candidate.net_notional = self._net_notional(account, market, size, price)
        candidate.net_leverage = adl_math.leverage(convert(abs(candidate.net_notional), uint256), candidate.value)
        candidate.key = candidate.net_leverage
    return candidate


@internal
@view
def _net_notional(account: address, market: uint256, size: int256, price: uint256) -> int256:
    """
    @dev Signed notional summed over the account's markets (`market` at `price`, the others at
         their latest marks): the exposure to one common factor, so a hedged book nets out.
    """
    net: int256 = 0
    open_mask: uint256 = staticcall clearinghouse.open_markets(account)
    for other: uint256 in range(MAX_MARKETS):
        if open_mask & (1 << other) == 0:
            continue
        other_size: int256 = size
        other_price: uint256 = price
        if other != market:
            other_size = (staticcall clearinghouse.positions(account, other)).size
            other_price = self._latest_mark(other)
        notional: int256 = convert(margin_math.notional(other_size, other_price), int256)
        net += notional if other_size > 0 else -notional
    return net


@internal
@view
def _vault_capacity(vault: address, account: address, market: uint256, price: uint256, taking_long: bool) -> uint256:
    """
    @dev Base units of a position in `market` (long if `taking_long`) the vault can take within
         its position limit and its leverage limit. Zero for a vault that is bankrupt, in a
         round, the account itself, or without value. Floor on every bound.
    """
    if vault == account or staticcall clearinghouse.account_flags(vault) != empty(IWaterfallClearinghouse.AccountFlag):
        return 0
    value: int256 = (staticcall clearinghouse.account_health(vault)).value
    if value <= 0:
        return 0
    held: int256 = (staticcall clearinghouse.positions(vault, market)).size
    held_abs: uint256 = convert(abs(held), uint256)
    opposite: bool = held != 0 and (held > 0) != taking_long
    # Taking the other side first unwinds what the vault holds, then grows a new position.
    limit: uint256 = staticcall IInsuranceVault(vault).max_position(market)
    position_room: uint256 = held_abs + limit if opposite else (limit - held_abs if limit > held_abs else 0)

    gross: uint256 = 0
    open_mask: uint256 = staticcall clearinghouse.open_markets(vault)
    for other: uint256 in range(MAX_MARKETS):
        if open_mask & (1 << other) == 0:
            continue
        other_size: int256 = (staticcall clearinghouse.positions(vault, other)).size
        # Ceiling: the limit check counts the larger notional.
        gross += fixed_point.ceil_div(convert(abs(other_size), uint256) * self._latest_mark(other), fixed_point.NOTIONAL_SCALE)
    allowed: uint256 = staticcall IInsuranceVault(vault).max_leverage() * convert(value, uint256) // fixed_point.WAD
    leverage_room: uint256 = 2 * held_abs if opposite else 0
    if allowed > gross:
        leverage_room += (allowed - gross) * fixed_point.NOTIONAL_SCALE // price
    return min(position_room, leverage_room)


@internal
@view
def _is_bankrupt(account: address) -> bool:
    return IWaterfallClearinghouse.AccountFlag.BANKRUPT in staticcall clearinghouse.account_flags(account)


@internal
@view
def _fresh_mark(market: uint256) -> uint256:
    index_price: uint256 = 0
    mark_price: uint256 = 0
    index_price, mark_price = staticcall oracle.fresh_prices(market)
    return mark_price


@internal
@view
def _latest_mark(market: uint256) -> uint256:
    index_price: uint256 = 0
    mark_price: uint256 = 0
    index_price, mark_price = staticcall oracle.latest_prices(market)
    return mark_price
