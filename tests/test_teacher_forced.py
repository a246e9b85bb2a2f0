"""Teacher-forced mels (teacher_forced_mels.py) and a vocoder trained on them (data.vocoder_mel_dir)."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

try:
    from fixtures_checkpoint import DATA_DIR, tiny_checkpoint  # noqa: F401  (pytest fixture)
except ImportError:  # tests/ imported as a package
    from tests.fixtures_checkpoint import DATA_DIR, tiny_checkpoint  # noqa: F401

import config as config_lib  # noqa: E402
from training import teacher_forced_mels  # noqa: E402
import train_flow_matching as train  # noqa: E402
from data_utils import TextMelCollate, TextMelLoader  # noqa: E402
from sampling import SamplingConfig  # noqa: E402
from training.voice_file import load_voice  # noqa: E402


@pytest.fixture(scope="module")
def tf_mels(tiny_checkpoint, tmp_path_factory):
    """The script run on the tiny checkpoint's training list (the four real clips)."""
    out = tmp_path_factory.mktemp("tf") / "mels"
    assert teacher_forced_mels.main(["-m", str(tiny_checkpoint), "--out-dir", str(out), "--steps", "2",
                                     "--batch-size", "3"]) == 0
    return out


def test_aligned_durations_make_a_mel_as_long_as_the_recording(tiny_checkpoint):
    model, hps = load_voice(tiny_checkpoint)
    batch = TextMelCollate()([TextMelLoader(DATA_DIR / "filelist.txt", hps)[i] for i in range(3)])
    durations = model.acoustic.align(batch["text"], batch["text_lengths"], batch["mel"], batch["mel_lengths"])
    assert torch.equal(durations.sum(1), batch["mel_lengths"])
    padded = torch.arange(durations.size(1)) >= batch["text_lengths"].unsqueeze(1)
    assert (durations[padded] == 0).all()
    out = model.acoustic.infer(batch["text"], batch["text_lengths"], SamplingConfig(steps=2),
                               durations=durations)
    assert torch.equal(out["mel_lengths"], batch["mel_lengths"])


def test_script_writes_one_mel_per_clip_and_resumes(tiny_checkpoint, tf_mels, capsys):
    _, hps = load_voice(tiny_checkpoint)
    dataset = TextMelLoader(DATA_DIR / "filelist.txt", hps)
    for i, wav in enumerate(dataset.paths):
        mel = np.load(tf_mels / wav.split("/")[-1].replace(".wav", ".npy"))
        recorded = dataset[i]["mel"]
        assert mel.shape == tuple(recorded.shape) and mel.dtype == np.float32
        assert np.isfinite(mel).all() and not np.allclose(mel, recorded.numpy())  # generated, not copied
    capsys.readouterr()
    assert teacher_forced_mels.main(["-m", str(tiny_checkpoint), "--out-dir", str(tf_mels)]) == 0
    out = capsys.readouterr().out
    assert "0 mels written now, 4 were already there" in out and "vocoder_finetune.json -m RUN_DIR" in out
    finetune = config_lib.load_config(tf_mels / "vocoder_finetune.json")
    assert finetune.data.vocoder_mel_dir == str(tf_mels) and finetune.train.init_checkpoint == str(tiny_checkpoint)
    assert finetune.train.train_vocoder and not finetune.train.train_acoustic
    assert finetune.model.flow_d_model == hps.model.flow_d_model  # the model's own config, not a default one


def test_missing_filelist_is_one_line(tiny_checkpoint, tmp_path, capsys):
    assert teacher_forced_mels.main(["-m", str(tiny_checkpoint), "--out-dir", str(tmp_path),
                                     "--filelist", str(tmp_path / "nope.txt")]) == 2
    assert "nope.txt not found; pass --filelist" in capsys.readouterr().err


def vocoder_config(tiny_checkpoint, tmp_path, mel_dir) -> config_lib.HParams:
    raw = json.loads(json.dumps(torch.load(tiny_checkpoint, weights_only=False)["config"]))
    raw["data"]["vocoder_mel_dir"] = str(mel_dir)
    raw["train"].update(train_acoustic=False, train_vocoder=True)
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(raw))
    return config_lib.load_config(path)


def test_vocoder_trains_on_the_generated_mels(tiny_checkpoint, tf_mels, tmp_path, monkeypatch):
    hps = vocoder_config(tiny_checkpoint, tmp_path, tf_mels)
    trainer = train.Trainer(hps, tmp_path / "run", tensorboard=False)
    batch = next(iter(trainer.train_loader(0)))
    for i, wav in enumerate(batch["paths"]):
        stored = torch.from_numpy(np.load(tf_mels / wav.split("/")[-1].replace(".wav", ".npy")))
        assert torch.equal(batch["vocoder_mel"][i, :, :stored.size(1)], stored)
    sliced = []
    real_slice = train.commons.rand_slice_mel_and_wav
    monkeypatch.setattr(train.commons, "rand_slice_mel_and_wav",
                        lambda mel, *args: sliced.append(mel) or real_slice(mel, *args))
    result = trainer.train_step(batch)
    assert not result.skipped and sliced and sliced[0] is batch["vocoder_mel"]


def test_missing_or_misshapen_generated_mels_skip_the_clip(tiny_checkpoint, tf_mels, tmp_path, caplog):
    mel_dir = tmp_path / "mels"
    mel_dir.mkdir()
    files = sorted(tf_mels.glob("*.npy"))
    np.save(mel_dir / files[0].name, np.load(files[0]))
    np.save(mel_dir / files[1].name, np.load(files[1])[:, :-3])
    hps = vocoder_config(tiny_checkpoint, tmp_path, mel_dir)
    with caplog.at_level(logging.WARNING):
        dataset = TextMelLoader(DATA_DIR / "filelist.txt", hps)
    assert len(dataset) == 1
    assert "is missing (data.vocoder_mel_dir is set)" in caplog.text
    assert "make it again with teacher_forced_mels.py" in caplog.text


def test_validation_needs_no_generated_mels(tiny_checkpoint, tf_mels, tmp_path):
    """Evaluation scores copy synthesis of the recordings' mels: validation clips without generated mels
    (teacher_forced_mels.py makes them for the training list only) must not stop the run."""
    mel_dir = tmp_path / "mels"
    mel_dir.mkdir()
    first = sorted(tf_mels.glob("*.npy"))[0]
    np.save(mel_dir / first.name, np.load(first))
    trainer = train.Trainer(vocoder_config(tiny_checkpoint, tmp_path, mel_dir), tmp_path / "run", tensorboard=False)
    assert len(trainer.train_set) == 1
    batch = trainer.validation_batch()
    assert batch is not None and "vocoder_mel" not in batch and batch["mel"].size(0) > 1
