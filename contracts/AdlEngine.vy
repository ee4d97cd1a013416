# pragma version ~=0.4.3
# pragma nonreentrancy on
"""
@title AdlEngine
@notice Auto-deleveraging, the last layer of the waterfall. An account whose value is negative
        and that the insurance vault refused is resolved in one ADL round:
        - its deficit D is charged to profitable positions on the other side (haircuts, each at
          most that position's profit at the round's price and its account's value);
        - its positions are offset: by the vault within its risk limits (pro-rata and risk-aware
          policies) and by force-closing winners, all at one price per market, the mark when the
          round opened.
        When the volunteer step is on (LiquidationEngine.volunteer_auctions), the round opens
        with a descending-price auction of the bankrupt positions: volunteers take what they
        will, the premium they earn joins D, and only what they leave is force-closed once the
        auction ends; the round's deadline comes that much later.
        Accounts that go bankrupt at the same time on the same markets and sides share one round:
        the keeper opens it for one and nets the others into it (`join_round`) before it acts.
        A keeper opens the round and submits winners in policy order, in one or more
        transactions; the engine re-checks each one (opposite side, profitable at the round's
        price, size clamped to its current position, its place in the order) and skips, with an
        `AdlSkipped` event saying why, any that fails: a stale, duplicated or out-of-order entry
        never reverts the batch nor blocks the winners after it. A haircut is taken from the
        winner's position (its entry price moves against it), so whatever lists a keeper sends, a
        winner never pays more than its profit at the round's price.
        Every round ends. A round not resolved by its deadline (`round_duration` after it opened)
        can be finished by anyone (`finish_round`): the vault takes what is left of each position
        at the mark, and what is left of the deficit is spread over the winners' side of each
        market through the clearinghouse's loss index, in one transaction whose gas does not
        depend on the positions open. While a round is open, only the accounts it can still
        charge (the bankrupt account, and those holding the winners' side of a market it has not
        resolved) wait to withdraw.
@dev Gas grows with the winners a transaction touches, never with the positions open. The
     engine cannot enumerate a market's accounts; the AdlRanking views rank the accounts a
     client passes (from the clearinghouse's PositionUpdate events), so anyone can audit a
     keeper's order. The policies' formulas are in modules/adl_math.vy, how a position is seen
     in modules/adl_candidates.vy.
"""

from snekmate.auth import ownable
from interfaces import IWaterfallClearinghouse
from interfaces import IInsuranceVault
from interfaces import IMarginPool
from interfaces import IOracle
from interfaces import IVolunteerAuctions
from modules import adl_candidates
from modules import adl_math
from modules import keeper_roles
from modules import margin_math

initializes: ownable
initializes: keeper_roles[ownable := ownable]
initializes: adl_candidates

exports: (
    ownable.owner,
    ownable.transfer_ownership,
    keeper_roles.is_keeper,
    keeper_roles.set_keeper,
    adl_candidates.clearinghouse,
    adl_candidates.oracle,
)


# ---------------------------------------------------------------- interfaces

interface RankingViews:
    def evaluate_winners(
        market: uint256, price: uint256, market_policy: uint256, bankrupt_long: bool, winners: DynArray[address, adl_candidates.MAX_CANDIDATES]
    ) -> DynArray[adl_candidates.Entry, adl_candidates.MAX_CANDIDATES]: view
    def vault_capacity_at(account: address, market: uint256, price: uint256, taking_long: bool) -> uint256: view


# ---------------------------------------------------------------- events

event AdlRoundOpened:
    account: indexed(address)
    deficit: uint256
    # @dev bit m set for each market the account has a position in
    markets: uint256
    # @dev after this time anyone may finish the round
    deadline: uint256

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

event AdlSkipped:
    account: indexed(address)
    winner: indexed(address)
    market: indexed(uint256)
    reason: String[40]

event AdlMarketResolved:
    account: indexed(address)
    market: indexed(uint256)
    policy: uint256
    deficit_share: uint256
    size_absorbed: uint256
    size_closed: uint256
    notional_closed: uint256

event AdlRoundJoined:
    account: indexed(address)
    # @dev the account whose open round took the joining account's positions and deficit
    host: indexed(address)
    # @dev the joining account's deficit, now part of the host round's D
    deficit: uint256

