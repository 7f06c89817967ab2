"""Configuration lookups, and errors that name the key, worded as the Rust SDK's."""

import pytest

from sluice_sdk import Config, Error, Record, Transform, Writer, testing


def test_lookups_and_errors_name_the_key() -> None:
    c = Config([("unit", "ms"), ("n", "x"), ("flag", "true"), ("count", "-12")])
    assert c.get("unit") == "ms"
    assert c.get("nope") is None
    assert c.require("unit") == "ms"
    with pytest.raises(Error, match="^config key `field` is required$"):
        c.require("field")
    assert c.choice("unit", ["ms", "s"]) == "ms"
    assert c.choice("absent", ["ms"]) is None
    with pytest.raises(
        Error, match="^config key `unit`: invalid value `ms`, expected one of: s, us$"
    ):
        c.choice("unit", ["s", "us"])
    with pytest.raises(Error, match="^unknown config key `n`; known keys: unit$"):
        c.allow_only(["unit"])
    c.allow_only(["unit", "n", "flag", "count"])
    assert c.entries() == [("unit", "ms"), ("n", "x"), ("flag", "true"), ("count", "-12")]


def test_typed_values() -> None:
    c = Config(
        [
            ("flag", "true"),
            ("off", "false"),
            ("n", "x"),
            ("count", "-12"),
            ("empty", ""),
            ("yes", "yes"),
        ]
    )
    assert c.get_bool("flag") is True
    assert c.get_bool("off") is False
    assert c.get_bool("absent") is None
    with pytest.raises(
        Error,
        match="^config key `yes`: invalid value `yes`: provided string was not `true` or `false`$",
    ):
        c.get_bool("yes")
    assert c.get_int("count") == -12
    assert c.get_int("absent") is None
    with pytest.raises(
        Error, match="^config key `n`: invalid value `x`: invalid digit found in string$"
    ):
        c.get_int("n")
    with pytest.raises(
        Error,
        match="^config key `empty`: invalid value ``: cannot parse integer from empty string$",
    ):
        c.get_int("empty")


def test_the_last_value_of_a_repeated_key_wins() -> None:
    assert Config([("k", "1"), ("k", "2")]).get("k") == "2"


class NoSettings(Transform):
    def __init__(self, config: Config) -> None:
        config.allow_only([])

    def process(self, record: Record, out: Writer) -> None:
        pass


def test_init_takes_a_dict_or_pairs() -> None:
    with pytest.raises(Error, match="^unknown config key `x`; known keys: $"):
        testing.init(NoSettings, {"x": "1"})
    with pytest.raises(Error, match="^unknown config key `y`; known keys: $"):
        testing.init(NoSettings, [("y", "1")])
    assert isinstance(testing.init(NoSettings), NoSettings)
