"""Montreal Forced Aligner TextGrids in: durations of the model's own tokens that keep the TextGrid's word
boundaries to the frame, preprocess.py --textgrids, and training on them end to end.

tests/data/textgrids holds a TextGrid in MFA's format for each clip of tests/data (make_textgrids.py there says
how they were made)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import flow_matching
import preprocess
import text
import train_flow_matching as train
from config import HParams, load_config, validate
from conftest import ROOT
from data_utils import read_filelist
from textgrid_durations import (Interval, match_words, model_words, phonemize_words, read_textgrid,
                                token_durations)

GRIDS = ROOT / "tests" / "data" / "textgrids"
DATA = validate(HParams()).data
FPS = DATA.sampling_rate / DATA.hop_length


def words_of(*spans):
    return [Interval(a, b, w) for a, b, w in spans]


def durations(cleaned, words, phones, end, add_blank=True):
    said = phonemize_words([w.label for w in words], DATA.text_cleaners, DATA.language)
    return token_durations(cleaned, add_blank, words, phones, end, said, FPS)


def test_words_espeak_joins_are_matched_as_one_group():
    words = ["in", "the", "only", "sense", "of", "the", "word"]
    said = phonemize_words(words, DATA.text_cleaners, DATA.language)
    cleaned = text.clean_text(" ".join(words), DATA.text_cleaners, DATA.language)  # ɪnðɪ ... ʌvðə ...
    model_words = cleaned.split()
    groups = match_words(model_words, words, said)
    assert [(list(m), list(g)) for m, g in groups] == [([0], [0, 1]), ([1], [2]), ([2], [3]), ([3], [4, 5]),
                                                       ([4], [6])], (cleaned, groups)


def test_word_boundaries_pauses_and_phones_land_on_the_right_tokens():
    """'in the' (one espeak word) then a pause then 'only': the group keeps the TextGrid's outer boundaries,
    the pause goes to the space, blanks and stress marks inside words take nothing, the silences before and
    after go to the first and last blank, and n characters on n phones take exactly the phones' frames."""
    cleaned = "ɪnðɪ ˈoʊnli"
    words = words_of((0.10, 0.40, "in"), (0.40, 0.60, "the"), (0.80, 1.40, "only"))
    only = [(0.80, 0.90), (0.90, 1.20), (1.20, 1.25), (1.25, 1.30), (1.30, 1.40)]  # o ʊ n l i
    phones = words_of(*[(a, b, p) for (a, b), p in zip(only, "oʊnli")])
    dur = durations(cleaned, words, phones, end=1.60)
    chars = list(cleaned)
    assert len(dur) == 2 * len(chars) + 1 and dur.sum() == round(1.60 * FPS)
    ends = np.cumsum(dur)
    char_end = {k: int(ends[2 * k + 1]) for k in range(len(chars))}
    assert dur[0] == round(0.10 * FPS)  # the silence before the first word: the first blank
    assert ends[2 * 3 + 1] == round(0.60 * FPS)  # 'ɪnðɪ' ends where 'the' ends
    space = chars.index(" ")
    assert char_end[space] == round(0.80 * FPS) and dur[2 * space + 1] == round(0.80 * FPS) - round(0.60 * FPS)
    stress = chars.index("ˈ")
    assert dur[2 * stress + 1] == 0 and all(d == 0 for d in dur[2:2 * len(chars):2])  # blanks inside: nothing
    for k, (a, b) in zip(range(stress + 1, len(chars)), only):  # one to one: each character its phone's frames
        assert char_end[k] == round(b * FPS) and ends[2 * k] == round(a * FPS), chars[k]
    assert dur[-1] == round(1.60 * FPS) - round(1.40 * FPS)  # the silence after: the last blank


def test_without_blanks_the_first_and_last_tokens_take_the_silences():
    dur = durations("ɪn bˈiːɪŋ.", words_of((0.2, 0.4, "in"), (0.4, 0.9, "being")), [], end=1.2, add_blank=False)
    assert len(dur) == len("ɪn bˈiːɪŋ.") and dur.sum() == round(1.2 * FPS)
    assert dur[0] > 0 and np.cumsum(dur)[1] == round(0.4 * FPS)  # 'ɪ' from 0 (the lead silence), 'n' to 0.4
    assert np.cumsum(dur)[-2] == round(0.9 * FPS)  # 'ŋ' ends with 'being'; '.' takes the rest