event AdlVolunteerTakes:
    account: indexed(address)
    market: indexed(uint256)
    # @dev base units volunteers took in the round's auction since the engine last acted in the
    #      market (each take is a LiquidationEngine.AuctionTaken)
    size: uint256
    # @dev their premiums, now part of D
    premium: uint256
    # @dev the size still to offset in the market
    size_left: uint256
    # @dev the round's D with the premiums
    deficit: uint256

event AdlRoundClosed:
    account: indexed(address)
    deficit: uint256
    haircuts: uint256
    notional_closed: uint256
    notional_absorbed: uint256
    # @dev what was left in the account once flat, moved to (+) or from (-) the vault
    residual: int256
    # @dev deficit spread over the winners' sides (the fallback, and rounding or funding left at the end)
    socialised: uint256
    # @dev True when `finish_round` ended the round at its deadline
    fallback: bool

event UpdatePolicy:
    market: indexed(uint256)
    policy: uint256

event UpdateRoundDuration:
    round_duration: uint256


# ---------------------------------------------------------------- structs

struct Round:
    # @dev the account's deficit D when the round opened, plus the premiums volunteers earned (collateral units)
    deficit: uint256
    # @dev haircuts charged so far
    haircuts: uint256
    # @dev bit m set for each market the account held when the round opened
    markets: uint256
    # @dev bit m set while market m has size or deficit left
    markets_left: uint256
    # @dev notional force-closed from winners at the round's prices (collateral units)
    notional_closed: uint256
    # @dev notional the vault absorbed (collateral units)
    notional_absorbed: uint256
    # @dev after this time anyone may finish the round
    deadline: uint256
    # @dev until this time volunteers may take the positions (the LiquidationEngine's auction) and
    #      nothing is force-closed in a market with size left
    auction_end: uint256
    # @dev when the round opened: accounts bankrupt at that same time may join it (`join_round`)
    opened_at: uint256

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

struct Declaration:
    # @dev risk-aware: leverage (1e18) at and above which a winner gives all its profit
    haircut_level: uint256
    # @dev risk-aware: leverage (1e18) the force-closes drain the most levered winners down to
    close_level: uint256
    # @dev pro-rata and risk-aware: haircut weights of this call's winners and all later ones
    haircut_weight: uint256
    # @dev pro-rata and risk-aware: close weights of this call's winners and all later ones
    close_weight: uint256


# ---------------------------------------------------------------- constants

MAX_MARKETS: constant(uint256) = 16
# @dev Largest list of winners in one `execute` (the clearinghouse takes as many transfers).
MAX_CANDIDATES: constant(uint256) = adl_candidates.MAX_CANDIDATES
# @dev Bounds of `round_duration`: long enough for a keeper to work through a book, short enough
#      that the accounts a round can charge do not wait long.
MIN_ROUND_DURATION: constant(uint256) = 60
MAX_ROUND_DURATION: constant(uint256) = 7 * 86400


# ---------------------------------------------------------------- storage

# @dev Collateral balances (read only; they move through the clearinghouse).
pool: public(immutable(IMarginPool))
# @dev The AdlRanking views: a round evaluates its winners and the vault's room there (modules/adl_candidates.vy).
ranking: public(immutable(RankingViews))
# @dev ADL policy per market (adl_math constants).
policy: public(HashMap[uint256, uint256])
# @dev Seconds a round may stay open before anyone may finish it.
round_duration: public(uint256)
# @dev The open round of each bankrupt account (all zero when none).
rounds: public(HashMap[address, Round])
# @dev The open round of each bankrupt account, per market.
market_rounds: public(HashMap[address, HashMap[uint256, MarketRound]])


# ---------------------------------------------------------------- constructor

@deploy
def __init__(clearing: IWaterfallClearinghouse, price_oracle: IOracle, duration: uint256, ranking_views: RankingViews):
    """
    @notice Deploys the engine; the deployer becomes owner. Every market starts on the
            BitMEX-style queue; wire it with `Clearinghouse.set_adl_engine`.
    @param clearing The clearinghouse.
    @param price_oracle The oracle the clearinghouse uses.
    @param duration Seconds a round may stay open before anyone may finish it.
    @param ranking_views The AdlRanking of the same clearinghouse.
    """
    ownable.__init__()
    adl_candidates.__init__(clearing, price_oracle)
    pool = IMarginPool(staticcall clearing.pool())
    ranking = ranking_views
    self._set_round_duration(duration)


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
    assert market < staticcall adl_candidates.clearinghouse.market_count(), "AdlEngine: unknown market"
    assert new_policy < adl_math.POLICY_COUNT, "AdlEngine: unknown policy"
    self.policy[market] = new_policy
    log UpdatePolicy(market=market, policy=new_policy)


