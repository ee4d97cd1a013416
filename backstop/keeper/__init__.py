"""The keeper: the liquidation waterfall (`waterfall`), its auction step (`auctions`), its ADL side
(`adl_planner` chooses the winners, `adl_executor` runs a round), and the venues it acts on, the
deployed contracts (`chain_venue`) or the reference model (`model_venue`). Imports the model and
chain layers.
"""