def test_a_textgrid_of_other_words_is_refused():
    with pytest.raises(ValueError, match="do not match the transcript's"):
        durations("ɪn bˈiːɪŋ kəmpˈæɹətˌɪvli", words_of((0.1, 0.3, "dogs"), (0.3, 0.6, "eat"), (0.6, 0.9, "fish")),
                  [], end=1.0)


@pytest.mark.parametrize("stem", ["LJ001-0001", "LJ001-0002", "LJ001-0003", "LJ001-0004"])
def test_durations_keep_every_word_boundary_of_the_tests_data_textgrids(stem):
    utt = next(u for u in read_filelist(ROOT / "tests" / "data" / "metadata.csv") if stem in u.wav_path)
    words, phones, end = read_textgrid(GRIDS / f"{stem}.TextGrid")
    cleaned = text.clean_text(utt.text, DATA.text_cleaners, DATA.language)
    said = phonemize_words([w.label for w in words], DATA.text_cleaners, DATA.language)
    dur = token_durations(cleaned, True, words, phones, end, said, FPS)
    assert len(dur) == len(text.text_to_ids(cleaned, DATA, cleaned=True)) and dur.sum() == round(end * FPS)
    boundaries = np.concatenate([[0], np.cumsum(dur)])
    chars, pieces = model_words(cleaned)
    checked = 0
    for model, grid in match_words(["".join(chars[a:b]) for a, b in pieces], [w.label for w in words], said):  # inner boundaries of a group
        for t in (words[grid[0]].start, words[grid[-1]].end):                # of joined words are not tokens'
            assert np.abs(boundaries - t * FPS).min() <= 1.0, (stem, [w.label for w in words[grid[0]:grid[-1] + 1]], t)
            checked += 1
    assert checked >= len(words)  # every word's outer boundaries, at least as many as words


def test_preprocess_writes_durations_and_training_uses_them_instead_of_its_own_alignment(tmp_path, monkeypatch):
    out = tmp_path / "data"
    assert preprocess.main(["--dataset", str(ROOT / "tests" / "data"), "--out-dir", str(out), "--config",
                            str(ROOT / "configs" / "tiny.json"), "--textgrids", str(GRIDS), "--val-size", "1"]) == 0
    hps = load_config(out / "config.json")
    assert Path(hps.data.durations_dir) == (out / "durations").resolve()
    assert sorted(p.name for p in (out / "durations").glob("*.npy")) == [f"LJ001-000{i}.npy" for i in range(1, 5)]

    def no_mas(*args, **kwargs):
        raise AssertionError("training aligned by itself although the TextGrid durations were given")
    monkeypatch.setattr(flow_matching, "monotonic_alignment", no_mas)
    cfg = tmp_path / "train.json"
    hps.replace(eval_interval=2, batch_size=2).save(cfg)
    run = tmp_path / "run"
    assert train.main(["-c", str(cfg), "-m", str(run), "--max-steps", "2"]) == 0
    assert (run / "G_2.pth").is_file()


def test_clips_without_a_usable_textgrid_are_excluded_and_listed(tmp_path, capsys):
    grids = tmp_path / "grids"
    grids.mkdir()
    (grids / "LJ001-0001.TextGrid").write_bytes((GRIDS / "LJ001-0001.TextGrid").read_bytes())
    (grids / "LJ001-0002.TextGrid").write_bytes((GRIDS / "LJ001-0003.TextGrid").read_bytes())  # another clip's
    (grids / "LJ001-0003.TextGrid").write_text("not a TextGrid")
    text_only = (GRIDS / "LJ001-0004.TextGrid").read_text(encoding="utf-8").replace('name = "phones"', 'name = "x"')
    (grids / "LJ001-0004.TextGrid").write_text(text_only, encoding="utf-8")
    out = tmp_path / "data"
    assert preprocess.main(["--dataset", str(ROOT / "tests" / "data"), "--out-dir", str(out), "--textgrids",
                            str(grids), "--val-size", "0"]) == 0
    report = capsys.readouterr().out
    assert "1 of 4 entries kept" in report
    assert "is it the TextGrid of another clip?" in report  # LJ001-0002 with 0003's TextGrid
    assert "is not a readable TextGrid" in report and "has no 'phones' tier" in report
    assert [p.name for p in (out / "durations").glob("*.npy")] == ["LJ001-0001.npy"]
    with pytest.raises(SystemExit):
        preprocess.parse_args(["--dataset", "x", "--out-dir", str(out), "--textgrids", str(tmp_path / "none")])