@external
def set_round_duration(duration: uint256):
    """
    @notice Sets how long a round may stay open before anyone may finish it; rounds already open
            keep their deadline.
    @dev Owner only; between one minute and seven days.
    @param duration Seconds.
    """
    ownable._check_owner()
    self._set_round_duration(duration)


# ---------------------------------------------------------------- rounds

@external
def open_round(account: address):
    """
    @notice Opens the ADL round of a flagged account whose value is still negative: fixes its
            deficit D, one price per market (the fresh mark), each market's share of D (in
            proportion to the account's loss there) and the round's deadline; marks the winners'
            side of each market as chargeable (those accounts wait to withdraw); under the
            pro-rata and risk-aware policies the vault then absorbs as much of each position as
            its limits allow. With the volunteer step on, what is left of the positions is then
            auctioned (LiquidationEngine.start_volunteer_auctions) until `auction_end`, and the
            deadline is `round_duration` after that.
    @dev Keeper only. A round with nothing left to force-close or charge closes at once; so does
         the round of an account without positions (a deficit left in its balance).
    @param account The bankrupt account.
    """
    keeper_roles._check_keeper()
    flags: IWaterfallClearinghouse.AccountFlag = staticcall adl_candidates.clearinghouse.account_flags(account)
    assert IWaterfallClearinghouse.AccountFlag.BANKRUPT in flags and IWaterfallClearinghouse.AccountFlag.IN_ADL_ROUND not in flags, "AdlEngine: not flagged or round open"
    # Fresh prices: the deficit fixes the haircuts of the whole round.
    value: int256 = (staticcall adl_candidates.clearinghouse.fresh_account_health(account)).value
    assert value < 0, "AdlEngine: account solvent"
    extcall adl_candidates.clearinghouse.set_account_flags(account, flags | IWaterfallClearinghouse.AccountFlag.IN_ADL_ROUND)
    deficit: uint256 = convert(-value, uint256)
    open_mask: uint256 = staticcall adl_candidates.clearinghouse.open_markets(account)

    losses: uint256[MAX_MARKETS] = empty(uint256[MAX_MARKETS])
    sizes: uint256[MAX_MARKETS] = empty(uint256[MAX_MARKETS])
    total_loss: uint256 = 0
    total_size: uint256 = 0
    for market: uint256 in range(MAX_MARKETS):
        if open_mask & (1 << market) == 0:
            continue
        price: uint256 = adl_candidates._fresh_mark(market)
        position: IWaterfallClearinghouse.Position = staticcall adl_candidates.clearinghouse.positions(account, market)
        losses[market] = convert(max(-margin_math.pnl(position.size, position.entry_price, price), 0), uint256)
        sizes[market] = convert(abs(position.size), uint256)
        total_loss += losses[market]
        total_size += sizes[market]
        self.market_rounds[account][market] = MarketRound(
            policy=self.policy[market], price=price, bankrupt_size=position.size, size_left=sizes[market],
            deficit_left=0, deficit_share=0, size_absorbed=0, size_closed=0,
        )
        # The winners are on the other side of the bankrupt position.
        extcall adl_candidates.clearinghouse.set_adl_exposure(market, position.size < 0, True)
    # The volunteer auction (if the step is on) comes first; the round's own time follows it.
    auctions: IVolunteerAuctions = adl_candidates._volunteer_auctions()
    auction_end: uint256 = block.timestamp + staticcall auctions.volunteer_window()
    deadline: uint256 = auction_end + self.round_duration
    self.rounds[account] = Round(
        deficit=deficit, haircuts=0, markets=open_mask, markets_left=open_mask, notional_closed=0, notional_absorbed=0, deadline=deadline,
        auction_end=auction_end, opened_at=block.timestamp,
    )
    log AdlRoundOpened(account=account, deficit=deficit, markets=open_mask, deadline=deadline)
    self._add_deficit(account, deficit, open_mask, losses, sizes, total_loss, total_size)
    if open_mask == 0:
        self._close_round(account)
    elif auction_end > block.timestamp and self.rounds[account].markets_left != 0:
        extcall auctions.start_volunteer_auctions(account, auction_end)


