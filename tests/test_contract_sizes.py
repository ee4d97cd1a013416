"""Every deployed contract leaves room to grow: at most 80% of EIP-170's limit on deployed code."""

from backstop.sim.gas_benchmark import SIZE_TARGET

EIP_170 = 24_576


def test_deployed_code__every_contract_within_80_percent_of_eip170(chain, protocol):
    sizes = {contract.contract_type.name: len(chain.provider.get_code(contract.address)) for contract in vars(protocol).values()}
    assert set(sizes) == {"CollateralToken", "Oracle", "MarginPool", "Clearinghouse", "MarketConfigurator", "LiquidationEngine", "InsuranceVault", "AdlEngine", "AdlRanking"}
    assert SIZE_TARGET == EIP_170 * 80 // 100
    assert all(0 < size <= SIZE_TARGET for size in sizes.values()), sizes


def test_waterfall_engines__wired_to_the_clearinghouse(protocol):
    ch = protocol.clearinghouse
    assert ch.liquidation_engine() == protocol.liquidation.address
    assert ch.adl_engine() == protocol.adl_engine.address
    assert protocol.adl_engine.ranking() == protocol.adl_ranking.address
    assert protocol.adl_ranking.engine() == protocol.adl_engine.address
    assert ch.insurance_account() == protocol.vault.address
    assert protocol.liquidation.clearinghouse() == protocol.adl_engine.clearinghouse() == ch.address
    assert protocol.liquidation.pool() == protocol.adl_engine.pool() == protocol.pool.address
