"""Config loading: unknown keys, wrong types and inconsistent values are rejected with the key named."""
import json
from pathlib import Path

import pytest

import config
from config import ConfigError


def test_defaults_round_trip():
    hps = config.HParams()
    again = config.from_dict(json.loads(json.dumps(hps.to_dict())))
    assert again == hps


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="flow_dmodel"):
        config.from_dict({"model": {"flow_dmodel": 256}})


def test_retired_keys_load_when_off_and_are_refused_when_on():
    """Files written before an unshipped experiment left the code carry its key at the "off" value (the shipped
    vocoder does): those load; a config that turns one on is told the experiment is gone."""
    assert config.from_dict({"train": {"c_if": 0.0}, "data": {"speed_perturb": None}}) == config.HParams()
    with pytest.raises(ConfigError, match="train.c_if was an experiment that never shipped"):
        config.from_dict({"train": {"c_if": 2.0}})


def test_unknown_section_is_named():
    with pytest.raises(ConfigError, match="modle"):
        config.from_dict({"modle": {}})


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match="train.batch_size"):
        config.from_dict({"train": {"batch_size": "16"}})


def test_int_accepted_for_float():
    assert config.from_dict({"train": {"learning_rate": 1}}).train.learning_rate == 1.0


def test_hop_rule_names_values():
    with pytest.raises(ConfigError, match="hop_length is 256"):
        config.from_dict({"model": {"upsample_rates": [8, 4]}})


def test_44k_config_satisfying_rule_is_accepted():
    hps = config.from_dict({"data": {"sampling_rate": 44100, "hop_length": 512, "filter_length": 2048,
                                     "win_length": 2048},
                            "model": {"upsample_rates": [8, 4], "upsample_kernel_sizes": [16, 8]},
                            "train": {"segment_size": 16384}})
    assert hps.data.hop_length == 512


def test_load_config_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        config.load_config(tmp_path / "nope.json")


def test_load_config_bad_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{ not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        config.load_config(path)


@pytest.mark.parametrize("section,key,value", [
    ("model", "upsample_rates", ["4", "4"]),
    ("model", "resblock_dilation_sizes", [[1, "3"]]),
    ("model", "resblock_dilation_sizes", [1, 3]),
    ("train", "betas", [0.9, "0.99"]),
    ("data", "text_cleaners", [1]),
    ("train", "init_parts", "acoustic"),
])
def test_list_element_types_are_checked(section, key, value):
    with pytest.raises(ConfigError, match=f"{section}.{key}"):
        config.from_dict({section: {key: value}})


def test_list_of_ints_accepted_for_floats():
    betas = config.from_dict({"train": {"betas": [1, 0.5]}}).train.betas
    assert betas == [1.0, 0.5] and all(isinstance(b, float) for b in betas)


@pytest.mark.parametrize("model,match", [
    ({"resblock": "3"}, "model.resblock"),
    ({"resblock_kernel_sizes": [3, 7]}, "resblock_dilation_sizes"),
    ({"upsample_kernel_sizes": [3, 16]}, "smaller than its upsample rate"),
    ({"upsample_initial_channel": 510}, "upsample_initial_channel"),
    ({"gen_istft_hop_size": 16, "gen_istft_n_fft": 16, "upsample_rates": [4, 1], "upsample_kernel_sizes": [8, 3]},
     "gen_istft_hop_size"),
    ({"gen_istft_hop_size": 16, "gen_istft_n_fft": 32, "upsample_rates": [4, 1], "upsample_kernel_sizes": [8, 2]},
     "rate 1"),
])
def test_generator_rules_are_checked_by_validate(model, match):
    """The generator's rules run when the config is loaded, before any run folder is written."""
    with pytest.raises(ConfigError, match=match):
        config.from_dict({"model": model})


@pytest.mark.parametrize("key", ["learning_rate", "vocoder_learning_rate", "discriminator_learning_rate"])
def test_learning_rates_must_be_positive(key):
    with pytest.raises(ConfigError, match=key):
        config.from_dict({"train": {key: 0.0}})


def test_every_training_lever_is_a_valid_config():
    """benchmarks/levers.py: a misspelt key in a lever must fail here, not after an hour of training."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import levers

    base = json.loads((Path(__file__).resolve().parents[1] / "configs" / "small.json").read_text())
    for name, changes in levers.LEVERS.items():
        cfg = levers.lever_config(base, changes, minutes=30)
        hps = config.from_dict(cfg)
        assert hps.train.max_minutes == 30 and hps.train.keep_ckpts >= 100, name
        for section, values in changes.items():
            for key, value in values.items():
                assert getattr(getattr(hps, section), key) == value, (name, key)
    assert base["train"].get("max_minutes") is None  # the base config is not changed
    for section, values in levers.LEVERS["recipe"].items():  # the study's winner is what small.json holds
        assert {k: base[section][k] for k in values} == values


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.json")),
                         ids=lambda p: p.name)
def test_every_shipped_config_loads_and_starts_from_a_shipped_file(path):
    """...and a run that takes its vocoder from that file builds a generator the file fits (a width change
    of the shared vocoder must reach every config that starts from it)."""
    from training.checkpoint import check_state_fits
    from models import make_generator
    from training.voice_file import read_vocoder

    hps = config.load_config(path)
    init = hps.train.init_checkpoint
    if init and init.startswith("logs/"):  # made by an earlier documented run (the distillation's guided teacher):
        cards = "".join(p.read_text(encoding="utf-8") for p in (path.parents[1] / "pretrained").glob("*.md"))
        assert init in cards, f"{path.name} starts from {init}: a model card must say how to make it"
        return
    if init:  # relative to the project root, where README's commands run
        init = path.parents[1] / init
        assert init.is_file()
        if "vocoder" in hps.train.init_parts:
            check_state_fits(make_generator(hps), read_vocoder(init)[0], init)



def test_a_voice_carries_its_default_sampling(tiny_hps):
    """model.sampling_steps / sampling_method / cfg_scale: what every path speaks with unless told otherwise."""
    from config import default_sampling
    from sampling import SamplingConfig

    hps = tiny_hps.replace(sampling_steps=3, sampling_method="midpoint")
    assert default_sampling(hps.model) == SamplingConfig(steps=3, method="midpoint", cfg_scale=0.0)
    with pytest.raises(ConfigError, match="model.sampling_steps.*positive integer"):
        tiny_hps.replace(sampling_steps=0)
    with pytest.raises(ConfigError, match="unknown ODE method 'rk45'"):
        tiny_hps.replace(sampling_method="rk45")