@external
def join_round(account: address, host: address):
    """
    @notice Nets a flagged account into the ADL round another account opened at this same time:
            the account's positions move to the host at the host round's prices (the same fresh
            marks), its deficit (its balance once flat, below zero) moves with them, so it ends
            flat at exactly zero and unflagged, and the host round's D, each market's share of D
            (split by the account's losses, as `open_round` splits) and the size to offset grow.
            Under pro-rata and risk-aware the vault then absorbs what its limits allow of the
            added size; a running volunteer auction of the host offers the whole new size. One
            round per group of accounts bankrupt together costs the winners one ranking instead
            of one per account.
    @dev Keeper only. The host round must have opened at this block's timestamp and not have
         charged, closed or settled anything yet (no haircut, no force-close, no volunteer take);
         the account must hold exactly the round's markets, each on the bankrupt side.
    @param account The flagged account, not in a round.
    @param host The account whose round it joins.
    """
    keeper_roles._check_keeper()
    flags: IWaterfallClearinghouse.AccountFlag = staticcall adl_candidates.clearinghouse.account_flags(account)
    assert IWaterfallClearinghouse.AccountFlag.BANKRUPT in flags and IWaterfallClearinghouse.AccountFlag.IN_ADL_ROUND not in flags, "AdlEngine: not flagged or round open"
    vault: address = staticcall adl_candidates.clearinghouse.insurance_account()
    assert account != vault and host != vault, "AdlEngine: the vault is not netted"
    open_mask: uint256 = self.rounds[host].markets
    assert (
        self.rounds[host].opened_at == block.timestamp and self.rounds[host].haircuts == 0 and self.rounds[host].markets_left == open_mask
    ), "AdlEngine: host round not joinable"
    # (A round without markets closes as it opens, so it is never joinable.)
    assert staticcall adl_candidates.clearinghouse.open_markets(account) == open_mask, "AdlEngine: markets differ from the host round"

    losses: uint256[MAX_MARKETS] = empty(uint256[MAX_MARKETS])
    sizes: uint256[MAX_MARKETS] = empty(uint256[MAX_MARKETS])
    total_loss: uint256 = 0
    total_size: uint256 = 0
    for market: uint256 in range(MAX_MARKETS):
        if open_mask & (1 << market) == 0:
            continue
        price: uint256 = self.market_rounds[host][market].price
        size_left: uint256 = self.market_rounds[host][market].size_left
        position: IWaterfallClearinghouse.Position = staticcall adl_candidates.clearinghouse.positions(account, market)
        assert (position.size > 0) == (self.market_rounds[host][market].bankrupt_size > 0), "AdlEngine: side differs from the host round"
        held: uint256 = convert(abs((staticcall adl_candidates.clearinghouse.positions(host, market)).size), uint256)
        assert self.market_rounds[host][market].size_closed == 0 and held == size_left, "AdlEngine: host round not joinable"
        losses[market] = convert(max(-margin_math.pnl(position.size, position.entry_price, price), 0), uint256)
        sizes[market] = convert(abs(position.size), uint256)
        total_loss += losses[market]
        total_size += sizes[market]
        self._move_position(account, market, price, host, position.size)
        self.market_rounds[host][market].bankrupt_size += position.size
        self.market_rounds[host][market].size_left = size_left + sizes[market]
    # Flat, the account's value is its balance: realised at the round's prices, with funding.
    balance: int256 = staticcall pool.balance_of(account)
    assert balance < 0, "AdlEngine: account solvent"
    deficit: uint256 = convert(-balance, uint256)
    extcall adl_candidates.clearinghouse.transfer_balance(host, account, deficit)
    extcall adl_candidates.clearinghouse.set_account_flags(account, empty(IWaterfallClearinghouse.AccountFlag))
    self.rounds[host].deficit += deficit
    log AdlRoundJoined(account=account, host=host, deficit=deficit)
    self._add_deficit(host, deficit, open_mask, losses, sizes, total_loss, total_size)
    auction_end: uint256 = self.rounds[host].auction_end
    if auction_end > block.timestamp:
        # No take yet (checked above): the auction starts again, at this same time, with the whole size.
        extcall adl_candidates._volunteer_auctions().start_volunteer_auctions(host, auction_end)


