"""The deployment configuration file (config/local.toml) and its loader, `load_config`."""

from pathlib import Path

import click
import pytest

from backstop.chain.deployment import USDC, WAD, ConfigError, MarketConfig, ProtocolConfig, load_config

LOCAL = Path(__file__).resolve().parent.parent / "config" / "local.toml"


def write(tmp_path, text):
    path = tmp_path / "deploy.toml"
    path.write_text(text)
    return path


def test_load_config__local_file_spells_out_the_defaults():
    assert load_config(LOCAL) == ProtocolConfig()


def test_load_config__keys_left_out_keep_their_defaults_and_markets_replace_the_list(tmp_path):
    path = write(tmp_path, """
[roles]
keepers = ["0x70997970c51812dc3a010c7d01b50e0d17dc79c8"]

[oracle]
max_block_move = 0.01
move_window = 120

[vault]
loss_cap_per_event = 250000.5

[[markets]]
name = "DOGE-PERP"
price = 0.25
maintenance_margin = 0.08
""")
    config = load_config(path)
    assert (config.max_block_move, config.move_window) == (WAD // 100, 120)
    assert config.vault_loss_cap_per_event == 250_000 * USDC + USDC // 2
    assert config.keepers == ("0x70997970C51812dc3A010C7d01b50e0d17dc79C8",)
    assert config.markets == (MarketConfig("DOGE-PERP", WAD // 4, maintenance_margin=8 * WAD // 100),)
    assert config.max_window_move == ProtocolConfig().max_window_move
    assert config.staleness == ProtocolConfig().staleness and config.backstop_ratio == ProtocolConfig().backstop_ratio


@pytest.mark.parametrize("text, message", [
    ("[oracle]\nmax_move = 0.1\n", "unknown key 'max_move' in [oracle] (expected one of: max_block_move, move_window, max_window_move, staleness)"),
    ("[fees]\ntaker = 0.1\n", "unknown section [fees]"),
    ("[oracle]\nstaleness = \"an hour\"\n", "[oracle] staleness must be a number, not 'an hour'"),
    ("[liquidation]\ndiscount = 0.0000000000000000001\n", "[liquidation] discount = 1E-19 has more decimals than its unit allows"),
    ("[vault]\nmax_leverage = -5\n", "[vault] max_leverage must not be negative"),
    ("[roles]\nkeepers = [\"alice\"]\n", "[roles] keepers must be a list of addresses"),
    ("[[markets]]\nprice = 10\n", "[markets #1] needs a name (text) and a price"),
    ("[[markets]]\nname = \"X\"\nprice = 10\nleverage = 3\n", "unknown key 'leverage' in [markets #1]"),
    ("[oracle\nmax_block_move = 0.1\n", "is not valid TOML: Expected ']' at the end of a table declaration (at line 1, column 8)"),
])
def test_load_config__a_bad_file_is_one_sentence_naming_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert message in error.value.message and str(path) in error.value.message
    assert "\n" not in error.value.message


def test_load_config__missing_file_is_a_click_error():
    with pytest.raises(click.ClickException, match=r"^config file config/nowhere.toml not found$"):
        load_config("config/nowhere.toml")


@pytest.mark.parametrize("text, message", [
    ("[[markets]]\nname = \"X\"\nprice = 10\ninitial_margin = 0.05\nmaintenance_margin = 0.1\n",
     "[markets #1] (X) initial_margin (0.05) must exceed maintenance_margin (0.1)"),
    ("[[markets]]\nname = \"X\"\nprice = 0\n", "[markets #1] (X) price must be positive (Oracle: zero price)"),
    ("[oracle]\nmax_block_move = 1\n", "[oracle] max_block_move must lie strictly between 0 and 1"),
    ("[oracle]\nmove_window = 86401\n", "[oracle] move_window must lie between 1 and 86400 seconds"),
    ("[oracle]\nmax_window_move = 0\n", "[oracle] max_window_move must lie strictly between 0 and 1"),
    ("[[markets]]\nname = \"X\"\nprice = 10\ntaker_fee = 0.02\n", "[markets #1] (X) taker_fee must be at most 0.01"),
    ("[[markets]]\nname = \"X\"\nprice = 10\nmaker_fee = 0.001\ntaker_fee = 0.0005\n", "[markets #1] (X) maker_fee must be at most taker_fee"),
    ("[oracle]\nstaleness = 0\n", "[oracle] staleness must be positive"),
    ("[liquidation]\ndiscount = 0.6\npenalty = 0.4\n", "[liquidation] discount + penalty must be below 1"),
    ("[vault]\nmax_leverage = 0\n", "[vault] max_leverage must be positive"),
    ("[[markets]]\nname = \"X\"\nprice = 10\nprice_band = 0\n", "[markets #1] (X) price_band must lie strictly between 0 and 1"),
])
def test_load_config__what_the_contracts_would_refuse_is_refused_naming_the_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert message in error.value.message and "the contracts would refuse it" in error.value.message
    assert "\n" not in error.value.message


def test_config_units_name_the_unit_of_every_raw_parameter():
    from dataclasses import asdict

    from backstop.chain.deployment import config_units

    config = ProtocolConfig()
    units = config_units(config)
    assert set(units) == set(asdict(config))
    assert set(units["markets"]) == set(asdict(config.markets[0]))
    assert units["vault_loss_cap_per_day"] == "collateral units (1e6 = $1)" and units["staleness"] == "seconds"
    assert "see config/local.toml" not in str(units)
