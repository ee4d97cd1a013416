# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title AdlRanking
@notice Read-only views that let anyone audit the ADL keeper: each position's ranking key under
        its market's policy, its 1-5 ADL indicator, how much of a position the insurance vault
        could absorb, and a round's state as the engine's next `execute` will see it. The AdlEngine cannot enumerate a market's accounts, so the keeper supplies
        the winners of a round; with these views and the accounts from the clearinghouse's
        PositionUpdate events, anyone can check that it followed the policy.
@dev Computes exactly what the AdlEngine computes (modules/adl_candidates.vy), at the latest
     marks. O(accounts passed): meant for eth_call, not for transactions.
"""

from interfaces import IAdlPolicies
from interfaces import IMarginPool
from interfaces import IOracle
from interfaces import IWaterfallClearinghouse
from modules import adl_candidates
from modules import margin_math

initializes: adl_candidates

exports: (
    adl_candidates.clearinghouse,
    adl_candidates.oracle,
)


# ---------------------------------------------------------------- constants

# @dev Largest list of accounts a view takes.
MAX_RANKED: constant(uint256) = 10000


# ---------------------------------------------------------------- constructor

@deploy
def __init__(clearing: IWaterfallClearinghouse, price_oracle: IOracle):
    """
    @notice Deploys the views for the ADL engine of a clearinghouse (deployed before the engine,
            which evaluates its winners here).
    @param clearing The clearinghouse.
    @param price_oracle The oracle.
    """
    adl_candidates.__init__(clearing, price_oracle)


# ---------------------------------------------------------------- views

@external
@view
def engine() -> IAdlPolicies:
    """
    @notice The engine whose policies and rounds the views read: the clearinghouse's ADL engine.
    @return The AdlEngine.
    """
    return self._engine()


@external
@view
def ranking_keys(market: uint256, long_side: bool, accounts: DynArray[address, MAX_RANKED]) -> DynArray[uint256, MAX_RANKED]:
    """
    @notice The ADL ranking key of each account's position on one side of a market, at the
            latest mark and under the market's policy: higher goes first (pro-rata: the profit,
            the share of a haircut). Zero for an account that is not a winner on that side.
    @dev Sort by key descending, then address ascending, for the canonical order a keeper must
         follow under the queues and risk-aware. Pro-rata has no queue: `AdlEngine.execute` takes
         its winners by address ascending, and the key only shows each one's haircut weight. Pass
         the accounts from the clearinghouse's PositionUpdate events.
    @param market The market id.
    @param long_side True to rank the longs (who pay when a short goes bankrupt).
    @param accounts The accounts to rank.
    @return One key per account.
    """
    keys: DynArray[uint256, MAX_RANKED] = []
    market_policy: uint256 = staticcall self._engine().policy(market)
    for account: address in accounts:
        keys.append(adl_candidates._ranking_key(account, market, long_side, market_policy))
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
    size: int256 = (staticcall adl_candidates.clearinghouse.positions(account, market)).size
    market_policy: uint256 = staticcall self._engine().policy(market)
    key: uint256 = adl_candidates._ranking_key(account, market, size > 0, market_policy)
    if key == 0:
        return 0
    ahead: uint256 = 0
    ranked: uint256 = 1
    for other: address in accounts:
        if other == account:
            continue
        other_key: uint256 = adl_candidates._ranking_key(other, market, size > 0, market_policy)
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
    size: int256 = (staticcall adl_candidates.clearinghouse.positions(account, market)).size
    if size == 0:
        return 0
    return min(convert(abs(size), uint256), self._vault_capacity(account, market, adl_candidates._latest_mark(market), size > 0))


@external
@view
def vault_capacity_at(account: address, market: uint256, price: uint256, taking_long: bool) -> uint256:
    """
    @notice Base units of a position in `market` (long if `taking_long`) the vault could take
            from `account` at `price` within its position and leverage limits, whatever
            `account` holds: what an ADL round's `_absorb` is bounded by (the engine calls it).
    @param account The account the vault would take from (zero if it is the vault itself).
    @param market The market id.
    @param price The price of the takeover.
    @param taking_long True if the vault would take a long position.
    @return Base units.
    """
    return self._vault_capacity(account, market, price, taking_long)


@external
@view
def evaluate_winners(market: uint256, price: uint256, market_policy: uint256, bankrupt_long: bool,
                     winners: DynArray[address, adl_candidates.MAX_CANDIDATES]) -> DynArray[adl_candidates.Entry, adl_candidates.MAX_CANDIDATES]:
    """
    @notice The winners a keeper lists for a round, each evaluated at the round's price under
            its policy (profit, account value, ranking key) or with the reason it is skipped:
            what `AdlEngine.execute` processes, which calls this view (the engine keeps the
            order, the shares and the transfers).
    @param market The market id.
    @param price The round's price in the market.
    @param market_policy The round's policy.
    @param bankrupt_long True if the bankrupt position is long (the winners are short).
    @param winners The winners as listed.
    @return One entry per winner, in the list's order: a SKIP_* code (0 to process) and the evaluation.
    @dev Skipped: bankrupt, not on the winners' side, without profit at `price`, or without
         account value. Each account's value is summed from its pool balance and positions, with
         every market's latest mark and funding index read once per call: the same figure as
         Clearinghouse.account_health, without its margin requirements and per-account price reads.
    """
    entries: DynArray[adl_candidates.Entry, adl_candidates.MAX_CANDIDATES] = []
    pool: IMarginPool = IMarginPool(staticcall adl_candidates.clearinghouse.pool())
    marks: uint256[adl_candidates.MAX_MARKETS] = empty(uint256[adl_candidates.MAX_MARKETS])
    # the index each side settles against: funding, and the loss spread over that side
    long_indices: int256[adl_candidates.MAX_MARKETS] = empty(int256[adl_candidates.MAX_MARKETS])
    short_indices: int256[adl_candidates.MAX_MARKETS] = empty(int256[adl_candidates.MAX_MARKETS])
    loaded: uint256 = 0
    for winner: address in winners:
        entry: adl_candidates.Entry = adl_candidates.Entry(skip=adl_candidates.PROCESS, candidate=empty(adl_candidates.Candidate))
        held: IWaterfallClearinghouse.Position = staticcall adl_candidates.clearinghouse.positions(winner, market)
        if adl_candidates._is_bankrupt(winner):
            entry.skip = adl_candidates.SKIP_BANKRUPT
        elif held.size == 0 or (held.size > 0) == bankrupt_long:
            entry.skip = adl_candidates.SKIP_SIDE
        else:
            open_mask: uint256 = staticcall adl_candidates.clearinghouse.open_markets(winner)
            missing: uint256 = open_mask & ~loaded
            if missing != 0:
                loaded |= missing
                for other: uint256 in range(adl_candidates.MAX_MARKETS):
                    if missing == 0:
                        break
                    if missing & (1 << other) == 0:
                        continue
                    missing &= ~(1 << other)
                    marks[other] = adl_candidates._latest_mark(other)
                    funding: int256 = staticcall adl_candidates.clearinghouse.current_funding_index(other)
                    long_indices[other] = funding + convert(staticcall adl_candidates.clearinghouse.loss_index(other, 0), int256)
                    short_indices[other] = funding - convert(staticcall adl_candidates.clearinghouse.loss_index(other, 1), int256)
            account_value: int256 = staticcall pool.balance_of(winner)
            for other: uint256 in range(adl_candidates.MAX_MARKETS):
                if open_mask == 0:
                    break
                if open_mask & (1 << other) == 0:
                    continue
                open_mask &= ~(1 << other)
                other_position: IWaterfallClearinghouse.Position = held
                if other != market:
                    other_position = staticcall adl_candidates.clearinghouse.positions(winner, other)
                account_value += margin_math.pnl(other_position.size, other_position.entry_price, marks[other])
                side_index: int256 = long_indices[other] if other_position.size > 0 else short_indices[other]
                account_value += margin_math.funding_payment(other_position.size, side_index, other_position.funding_snapshot)
            entry.candidate = adl_candidates._evaluate_at(winner, market, held, price, market_policy, account_value)
            if entry.candidate.profit == 0:
                entry.skip = adl_candidates.SKIP_UNPROFITABLE
            elif entry.candidate.value <= 0:
                entry.skip = adl_candidates.SKIP_NO_VALUE
        entries.append(entry)
    return entries


@external
@view
def market_round(account: address, market: uint256) -> IAdlPolicies.MarketRound:
    """
    @notice `account`'s ADL round in `market` as the engine's next `execute` will see it: its
            `market_rounds` with the volunteer takes the engine has not yet settled (a take does
            not call the engine): the size taken off `size_left`, the premiums added to
            `deficit_left`. What a keeper plans the next batch with.
    @param account The bankrupt account.
    @param market The market id.
    @return The round's state in the market (all zero when none ever opened there).
    """
    state: IAdlPolicies.MarketRound = staticcall self._engine().market_rounds(account, market)
    held: uint256 = convert(abs((staticcall adl_candidates.clearinghouse.positions(account, market)).size), uint256)
    if held < state.size_left and (staticcall self._engine().rounds(account)).markets_left & (1 << market) != 0:
        state.size_left = held
        state.deficit_left += staticcall adl_candidates._volunteer_auctions().volunteer_premium(account, market)
    return state


# ---------------------------------------------------------------- internals

@internal
@view
def _vault_capacity(account: address, market: uint256, price: uint256, taking_long: bool) -> uint256:
    return adl_candidates._vault_capacity(staticcall adl_candidates.clearinghouse.insurance_account(), account, market, price, taking_long)


@internal
@view
def _engine() -> IAdlPolicies:
    return IAdlPolicies(staticcall adl_candidates.clearinghouse.adl_engine())