@external
def execute(account: address, market: uint256, winners: DynArray[address, MAX_CANDIDATES], declaration: Declaration):
    """
    @notice Charges and force-closes the next winners of a round in one market, in policy order.
            Queue policies close each winner in turn (the last one partly) at the bankruptcy
            price: a haircut of closed size x (bankruptcy price - mark). Pro-rata charges
            haircuts in proportion to profit and closes in proportion to size; risk-aware by
            leverage water-filling (see adl_math). For those two the keeper declares the weights
            of this call's winners plus all later ones; each winner's share is its weight over
            the weight left, and the last takes what is left, so the sums are exact.
    @dev Keeper only. Refused in a market with size left while the round's volunteer auction
         runs (volunteers first). An entry is processed if its account is on the other side of
         the bankrupt position, profitable at the round's price, with positive value, not
         bankrupt, and ranks above every later valid entry (queues: key descending; risk-aware:
         net leverage descending; pro-rata: address ascending; ties by address ascending), all
         evaluated now.
         Any other entry is skipped with an `AdlSkipped` event: a winner that traded since the
         keeper planned, a duplicate or a misplaced entry never reverts the batch. A haircut is
         at most the winner's profit at the round's price and what its account can lose without
         going negative; it is taken from the position's profit, so a winner listed again pays at
         most what profit it has left. Closes are clamped to the position.
    @param account The bankrupt account.
    @param market The market.
    @param winners The winners, in policy order.
    @param declaration Levels and weights (ignored by the queue policies).
    """
    keeper_roles._check_keeper()
    assert self.rounds[account].markets_left & (1 << market) != 0, "AdlEngine: no open round in this market"
    state: MarketRound = self._settle_volunteer_takes(account, market)
    assert state.size_left == 0 or block.timestamp >= self.rounds[account].auction_end, "AdlEngine: volunteer auction running"
    # Each winner evaluated at the round's price by AdlRanking.evaluate_winners (account values
    # summed from the latest marks and funding, read once per call).
    entries: DynArray[adl_candidates.Entry, adl_candidates.MAX_CANDIDATES] = staticcall ranking.evaluate_winners(
        market, state.price, state.policy, state.bankrupt_size > 0, winners
    )

    # The order, from the back: an entry is processed only if it ranks above every later valid
    # entry (queues and risk-aware: key descending, then address ascending; pro-rata: address
    # ascending), so what is processed follows the policy whatever the keeper sent, and a
    # duplicate keeps only its last copy.
    count: uint256 = len(entries)
    best_key: uint256 = 0
    best_winner: address = empty(address)
    for back: uint256 in range(count, bound=MAX_CANDIDATES):
        i: uint256 = count - 1 - back
        if entries[i].skip != adl_candidates.PROCESS:
            continue
        key: uint256 = entries[i].candidate.key
        if best_winner != empty(address) and not (key > best_key or (key == best_key and convert(winners[i], uint256) < convert(best_winner, uint256))):
            entries[i].skip = adl_candidates.SKIP_ORDER
            continue
        best_key = key
        best_winner = winners[i]

    direction: int256 = 1 if state.bankrupt_size > 0 else -1
    mark: uint256 = adl_candidates._latest_mark(market)
    haircut_weight_left: uint256 = declaration.haircut_weight
    close_weight_left: uint256 = declaration.close_weight
    transfers: DynArray[IWaterfallClearinghouse.PositionTransfer, MAX_CANDIDATES] = []
    haircuts: uint256 = 0
    closed: uint256 = 0

    for index: uint256 in range(count, bound=MAX_CANDIDATES):
        winner: address = winners[index]
        skip: uint256 = entries[index].skip
        if skip == adl_candidates.PROCESS and state.size_left == 0 and state.deficit_left == 0:
            skip = adl_candidates.SKIP_RESOLVED
        candidate: adl_candidates.Candidate = entries[index].candidate
        position: uint256 = convert(abs(candidate.size), uint256)
        size: uint256 = 0
        haircut: uint256 = 0
        if skip == adl_candidates.PROCESS:
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
                if haircut_weight > haircut_weight_left or close_weight > close_weight_left:
                    # The winner's weight grew since the keeper planned: its share is not declared.
                    skip = adl_candidates.SKIP_WEIGHT
                else:
                    haircut = adl_math.share(state.deficit_left, haircut_weight, haircut_weight_left)
                    size = min(position, adl_math.share(state.size_left, close_weight, close_weight_left))
                    haircut_weight_left -= haircut_weight
                    close_weight_left -= close_weight
        if skip != adl_candidates.PROCESS:
            log AdlSkipped(account=account, winner=winner, market=market, reason=self._skip_reason(skip))
            continue
        haircut = min(haircut, adl_math.haircut_room(candidate.size, size, state.price, mark, candidate.profit, candidate.value))

        state.size_left -= size
        state.deficit_left -= haircut
        haircuts += haircut
        closed += size
        transfers.append(IWaterfallClearinghouse.PositionTransfer(counterparty=winner, size=convert(size, int256) * direction, payment=haircut))
        log AdlHit(account=account, winner=winner, market=market, size_closed=size, price=state.price, haircut=haircut)

    if len(transfers) > 0:
        extcall adl_candidates.clearinghouse.transfer_positions(account, market, state.price, transfers)
    state.size_closed += closed
    self.market_rounds[account][market] = state
    self.rounds[account].haircuts += haircuts
    self.rounds[account].notional_closed += margin_math.notional(convert(closed, int256), state.price)
    self._resolve_if_done(account, market)


