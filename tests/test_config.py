import pytest

from framework import ConfigError
from framework.config import (
    apply_overrides,
    check_config,
    default_config,
    flatten_config,
    load_config,
    parse_value,
)


def test_default_config_is_valid():
    config = default_config()
    check_config(config)
    assert config["data"]["type"] == "moons"


@pytest.mark.parametrize(
    "text, value",
    [
        ("0.05", 0.05),
        ("3", 3),
        ("true", True),
        ("adam", "adam"),
        ('"x y"', "x y"),
        ("[1, 2]", [1, 2]),
        ('{ type = "adam", lr = 0.1 }', {"type": "adam", "lr": 0.1}),
    ],
)
def test_set_values_are_typed_as_toml(text, value):
    assert parse_value(text) == value


def test_overrides_reach_nested_keys_and_list_items():
    config = default_config()
    new = apply_overrides(config, ["train.optimizer.lr=0.05", "model.layers.0.units=8", "seed=3"])
    assert new["train"]["optimizer"]["lr"] == 0.05
    assert new["model"]["layers"][0]["units"] == 8
    assert new["seed"] == 3
    assert config["seed"] == 0  # the original is untouched


def test_setting_a_parameter_on_a_component_named_by_string():
    config = {"train": {"optimizer": "sgd"}}
    assert apply_overrides(config, ["train.optimizer.lr=0.5"])["train"]["optimizer"] == {
        "type": "sgd",
        "lr": 0.5,
    }


def test_bad_overrides():
    config = default_config()
    with pytest.raises(ConfigError, match="expects KEY=VALUE"):
        apply_overrides(config, ["train.epochs"])
    with pytest.raises(ConfigError, match="index 5 is out of range"):
        apply_overrides(config, ["model.layers.5.units=3"])
    with pytest.raises(ConfigError, match="not a list index"):
        apply_overrides(config, ["model.layers.first.units=3"])


def test_unknown_key_names_it_and_closest():
    config = apply_overrides(default_config(), ["train.epoch=3"])
    with pytest.raises(
        ConfigError, match=r"unknown config key 'train.epoch'; did you mean 'train.epochs'\?"
    ):
        check_config(config)


def test_wrong_types_are_named():
    with pytest.raises(ConfigError, match="'train.epochs' must be int, got 'ten'"):
        check_config(apply_overrides(default_config(), ['train.epochs="ten"']))
    with pytest.raises(ConfigError, match="'seed' must be int, got True"):
        check_config(apply_overrides(default_config(), ["seed=true"]))
    with pytest.raises(ConfigError, match="'train.batch_size' must be >= 1"):
        check_config(apply_overrides(default_config(), ["train.batch_size=0"]))


def test_missing_sections():
    with pytest.raises(ConfigError, match=r"needs \[model\]"):
        check_config({"data": {"type": "moons"}})


def test_malformed_toml_names_the_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('seed = 0\n[data]\ntype = "moons\n')
    with pytest.raises(ConfigError, match=r"bad.toml: invalid TOML: .*line 3"):
        load_config(path)


def test_missing_file():
    with pytest.raises(ConfigError, match="config file not found: nope.toml"):
        load_config("nope.toml")


def test_flatten():
    assert flatten_config({"a": {"b": 1, "c": [{"d": 2}]}, "e": "x"}) == {
        "a.b": 1,
        "a.c.0.d": 2,
        "e": "x",
    }
