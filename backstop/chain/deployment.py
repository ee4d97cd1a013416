"""Deploys and wires the protocol: one function shared by `ape run deploy`, the other scripts and the
tests, and the TOML configuration file it is deployed from (`load_config`, see config/local.toml)."""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import click

from backstop.model import liquidation as liquidation_model
from backstop.model.protocol import MAX_MARKETS, MAX_MOVE_WINDOW, MAX_PRICE, MAX_TRADING_FEE

WAD = 10**18
USDC = 10**6


@dataclass(frozen=True)
class MarketConfig:
    """One perpetual market: its name, first oracle prices and risk parameters (fractions are 1e18 = 100%)."""

    name: str
    price: int
    initial_margin: int = WAD // 10
    maintenance_margin: int = WAD // 20
    price_band: int = WAD // 20
    max_open_interest: int = 10**9 * WAD
    funding_premium_cap: int = WAD // 100
    funding_period: int = 8 * 3600
    # @dev Trading fees, fractions of the notional, paid to the insurance vault: 0.02% for the resting
    # order and 0.05% for the one that takes liquidity, a major venue's base tier.
    maker_fee: int = 2 * 10**14
    taker_fee: int = 5 * 10**14
    vault_max_position: int = 10**6 * WAD

    def params(self) -> tuple:
        """The Clearinghouse's MarketParams struct as an ABI tuple."""
        return (
            self.initial_margin,
            self.maintenance_margin,
            self.price_band,
            self.max_open_interest,
            self.funding_premium_cap,
            self.funding_period,
            self.maker_fee,
            self.taker_fee,
        )