@external
def finish_round(account: address):
    """
    @notice Ends a round that its deadline has passed, whatever the book holds: in each market the
            round has not resolved, the vault takes what is left of the bankrupt position at the
            mark (which moves no value), and what the account still owes is spread over the
            winners' side of those markets in proportion to size (each position pays its part like
            funding). The account ends flat at exactly zero, its flags are lifted and the accounts
            that waited withdraw again. This cannot fail for want of winners.
    @dev Anyone may call once `block.timestamp` is past the round's deadline. Gas grows with the
         markets of the round, never with the positions open. If no one at all holds the winners'
         side of any of those markets, the vault covers what is left (there is no one else).
    @param account The bankrupt account.
    """
    current: Round = self.rounds[account]
    assert current.markets_left != 0, "AdlEngine: no open round"
    assert block.timestamp > current.deadline, "AdlEngine: round before its deadline"
    vault: address = staticcall adl_candidates.clearinghouse.insurance_account()
    weights: uint256[MAX_MARKETS] = empty(uint256[MAX_MARKETS])
    total_weight: uint256 = 0
    for market: uint256 in range(MAX_MARKETS):
        if current.markets_left & (1 << market) == 0:
            continue
        state: MarketRound = self._settle_volunteer_takes(account, market)
        mark: uint256 = adl_candidates._latest_mark(market)
        size: int256 = (staticcall adl_candidates.clearinghouse.positions(account, market)).size
        if size != 0 and account != vault:
            self._move_position(account, market, mark, vault, size)
            current.notional_absorbed += margin_math.notional(size, mark)
            state.size_absorbed += convert(abs(size), uint256)
            self.market_rounds[account][market].size_absorbed = state.size_absorbed
            log VaultAbsorption(account=account, vault=vault, market=market, size=convert(abs(size), uint256), price=mark)
        self._release_market(account, market, state)
        # What is left to charge here: the deficit share not yet paid, or for a market with only
        # size left, the notional that was still unmatched.
        weights[market] = state.deficit_left if state.deficit_left > 0 else margin_math.notional(convert(state.size_left, int256), state.price)
        total_weight += weights[market]
    current.deficit = self.rounds[account].deficit
    self._finish_round(account, current, weights, total_weight, True)


# ---------------------------------------------------------------- internals: rounds

