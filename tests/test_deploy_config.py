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