@dataclass(frozen=True)
class ProtocolConfig:
    """Protocol-wide parameters and the markets to list, in id order."""

    # @dev The oracle's move limits, per block and per window, each against the price the block or
    # the window started with. 3% a block: below every default market's maintenance margin less the
    # liquidation penalty and discount (5% - 1% - 1% in BTC and ETH), so an account above
    # maintenance cannot be pushed below zero, nor short of the fees of its liquidation, before
    # anyone can liquidate it in a later block (the wash pair of issue 14). 25% a minute: the
    # default crash (backstop/sim/scenario.py) moves a price by at most 20% a step (the alt's gap;
    # any other step less than 19%), and its steps are a minute apart; the replay splits a step
    # into updates of one block each.
    max_block_move: int = 3 * WAD // 100
    move_window: int = 60
    max_window_move: int = WAD // 4
    staleness: int = 3600
    liquidation_discount: int = WAD // 100
    liquidation_penalty: int = WAD // 100
    backstop_ratio: int = 2 * WAD // 3
    vault_lockup: int = 7 * 24 * 3600
    vault_withdrawal_delay: int = 24 * 3600
    vault_max_leverage: int = 5 * WAD
    # @dev The vault's bad-debt budget: the most of one account's deficit it covers in a takeover,
    # and of all deficits per UTC day. Beyond it the account goes to ADL, where the winners pay the
    # deficit and the vault may still absorb the position (which moves no value). Depositors take the
    # market risk of what the vault warehouses, not unbounded bad debt in a gap: sized for the default
    # crash's vault (about $13M, backstop/sim/scenario.py), $25k is 0.2% of it and $100k a day
    # 0.75%.
    vault_loss_cap_per_event: int = 25_000 * USDC
    vault_loss_cap_per_day: int = 100_000 * USDC
    # @dev Seconds an ADL round may stay open before anyone may finish it by the fallback (the
    # vault takes what is left of the position at the mark, the rest of the deficit is spread
    # over the winners' side). An hour: time for a keeper to work through any book, short for the
    # accounts the round can charge, which wait to withdraw meanwhile.
    adl_round_duration: int = 3600
    # @dev Seconds over which the vault's income (takeover buffers, penalties, fees, gains) unlocks
    # into its share price. Longer than a depositor's shortest stay (lock-up 7 days + delay 1 day),
    # so that one who enters just before a known gain and leaves as soon as she can takes at most
    # 8/30 of her pro-rata share of it.
    vault_profit_unlock: int = 30 * 24 * 3600
    # @dev Auctions of a position that must change hands (a bankrupt account's, to volunteers
    # before forced ADL; the vault's, to unwind it): the price starts at the mark and moves in the
    # taker's favour up to `auction_premium` over `auction_ramp` seconds; an auction lasts
    # `auction_duration`; no partial take may leave less than `auction_min_notional`. Defaults
    # (backstop/model/liquidation.py): 5% over 10 minutes, 15 minutes, $100.
    auction_premium: int = liquidation_model.AUCTION_PREMIUM
    auction_ramp: int = liquidation_model.AUCTION_RAMP
    auction_duration: int = liquidation_model.AUCTION_DURATION
    auction_min_notional: int = liquidation_model.AUCTION_MIN_NOTIONAL
    # @dev Whether an ADL round opens with a volunteer auction of the bankrupt positions (its
    # deadline then moves back by `auction_duration`). Off until the keeper and the crash replay
    # take part in auctions (issue 15's keeper half): with it on, a round force-closes nothing in
    # a market while its auction runs.
    volunteer_auctions: bool = False
    # @dev keeper role holders besides the keeper passed to `deploy_protocol`
    keepers: tuple[str, ...] = ()
    # @dev The vault's position limit per market caps its concentration in one market: about 1-2x the
    # default crash vault's equity in notional at the first prices (250 BTC = $25M, 3,000 ETH = $12M,
    # 75,000 SOL = $15M), above what it warehouses in that crash on any seed tried (at most ~210 BTC,
    # ~2,200 ETH, ~65,000 SOL), so that there the 5x leverage limit and the loss budget, not these,
    # decide what it refuses.
    markets: tuple[MarketConfig, ...] = field(
        default=(
            MarketConfig("BTC-PERP", 100_000 * WAD, vault_max_position=250 * WAD),
            MarketConfig("ETH-PERP", 4_000 * WAD, vault_max_position=3_000 * WAD),
            MarketConfig("SOL-PERP", 200 * WAD, initial_margin=WAD // 5, maintenance_margin=WAD // 10, vault_max_position=75_000 * WAD),
        )
    )


def scaled_vault_limits(config: ProtocolConfig, factor: Fraction) -> ProtocolConfig:
    """`config` with the vault's loss caps and position limits multiplied by `factor` (rounded
    down). They are absolute dollars and sizes, sized for the default 1,000-trader crash whose vault
    holds 20% of the traders' collateral; a crowd N times larger has a vault N times larger, and
    the same caps would refuse it almost everything."""
    markets = tuple(replace(market, vault_max_position=int(market.vault_max_position * factor)) for market in config.markets)
    return replace(
        config, markets=markets, vault_loss_cap_per_event=int(config.vault_loss_cap_per_event * factor),
        vault_loss_cap_per_day=int(config.vault_loss_cap_per_day * factor),
    )


@dataclass
class Protocol:
    """The deployed contracts (ape contract instances)."""

    token: object
    oracle: object
    pool: object
    clearinghouse: object
    configurator: object
    liquidation: object
    vault: object
    adl_engine: object
    adl_ranking: object

    def addresses(self) -> dict[str, str]:
        return {name: str(contract.address) for name, contract in vars(self).items()}


def deploy_protocol(project, owner, keeper, config: ProtocolConfig = ProtocolConfig()) -> Protocol:
    """Deploys token, oracle, pool, clearinghouse, market configurator, liquidation engine, insurance
    vault, ADL engine and its ranking views from `owner`, wires them (the oracle accrues the
    clearinghouse's funding), lists the markets and grants `keeper` and every address in
    `config.keepers` the keeper role on the oracle, the liquidation engine and the ADL engine."""
    token = owner.deploy(project.CollateralToken, "Backstop USD", "bUSD")
    oracle = owner.deploy(project.Oracle, config.max_block_move, config.move_window, config.max_window_move, config.staleness)
    pool = owner.deploy(project.MarginPool, token)
    clearinghouse = owner.deploy(project.Clearinghouse, oracle, pool, owner)
    configurator = owner.deploy(project.MarketConfigurator, clearinghouse)
    liquidation = owner.deploy(
        project.LiquidationEngine, clearinghouse, oracle, config.liquidation_discount, config.liquidation_penalty, config.backstop_ratio,
        config.auction_premium, config.auction_ramp, config.auction_duration, config.auction_min_notional, config.volunteer_auctions,
    )
    vault = owner.deploy(
        project.InsuranceVault, token, pool, clearinghouse, config.vault_lockup, config.vault_withdrawal_delay,
        config.vault_max_leverage, config.vault_loss_cap_per_event, config.vault_loss_cap_per_day, config.vault_profit_unlock,
    )
    # The ranking views first: the engine evaluates its winners there.
    adl_ranking = owner.deploy(project.AdlRanking, clearinghouse, oracle)
    adl_engine = owner.deploy(project.AdlEngine, clearinghouse, oracle, config.adl_round_duration, adl_ranking)
    pool.set_clearinghouse(clearinghouse, sender=owner)
    clearinghouse.set_market_configurator(configurator, sender=owner)
    oracle.set_clearinghouse(clearinghouse, sender=owner)
    clearinghouse.set_insurance_account(vault, sender=owner)
    clearinghouse.set_liquidation_engine(liquidation, sender=owner)
    clearinghouse.set_adl_engine(adl_engine, sender=owner)
    for keeper_address in (keeper, *config.keepers):
        oracle.set_keeper(keeper_address, True, sender=owner)
        liquidation.set_keeper(keeper_address, True, sender=owner)
        adl_engine.set_keeper(keeper_address, True, sender=owner)
    for market_id, market in enumerate(config.markets):
        oracle.initialize_feed(market_id, market.price, market.price, sender=owner)
        configurator.list_market(market.params(), sender=owner)
        vault.set_max_position(market_id, market.vault_max_position, sender=owner)
    return Protocol(
        token=token, oracle=oracle, pool=pool, clearinghouse=clearinghouse, configurator=configurator, liquidation=liquidation, vault=vault,
        adl_engine=adl_engine,
        adl_ranking=adl_ranking,
    )


def deployment_document(protocol: Protocol, chain_id: int, config: ProtocolConfig, **where) -> dict:
    """Addresses, ABIs, market ids and parameters of a deployment: what deployments/<network>.json
    holds, and what the keeper and the replay take. `where` adds what an indexer or a client needs
    to know about it (each optional): "network" (the ape network choice), "deploy_block" (the
    block of the first deployment transaction: where to start reading events), "actors" ({"owner":
    address, "keepers": [addresses]}) and "compiler" ("vyper 0.4.3"). "config_units" says the unit
    of each raw parameter in "config"."""
    document = {
        "chain_id": chain_id,
        **{key: where[key] for key in ("network", "deploy_block", "actors", "compiler") if where.get(key) is not None},
        "contracts": {
            name: {"address": str(contract.address), "abi": [item.model_dump(mode="json") for item in contract.contract_type.abi]}
            for name, contract in vars(protocol).items()
        },
        "markets": {market.name: market_id for market_id, market in enumerate(config.markets)},
        "config": asdict(config),
        "config_units": config_units(config),
    }
    return document


def write_deployment(path: Path, protocol: Protocol, chain_id: int, config: ProtocolConfig, **where) -> None:
    """Writes `deployment_document` to a JSON file that any client (cast, web3) can read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(deployment_document(protocol, chain_id, config, **where), indent=2))


# The unit of each raw parameter of a deployment document's "config" (and of each market's).
_UNIT_OF_SCALE = {WAD: "fraction, 1e18 fixed point (1e18 = 100%)", USDC: "collateral units (1e6 = $1)", 1: "seconds", bool: "true or false"}
_SPECIAL_UNITS = {
    "price": "collateral per base unit, 1e18 fixed point",
    "max_open_interest": "base units, 1e18 fixed point (per side)",
    "vault_max_position": "base units, 1e18 fixed point",
    "vault_max_leverage": "1e18 fixed point (1e18 = 1x)",
    "keepers": "addresses",
    "name": "text",
}


def config_units(config: ProtocolConfig) -> dict:
    """The unit of every field of `config` and of its markets, from the scales the config file's
    keys are read with (SECTIONS, MARKET_KEYS)."""
    scales = {name: scale for table in SECTIONS.values() for name, scale in table.values()}
    units = {name: _SPECIAL_UNITS.get(name) or _UNIT_OF_SCALE.get(scales.get(name), "see config/local.toml")
             for name in asdict(config) if name != "markets"}
    units["markets"] = {name: _SPECIAL_UNITS.get(name) or _UNIT_OF_SCALE.get(MARKET_KEYS.get(name), "see config/local.toml")
                        for name in asdict(config.markets[0])} if config.markets else {}
    return units


# ---------------------------------------------------------------- the configuration file

class ConfigError(click.ClickException):
    """A configuration file that cannot be used; click prints the message as one line and exits 1."""


# The file speaks in human units; the contracts in fixed point. Each key names its ProtocolConfig
# (or MarketConfig) field and the scale its value is multiplied by: fractions, prices, sizes and
# leverage are 1e18 fixed point (0.05 -> 5e16), collateral amounts are dollars (1e6 units), times
# are seconds; a switch (`bool`) is true or false.
SECTIONS = {
    "oracle": {
        "max_block_move": ("max_block_move", WAD),
        "move_window": ("move_window", 1),
        "max_window_move": ("max_window_move", WAD),
        "staleness": ("staleness", 1),
    },
    "liquidation": {
        "discount": ("liquidation_discount", WAD),
        "penalty": ("liquidation_penalty", WAD),
        "backstop_ratio": ("backstop_ratio", WAD),
    },
    "vault": {
        "lockup": ("vault_lockup", 1),
        "withdrawal_delay": ("vault_withdrawal_delay", 1),
        "max_leverage": ("vault_max_leverage", WAD),
        "loss_cap_per_event": ("vault_loss_cap_per_event", USDC),
        "loss_cap_per_day": ("vault_loss_cap_per_day", USDC),
        "profit_unlock": ("vault_profit_unlock", 1),
    },
    "adl": {"round_duration": ("adl_round_duration", 1)},
    "auction": {
        "premium": ("auction_premium", WAD),
        "ramp": ("auction_ramp", 1),
        "duration": ("auction_duration", 1),
        "min_notional": ("auction_min_notional", USDC),
        "volunteers": ("volunteer_auctions", bool),
    },
}
MARKET_KEYS = {
    "price": WAD,
    "initial_margin": WAD,
    "maintenance_margin": WAD,
    "price_band": WAD,
    "max_open_interest": WAD,
    "funding_premium_cap": WAD,
    "funding_period": 1,
    "maker_fee": WAD,
    "taker_fee": WAD,
    "vault_max_position": WAD,
}
DEFAULT_CONFIG_PATH = Path("config/local.toml")


def load_config(path: Path | str = DEFAULT_CONFIG_PATH) -> ProtocolConfig:
    """Reads a deployment configuration (TOML; see config/local.toml for every key and its unit).
    Keys left out keep ProtocolConfig's defaults; a `[[markets]]` list replaces the default markets.
    Raises ConfigError, naming the file and the key, for a missing file, bad TOML, an unknown
    section or key, or a value of the wrong type or with more decimals than its unit has."""
    path = Path(path)
    try:
        # Decimal, not float: 0.666666666666666666 must become exactly 666666666666666666.
        document = tomllib.loads(path.read_text(), parse_float=Decimal)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None

    known = ["roles", *SECTIONS, "markets"]
    values: dict = {}
    for section, table in document.items():
        if section not in known:
            raise ConfigError(f"{path}: unknown section [{section}] (expected one of: {', '.join(known)})")
        if section == "roles":
            values["keepers"] = _keepers(path, table)
        elif section == "markets":
            values["markets"] = _markets(path, table)
        else:
            table = _table(path, section, table, SECTIONS[section])
            for key, value in table.items():
                name, scale = SECTIONS[section][key]
                values[name] = _scaled(path, f"[{section}] {key}", value, scale)
    config = ProtocolConfig(**values)
    problem = config_problem(config)
    if problem:
        raise ConfigError(f"{path}: {problem}")
    return config


# What the contracts refuse, checked before anything is deployed: (file key, test, why). A field
# the constructors or setters would revert on is named here by its key in the config file.


def config_problem(config: ProtocolConfig) -> str | None:
    """The first parameter of `config` the contracts would refuse, as one sentence naming its key
    in the config file and the contract's rule; None if they take it."""
    d = Decimal
    checks = [
        ("[oracle] max_block_move", 0 < config.max_block_move < WAD, "must lie strictly between 0 and 1 (Oracle: max block move out of range)"),
        ("[oracle] move_window", 0 < config.move_window <= MAX_MOVE_WINDOW,
         f"must lie between 1 and {MAX_MOVE_WINDOW} seconds (Oracle: move window out of range)"),
        ("[oracle] max_window_move", 0 < config.max_window_move < WAD, "must lie strictly between 0 and 1 (Oracle: max window move out of range)"),
        ("[oracle] staleness", config.staleness > 0, "must be positive (Oracle: zero staleness)"),
        ("[liquidation] discount + penalty", config.liquidation_discount + config.liquidation_penalty < WAD,
         "must be below 1 (LiquidationEngine: liquidation fees of 100% or more)"),
        ("[liquidation] backstop_ratio", config.backstop_ratio <= WAD, "must be at most 1 (LiquidationEngine: backstop ratio above 100%)"),
        ("[vault] max_leverage", config.vault_max_leverage > 0, "must be positive (InsuranceVault: zero leverage)"),
        ("markets", len(config.markets) <= MAX_MARKETS, f"can be at most {MAX_MARKETS} (Clearinghouse: too many markets)"),
    ]
    for number, market in enumerate(config.markets, start=1):
        where = f"[markets #{number}] ({market.name})"
        checks += [
            (f"{where} price", market.price > 0, "must be positive (Oracle: zero price)"),
            (f"{where} price", market.price <= MAX_PRICE, "must be at most 2^128 - 1 in 1e18 units (Oracle: price above maximum)"),
            (f"{where} maintenance_margin", market.maintenance_margin > 0, "must be positive (MarketConfigurator: zero maintenance margin)"),
            (f"{where} initial_margin", market.initial_margin > market.maintenance_margin,
             f"({d(market.initial_margin) / WAD}) must exceed maintenance_margin ({d(market.maintenance_margin) / WAD}) "
             "(MarketConfigurator: initial margin must exceed maintenance)"),
            (f"{where} initial_margin", market.initial_margin <= WAD, "must be at most 1 (MarketConfigurator: initial margin above 100%)"),
            (f"{where} price_band", 0 < market.price_band < WAD, "must lie strictly between 0 and 1 (MarketConfigurator: price band out of range)"),
            (f"{where} max_open_interest", market.max_open_interest > 0, "must be positive (MarketConfigurator: zero open interest cap)"),
            (f"{where} funding_premium_cap", market.funding_premium_cap <= WAD, "must be at most 1 (MarketConfigurator: funding cap above 100%)"),
            (f"{where} funding_period", market.funding_period > 0, "must be positive (MarketConfigurator: zero funding period)"),
            (f"{where} taker_fee", market.taker_fee <= MAX_TRADING_FEE, "must be at most 0.01 (MarketConfigurator: taker fee above the cap)"),
            (f"{where} maker_fee", market.maker_fee <= market.taker_fee, "must be at most taker_fee (MarketConfigurator: maker fee above taker fee)"),
        ]
    for key, held, rule in checks:
        if not held:
            return f"{key} {rule}; the contracts would refuse it"
    return None


def _table(path: Path, where: str, table, keys) -> dict:
    """`table` after checking it is a table holding only `keys`."""
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {where} must be a table")
    for key in table:
        if key not in keys:
            raise ConfigError(f"{path}: unknown key '{key}' in [{where}] (expected one of: {', '.join(keys)})")
    return table


def _scaled(path: Path, where: str, value, scale):
    """A number from the file times its unit's scale, as an exact integer (`scale` bool: a switch)."""
    if scale is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: {where} must be true or false, not {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise ConfigError(f"{path}: {where} must be a number, not {value!r}")
    scaled = Decimal(value) * scale
    if scaled != scaled.to_integral_value():
        raise ConfigError(f"{path}: {where} = {value} has more decimals than its unit allows")
    if scaled < 0:
        raise ConfigError(f"{path}: {where} must not be negative")
    return int(scaled)


def _keepers(path: Path, table) -> tuple[str, ...]:
    # eth_utils costs a third of a second to import: only a file that lists keepers pays it.
    from eth_utils import is_address, to_checksum_address

    addresses = _table(path, "roles", table, ["keepers"]).get("keepers", [])
    if not isinstance(addresses, list) or not all(isinstance(a, str) and is_address(a) for a in addresses):
        raise ConfigError(f"{path}: [roles] keepers must be a list of addresses, not {addresses!r}")
    return tuple(to_checksum_address(address) for address in addresses)


def _markets(path: Path, tables) -> tuple[MarketConfig, ...]:
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{path}: markets must be one or more [[markets]] tables")
    markets = []
    for number, table in enumerate(tables, start=1):
        where = f"markets #{number}"
        table = _table(path, where, table, ["name", *MARKET_KEYS])
        if not isinstance(table.get("name"), str) or "price" not in table:
            raise ConfigError(f"{path}: [{where}] needs a name (text) and a price")
        params = {key: _scaled(path, f"[{where}] {key}", value, MARKET_KEYS[key]) for key, value in table.items() if key != "name"}
        markets.append(MarketConfig(name=table["name"], **params))
    return tuple(markets)