@internal
def _add_deficit(account: address, deficit: uint256, open_mask: uint256, losses: uint256[MAX_MARKETS], sizes: uint256[MAX_MARKETS],
                 total_loss: uint256, total_size: uint256):
    """
    @dev Adds `deficit` to the round's markets, split by the loss in each (by size if no market
         shows a loss): the winners of a market pay for what was lost there. Then, under pro-rata
         and risk-aware, the vault absorbs what it can of each market's size left.
    """
    deficit_left: uint256 = deficit
    weight_left: uint256 = total_loss if total_loss > 0 else total_size
    for market: uint256 in range(MAX_MARKETS):
        if open_mask & (1 << market) == 0:
            continue
        weight: uint256 = losses[market] if total_loss > 0 else sizes[market]
        part: uint256 = adl_math.share(deficit_left, weight, weight_left)
        deficit_left -= part
        weight_left -= weight
        self.market_rounds[account][market].deficit_left += part
        self.market_rounds[account][market].deficit_share += part
        if not adl_math.is_queue(self.market_rounds[account][market].policy):
            self._absorb(account, market)
        self._resolve_if_done(account, market)


@internal
def _absorb(account: address, market: uint256):
    """
    @dev The vault takes as much of the bankrupt position as its limits allow, at the round's
         price: a trade at the mark moves no value, so only its exposure grows.
    """
    state: MarketRound = self.market_rounds[account][market]
    vault: address = staticcall adl_candidates.clearinghouse.insurance_account()
    size: uint256 = min(state.size_left, staticcall ranking.vault_capacity_at(account, market, state.price, state.bankrupt_size > 0))
    if size == 0:
        return
    direction: int256 = 1 if state.bankrupt_size > 0 else -1
    self._move_position(account, market, state.price, vault, convert(size, int256) * direction)
    self.market_rounds[account][market].size_left = state.size_left - size
    self.market_rounds[account][market].size_absorbed = state.size_absorbed + size
    self.rounds[account].notional_absorbed += margin_math.notional(convert(size, int256), state.price)
    log VaultAbsorption(account=account, vault=vault, market=market, size=size, price=state.price)


@internal
def _move_position(account: address, market: uint256, price: uint256, receiver: address, size: int256):
    """@dev `size` of `account`'s position to `receiver` at `price`, with no payment (a trade that moves no value at that price)."""
    extcall adl_candidates.clearinghouse.transfer_positions(
        account, market, price, [IWaterfallClearinghouse.PositionTransfer(counterparty=receiver, size=size, payment=0)]
    )


@internal
def _settle_volunteer_takes(account: address, market: uint256) -> MarketRound:
    """
    @dev The round in `market` with the volunteer takes since the engine last acted there: a take
         does not call the engine (a take stays within 200,000 gas), so what is left to offset
         is the bankrupt position itself (nothing else moves it while the round is open) and the
         premiums are collected from the LiquidationEngine into D.
    """
    state: MarketRound = self.market_rounds[account][market]
    held: uint256 = convert(abs((staticcall adl_candidates.clearinghouse.positions(account, market)).size), uint256)
    if held >= state.size_left:
        return state
    auctions: IVolunteerAuctions = adl_candidates._volunteer_auctions()
    premium: uint256 = extcall auctions.settle_volunteer_premium(account, market)
    log AdlVolunteerTakes(
        account=account, market=market, size=state.size_left - held, premium=premium, size_left=held, deficit=self.rounds[account].deficit + premium
    )
    state.size_left = held
    state.deficit_left += premium
    self.market_rounds[account][market] = state
    self.rounds[account].deficit += premium
    return state


@internal
def _resolve_if_done(account: address, market: uint256):
    """
    @dev Once a market has neither size nor deficit left, its winners' side is released and the
         round closes with its last market.
    """
    state: MarketRound = self.market_rounds[account][market]
    if state.size_left > 0 or state.deficit_left > 0:
        return
    self._release_market(account, market, state)
    markets_left: uint256 = self.rounds[account].markets_left & ~(1 << market)
    self.rounds[account].markets_left = markets_left
    if markets_left == 0:
        self._close_round(account)


@internal
def _release_market(account: address, market: uint256, state: MarketRound):
    """@dev The round is done in `market`: its winners' side no longer waits for it."""
    log AdlMarketResolved(
        account=account, market=market, policy=state.policy, deficit_share=state.deficit_share, size_absorbed=state.size_absorbed,
        size_closed=state.size_closed, notional_closed=margin_math.notional(convert(state.size_closed, int256), state.price),
    )
    extcall adl_candidates.clearinghouse.set_adl_exposure(market, state.bankrupt_size < 0, False)


