"""build_voices.py: the multi-voice filelists (speaker ids, held-out voice, LJ Speech split)."""
from __future__ import annotations

import json

import pytest

from voices import build_voices


def _voice(root, name, train_ids, test_ids):
    folder = root / name
    (folder / "wavs").mkdir(parents=True)
    for csv, ids in (("metadata_train.csv", train_ids), ("metadata_test.csv", test_ids)):
        (folder / csv).write_text("".join(f"{i}|Text {i}.|Spoken {i}.\n" for i in ids))


def test_assemble_keeps_the_held_out_voice_out_of_training(tmp_path):
    voices = tmp_path / "voices"
    _voice(voices, "awb", ["a1", "a2"], ["a3"])
    _voice(voices, "ked", ["k1"], ["k2"])
    _voice(voices, "slt", ["s1"], ["s2"])
    lj = tmp_path / "lj"
    _voice(tmp_path, "lj", [], [])
    (lj / "metadata.csv").write_text("".join(f"L{i}|t{i}|n{i}\n" for i in range(5)))
    info = build_voices.assemble([voices], tmp_path / "out", "ked", ljspeech=lj, ljspeech_test=2)
    assert info["names"] == ["awb", "slt", "ljspeech"] and info["held_out"] == "ked"
    train = (tmp_path / "out" / "train.txt").read_text().splitlines()
    assert [line.split("|")[1:] for line in train] == [
        ["0", "Spoken a1."], ["0", "Spoken a2."], ["1", "Spoken s1."], ["2", "n0"], ["2", "n1"], ["2", "n2"]]
    assert all("ked" not in line for line in train)
    assert train[0].split("|")[0] == str((voices / "awb" / "wavs" / "a1.wav").resolve())
    assert (tmp_path / "out" / "test_slt.txt").read_text().split("|")[1:] == ["1", "Spoken s2.\n"]
    assert len((tmp_path / "out" / "unseen_ked.txt").read_text().splitlines()) == 2
    assert len((tmp_path / "out" / "test_ljspeech.txt").read_text().splitlines()) == 2
    assert json.loads((tmp_path / "out" / "speakers.json").read_text())["names"] == info["names"]


def test_unknown_held_out_voice_is_named(tmp_path):
    _voice(tmp_path / "voices", "awb", ["a1"], [])
    with pytest.raises(ValueError, match="held-out voice 'nope' not found; built voices: awb"):
        build_voices.assemble([tmp_path / "voices"], tmp_path / "out", "nope")
    assert build_voices.main(["--voices-dir", str(tmp_path / "missing"), "--out-dir", str(tmp_path / "o"),
                              "--held-out", "awb"]) == 2


def test_voices_from_a_second_folder_follow_and_keep_the_first_ones_ids(tmp_path):
    _voice(tmp_path / "voices", "slt", ["s1"], [])
    _voice(tmp_path / "voices", "ked", ["k1"], [])
    _voice(tmp_path / "extra", "ita", ["i1"], [])
    info = build_voices.assemble([tmp_path / "voices", tmp_path / "extra"], tmp_path / "out", "ked")
    assert info["names"] == ["slt", "ita"]
    train = (tmp_path / "out" / "train.txt").read_text().splitlines()
    assert [line.split("|")[1] for line in train] == ["0", "1"]
    _voice(tmp_path / "more", "slt", ["x1"], [])
    with pytest.raises(ValueError, match="two voices are named 'slt'"):
        build_voices.assemble([tmp_path / "voices", tmp_path / "more"], tmp_path / "out", "ked")


def test_a_variant_folder_adds_clips_to_its_voice_and_repeat_balances_voices(tmp_path):
    _voice(tmp_path / "voices", "awb", ["a1"], ["a9"])
    _voice(tmp_path / "voices", "slt", ["s1"], [])
    _voice(tmp_path / "voices", "ked", ["k1"], [])
    _voice(tmp_path / "variants", "awb@high", ["a1"], ["a9"])
    info = build_voices.assemble([tmp_path / "voices", tmp_path / "variants"], tmp_path / "out", "ked",
                                 repeat={"slt": 2})
    assert info["names"] == ["awb", "slt"] and info["train_clips"] == {"awb": 2, "slt": 2}
    train = (tmp_path / "out" / "train.txt").read_text().splitlines()
    assert [(line.split("|")[0].split("/")[-3], line.split("|")[1]) for line in train] == [
        ("awb", "0"), ("awb@high", "0"), ("slt", "1"), ("slt", "1")]
    assert len((tmp_path / "out" / "test_awb.txt").read_text().splitlines()) == 1  # the variant's test clips: no
    _voice(tmp_path / "orphans", "rms@low", ["r1"], [])
    with pytest.raises(ValueError, match="no folder 'rms'"):
        build_voices.assemble([tmp_path / "voices", tmp_path / "orphans"], tmp_path / "out", "ked")
    with pytest.raises(ValueError, match="--repeat names voice"):
        build_voices.assemble([tmp_path / "voices"], tmp_path / "out", "ked", repeat={"nope": 2})
    assert build_voices.main(["--voices-dir", str(tmp_path / "voices"), "--out-dir", str(tmp_path / "o"),
                              "--held-out", "ked", "--repeat", "slt=x"]) == 2
