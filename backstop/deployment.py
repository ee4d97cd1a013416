"""Deploys and wires the protocol: one function shared by `ape run deploy`, the other scripts and the tests."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

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
        )


@dataclass(frozen=True)
class ProtocolConfig:
    """Protocol-wide parameters and the markets to list, in id order."""

    max_move: int = WAD // 5
    staleness: int = 3600
    liquidation_discount: int = WAD // 100
    liquidation_penalty: int = WAD // 100
    backstop_ratio: int = 2 * WAD // 3
    vault_lockup: int = 7 * 24 * 3600
    vault_withdrawal_delay: int = 24 * 3600
    vault_max_leverage: int = 5 * WAD
    vault_loss_cap_per_event: int = 1_000_000 * USDC
    vault_loss_cap_per_day: int = 5_000_000 * USDC
    markets: tuple[MarketConfig, ...] = field(
        default=(
            MarketConfig("BTC-PERP", 100_000 * WAD),
            MarketConfig("ETH-PERP", 4_000 * WAD),
            MarketConfig("SOL-PERP", 200 * WAD, initial_margin=WAD // 5, maintenance_margin=WAD // 10),
        )
    )


@dataclass
class Protocol:
    """The deployed contracts (ape contract instances)."""

    token: object
    oracle: object
    pool: object
    clearinghouse: object
    vault: object

    def addresses(self) -> dict[str, str]:
        return {name: str(contract.address) for name, contract in vars(self).items()}


def deploy_protocol(project, owner, keeper, config: ProtocolConfig = ProtocolConfig()) -> Protocol:
    """Deploys token, oracle, pool, clearinghouse and insurance vault from `owner`, wires them, lists
    the markets and grants `keeper` the keeper role on the oracle and the clearinghouse."""
    token = owner.deploy(project.CollateralToken, "Backstop USD", "bUSD")
    oracle = owner.deploy(project.Oracle, config.max_move, config.staleness)
    pool = owner.deploy(project.MarginPool, token)
    clearinghouse = owner.deploy(
        project.Clearinghouse, oracle, pool, owner, config.liquidation_discount, config.liquidation_penalty, config.backstop_ratio
    )
    vault = owner.deploy(
        project.InsuranceVault, token, pool, clearinghouse, config.vault_lockup, config.vault_withdrawal_delay,
        config.vault_max_leverage, config.vault_loss_cap_per_event, config.vault_loss_cap_per_day,
    )
    pool.set_clearinghouse(clearinghouse, sender=owner)
    clearinghouse.set_insurance_account(vault, sender=owner)
    oracle.set_keeper(keeper, True, sender=owner)
    clearinghouse.set_keeper(keeper, True, sender=owner)
    for market_id, market in enumerate(config.markets):
        oracle.initialize_feed(market_id, market.price, market.price, sender=owner)
        clearinghouse.list_market(market.params(), sender=owner)
        vault.set_max_position(market_id, market.vault_max_position, sender=owner)
    return Protocol(token=token, oracle=oracle, pool=pool, clearinghouse=clearinghouse, vault=vault)


def write_deployment(path: Path, protocol: Protocol, chain_id: int, config: ProtocolConfig) -> None:
    """Writes addresses, ABIs and market ids to a JSON file that any client (cast, web3) can read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "chain_id": chain_id,
        "contracts": {
            name: {"address": str(contract.address), "abi": [item.model_dump(mode="json") for item in contract.contract_type.abi]}
            for name, contract in vars(protocol).items()
        },
        "markets": {market.name: market_id for market_id, market in enumerate(config.markets)},
        "config": asdict(config),
    }
    path.write_text(json.dumps(document, indent=2))