@internal
def _close_round(account: address):
    """
    @dev A round resolved by its policy: what the account still owes (rounding of partial closes,
         funding while the round ran) goes to the winners' sides by each market's share of D.
    """
    finished: Round = self.rounds[account]
    weights: uint256[MAX_MARKETS] = empty(uint256[MAX_MARKETS])
    total_weight: uint256 = 0
    for market: uint256 in range(MAX_MARKETS):
        if finished.markets & (1 << market) != 0:
            weights[market] = self.market_rounds[account][market].deficit_share
            total_weight += weights[market]
    self._finish_round(account, finished, weights, total_weight, False)


@internal
def _finish_round(account: address, finished: Round, weights: uint256[MAX_MARKETS], total_weight: uint256, fallback: bool):
    """
    @dev Closes a round: the account (flat, unless it is the vault) owes what its value is below
         zero; that goes to the winners' sides of the round's markets by `weights`, and only if no
         one at all holds them, to the vault. A value above zero goes to the vault. The account
         ends at exactly zero and its flags are lifted.
    """
    vault: address = staticcall adl_candidates.clearinghouse.insurance_account()
    if account != vault:
        assert staticcall adl_candidates.clearinghouse.open_markets(account) == 0, "AdlEngine: round leaves a position"
    value: int256 = (staticcall adl_candidates.clearinghouse.account_health(account)).value
    socialised: uint256 = 0
    if value < 0:
        socialised = self._socialise(account, convert(-value, uint256), finished.markets, weights, total_weight)
        value += convert(socialised, int256)
    if account != vault:
        if value > 0:
            extcall adl_candidates.clearinghouse.transfer_balance(account, vault, convert(value, uint256))
        elif value < 0:
            extcall adl_candidates.clearinghouse.transfer_balance(vault, account, convert(-value, uint256))
    extcall adl_candidates.clearinghouse.set_account_flags(account, empty(IWaterfallClearinghouse.AccountFlag))
    log AdlRoundClosed(
        account=account, deficit=finished.deficit, haircuts=finished.haircuts, notional_closed=finished.notional_closed,
        notional_absorbed=finished.notional_absorbed, residual=value, socialised=socialised, fallback=fallback,
    )
    self.rounds[account] = empty(Round)


@internal
def _socialise(account: address, amount: uint256, markets: uint256, weights: uint256[MAX_MARKETS], total_weight: uint256) -> uint256:
    """
    @dev Spreads `amount` over the winners' side of `markets` by `weights`: each market its share,
         the last one what is left (R2); a market whose winners' side is empty passes its share
         on, and what no weighted market took goes to the first of `markets` whose winners' side
         is held at all. Returns what was spread.
    """
    left: uint256 = amount
    weight_left: uint256 = total_weight
    for market: uint256 in range(MAX_MARKETS):
        weight: uint256 = weights[market]
        if markets & (1 << market) == 0 or weight == 0:
            continue
        part: uint256 = adl_math.share(left, weight, weight_left)
        weight_left -= weight
        left -= extcall adl_candidates.clearinghouse.socialise_loss(account, market, self.market_rounds[account][market].bankrupt_size < 0, part)
    for market: uint256 in range(MAX_MARKETS):
        if left == 0:
            break
        if markets & (1 << market) != 0:
            left -= extcall adl_candidates.clearinghouse.socialise_loss(account, market, self.market_rounds[account][market].bankrupt_size < 0, left)
    return amount - left


@internal
@pure
def _skip_reason(skip: uint256) -> String[40]:
    if skip == adl_candidates.SKIP_BANKRUPT:
        return "winner bankrupt"
    if skip == adl_candidates.SKIP_SIDE:
        return "winner not on the opposite side"
    if skip == adl_candidates.SKIP_UNPROFITABLE:
        return "winner not profitable at the round price"
    if skip == adl_candidates.SKIP_NO_VALUE:
        return "winner has no account value"
    if skip == adl_candidates.SKIP_ORDER:
        return "winner out of policy order"
    if skip == adl_candidates.SKIP_WEIGHT:
        return "winner's weight above the declaration"
    return "market already resolved"


@internal
def _set_round_duration(duration: uint256):
    assert duration >= MIN_ROUND_DURATION and duration <= MAX_ROUND_DURATION, "AdlEngine: round duration out of range"
    self.round_duration = duration
    log UpdateRoundDuration(round_duration=duration)
