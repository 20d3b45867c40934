"""Configs from dicts and dotted overrides (safecb.typed_config), and the named presets in configs/."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from safecb.cli import main
from safecb.engine import SafeCBConfig, preset_changes
from safecb.engine.config import Step3Config
from safecb.paths import CONFIGS_DIR
from safecb.vapi.config import VapiConfig

PRESETS = sorted(CONFIGS_DIR.glob("*.json"))


def test_override_sets_dotted_keys_on_a_new_config_and_leaves_the_old_one():
    base = SafeCBConfig()
    changed = base.override({"stop.max_rounds": 6, "mining.threshold": 0.4, "vapi.enabled": True, "target": "decoder"})
    assert (changed.stop.max_rounds, changed.mining.threshold, changed.vapi.enabled, changed.target) == (
        6, 0.4, True, "decoder")
    assert base == SafeCBConfig()
    assert changed.override({"stop.max_rounds": 4, "mining.threshold": 0.5, "vapi.enabled": False,
                             "target": "generator"}) == base
    assert isinstance(changed.vapi, Step3Config)


def test_a_section_mapping_changes_only_the_keys_it_names():
    changed = SafeCBConfig().override({"stop": {"epsilon": 0.1}, "sampler": {"top_k": 5}})
    assert changed.stop == dataclasses.replace(SafeCBConfig().stop, epsilon=0.1)
    assert changed.sampler.top_k == 5 and changed.sampler.cfg_weight == SafeCBConfig().sampler.cfg_weight


def test_values_are_coerced_where_nothing_is_lost():
    changed = SafeCBConfig().override({"stop.epsilon": 0, "stop.max_rounds": 3.0, "mining.seeds": (0, 1)})
    assert changed.stop.epsilon == 0.0 and isinstance(changed.stop.epsilon, float)
    assert changed.stop.max_rounds == 3 and isinstance(changed.stop.max_rounds, int)
    assert changed.mining.seeds == [0, 1]


@pytest.mark.parametrize("changes, message", [
    ({"stop.max_rounds": 2.5}, r"'stop.max_rounds' must be a whole number, got 2.5"),
    ({"stop.max_rounds": "6"}, r"'stop.max_rounds' must be a whole number"),
    ({"stop.max_rounds": True}, r"'stop.max_rounds' must be a whole number"),
    ({"mining.threshold": "0.4"}, r"'mining.threshold' must be a number"),
    ({"fine_tune.enabled": 1}, r"'fine_tune.enabled' must be true or false"),
    ({"target": 3}, r"'target' must be a string"),
    ({"mining.seeds": 4}, r"'mining.seeds' must be a list"),
    ({"mining.seeds": [0, "1"]}, r"'mining.seeds\[1\]' must be a whole number"),
    ({"stop": 3}, r"section 'stop' must be a mapping"),
    ({"stop.max_rounds.x": 1}, r"'stop.max_rounds' is a value, not a section"),
])
def test_values_of_the_wrong_type_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        SafeCBConfig().override(changes)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinite_floats_are_refused(value):
    with pytest.raises(ValueError, match="'stop.epsilon' must be a finite number"):
        SafeCBConfig().override({"stop.epsilon": value})
    with pytest.raises(ValueError, match="'lr' must be a finite number"):
        VapiConfig.from_dict({"lr": value})


@pytest.mark.parametrize("key, valid", [
    ("stop.max_round", "valid keys under 'stop': epsilon, max_adherence_drop, max_benign_change, max_rounds, patience"),
    ("stpo.max_rounds", "valid keys: batch_size, codes, "),
    ("vapi.stepz", "valid keys under 'vapi': adv_clip, "),
])
def test_unknown_keys_name_the_key_and_the_valid_ones(key, valid):
    with pytest.raises(ValueError, match=rf"^unknown Safe-CB config key '{key}'; ") as info:
        SafeCBConfig().override({key: 1})
    assert valid in str(info.value)


def test_override_validates_the_result():
    with pytest.raises(ValueError, match="max_rounds and patience must be at least 1"):
        SafeCBConfig().override({"stop.max_rounds": 0})
    with pytest.raises(ValueError, match="must train only 'codebooks'"):
        SafeCBConfig().override({"vapi.trainable": "generator"})


def test_vapi_override_keeps_the_class_and_validates():
    assert VapiConfig().override({"steps": 4, "method": "ste"}) == VapiConfig(steps=4, method="ste")
    assert type(Step3Config().override({"steps": 4})) is Step3Config
    with pytest.raises(ValueError, match="group G must be at least 2"):
        VapiConfig().override({"group": 1})


def test_from_dict_builds_every_section_from_the_field_types():
    config = SafeCBConfig.from_dict(SafeCBConfig().to_dict())
    for f in dataclasses.fields(SafeCBConfig):
        assert type(getattr(config, f.name)) is type(getattr(SafeCBConfig(), f.name)), f.name
    assert SafeCBConfig.from_dict({}) == SafeCBConfig()


def test_from_dict_refuses_unknown_keys_at_every_level():
    with pytest.raises(ValueError, match=r"unknown Safe-CB config keys: \['stops'\]; valid keys: .*stop"):
        SafeCBConfig.from_dict({"stops": {}})
    with pytest.raises(ValueError, match=r"unknown Safe-CB config keys in section 'stop': \['max_round'\]"):
        SafeCBConfig.from_dict({"stop": {"max_round": 3}})
    with pytest.raises(ValueError, match=r"unknown VAπ config keys: \['stepz'\]"):
        VapiConfig.from_dict({"stepz": 3})


@pytest.mark.parametrize("config", [SafeCBConfig()] + [SafeCBConfig.preset(p.stem) for p in PRESETS],
                         ids=["defaults"] + [p.stem for p in PRESETS])
def test_from_dict_inverts_asdict_also_through_json(config):
    assert SafeCBConfig.from_dict(dataclasses.asdict(config)) == config
    assert SafeCBConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_vapi_from_dict_inverts_asdict():
    for config in (VapiConfig(), VapiConfig(method="ste", steps=3), Step3Config()):
        assert type(config).from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_there_are_presets_and_each_loads_and_validates():
    assert {"default", "step3", "quick"} <= {p.stem for p in PRESETS}
    for path in PRESETS:
        config = SafeCBConfig.from_dict(json.loads(path.read_text()))
        config.validate()
        assert SafeCBConfig.preset(path.stem) == config


def test_the_default_preset_is_every_default_written_out():
    assert json.loads((CONFIGS_DIR / "default.json").read_text()) == SafeCBConfig().to_dict()


def test_the_step3_preset_is_the_defaults_with_step_3_on():
    assert SafeCBConfig.preset("step3") == SafeCBConfig().override({"vapi.enabled": True})


def test_a_preset_lays_over_another_config():
    config = SafeCBConfig().override({"target": "decoder"}).override(preset_changes("quick"))
    assert config.target == "decoder" and config.mining.seeds == [0, 1] and config.stop.max_rounds == 2


def test_an_unknown_preset_names_the_known_ones():
    with pytest.raises(ValueError, match=r"no Safe-CB preset 'nope'.*default"):
        SafeCBConfig.preset("nope")


def test_the_cli_checks_its_flags_over_a_preset_before_loading_a_model(tmp_path, capsys):
    args = ["run", "--out", str(tmp_path / "run"), "--model", str(tmp_path / "no-model"), "--no-oracle"]
    assert main(args + ["--config", str(CONFIGS_DIR / "step3.json"), "--rounds", "0"]) == 2
    assert "max_rounds and patience must be at least 1" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"stop": {"epsilon": "big"}}))
    assert main(args + ["--config", str(bad)]) == 2
    assert "'stop.epsilon' must be a number" in capsys.readouterr().err
