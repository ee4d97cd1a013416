"""The reference model: Oracle, MarginPool and Clearinghouse (`protocol`), the LiquidationEngine
(`liquidation`), the InsuranceVault (`vault`) and the AdlEngine (`adl`) in plain Python integers,
the executable specification the contracts are tested against. The lowest layer: it imports no
other part of the package.
"""
