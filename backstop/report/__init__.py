"""What the scripts write and print: the crash report with its plots (`crash`) and the gas tables
(`gas`), from the plain data of backstop.sim.
"""
