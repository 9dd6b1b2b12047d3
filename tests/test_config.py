"""hub.toml's [credits] table: the credit limit's default, its amounts, and a save that keeps it."""

import pytest

from ladder.config import DEFAULT_CREDIT_LIMIT, ConfigError, HubConfig, parse_address, parse_duration

HUB_TOML = """[hub]
name = "t"
listen = "127.0.0.1:443"
public_address = "hub.example:443"
cert = "tls.crt"
key = "tls.key"
"""


def load(tmp_path, extra: str = "") -> HubConfig:
    (tmp_path / "hub.toml").write_text(HUB_TOML + extra)
    return HubConfig.load(tmp_path)


@pytest.mark.parametrize(("credits", "limit"), [
    ("", DEFAULT_CREDIT_LIMIT),
    ('[credits]\nlimit = "2G"\n', 2_000_000_000),
    ('[credits]\nlimit = "500M"\n', 500_000_000),
    ("[credits]\nlimit = 12345\n", 12345),
    ('[credits]\nlimit = "off"\n', None),
])
def test_the_credit_limit_is_read_as_an_amount(tmp_path, credits, limit):
    assert load(tmp_path, credits).credit_limit == limit


def test_a_bad_credit_limit_is_one_line_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=r"\[credits\] limit: 'lots' is not an amount"):
        load(tmp_path, '[credits]\nlimit = "lots"\n')
    (tmp_path / "hub.toml").write_text('credits = "2G"\n' + HUB_TOML)
    with pytest.raises(ConfigError, match=r"\[credits\] must be a table"):
        HubConfig.load(tmp_path)


@pytest.mark.parametrize("limit", [DEFAULT_CREDIT_LIMIT, 7_000_000, None])
def test_save_keeps_the_limit_and_writes_no_credits_table_for_the_default(tmp_path, limit):
    config = load(tmp_path)
    config.credit_limit = limit
    config.save()
    assert ("[credits]" in (tmp_path / "hub.toml").read_text()) == (limit != DEFAULT_CREDIT_LIMIT)
    assert HubConfig.load(tmp_path).credit_limit == limit


@pytest.mark.parametrize("parse, text", [
    (parse_duration, "4\u00b2m"),         # found by fuzzing (fuzz/targets.py, invite): "²" is a digit to
    (parse_address, "hub.example:4\u00b2"),  # str.isdigit but not to int(), which raised ValueError
    (parse_duration, "\u0660m"),           # an Arabic-Indic zero: a decimal digit, and zero minutes
])
def test_a_digit_int_cannot_read_is_one_line_not_a_traceback(parse, text):
    with pytest.raises(ConfigError):
        parse(text)


def test_decimal_digits_of_any_script_read_as_their_number():
    assert parse_duration("\u0663h") == 3 * 3600 and parse_address("hub:\u0664\u0664\u0663") == ("hub", 443)
