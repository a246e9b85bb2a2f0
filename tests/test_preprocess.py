"""preprocess.py on a small LJSpeech-style folder full of bad inputs: everything bad is reported in one
table and excluded, the run never dies, and the filelists, statistics and config it writes are right."""
import contextlib
import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

import preprocess
import text
from config import HParams, load_config
from conftest import torch_threads
from data_utils import compute_mel, read_filelist

SR = 22050


def build_dataset(root, lj_wavs, lj_metadata):
    """LJSpeech-style folder: the 4 real clips plus one clip per kind of problem."""
    wavs = root / "wavs"
    wavs.mkdir(parents=True)
    for p in lj_wavs:
        shutil.copy(p, wavs / p.name)
    speech, _ = sf.read(str(lj_wavs[1]), dtype="float32")  # 1.9 s
    sf.write(wavs / "stereo.wav", np.stack([speech, speech], axis=1), SR)
    sf.write(wavs / "emoji.wav", speech, SR)
    sf.write(wavs / "nothing_to_say.wav", speech, SR)
    sf.write(wavs / "empty.wav", np.zeros(0, dtype=np.float32), SR)
    sf.write(wavs / "silent.wav", np.zeros(SR, dtype=np.float32), SR)
    sf.write(wavs / "short.wav", speech[: SR // 10], SR)
    sf.write(wavs / "long.wav", np.tile(speech, 4), SR)  # 7.6 s > max_audio_seconds 7 below
    sf.write(wavs / "rate44k.wav", np.repeat(speech, 2), 44100)
    (wavs / "garbage.wav").write_bytes(b"RIFF....WAVEfmt definitely not audio")
    lines = lj_metadata.read_text(encoding="utf-8").splitlines()  # LJ001-0001/0003 (9.7 s) are too long below
    lines += [
        "stereo|Two channels.|Two channels.",
        "emoji|Hello 😀 there.|Hello 😀 there.",
        "nothing_to_say|😀 ...|😀 ...",
        "empty|Empty file.|Empty file.",
        "silent|Silent file.|Silent file.",
        "short|Short file.|Short file.",
        "long|Long file.|Long file.",
        "rate44k|Another rate.|Another rate.",
        "garbage|Garbage bytes.|Garbage bytes.",
        "missing|Missing file.|Missing file.",
        "a|malformed|line|here",
    ]
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_config(path, **data):
    HParams().replace(**data).save(path)
    return path


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory, lj_wavs, lj_metadata):
    root = tmp_path_factory.mktemp("bad")
    build_dataset(root / "ds", lj_wavs, lj_metadata)
    config = write_config(root / "in.json", max_audio_seconds=7.0, min_audio_seconds=0.5, resample=False)
    out = root / "out"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), torch_threads(1):  # module scope: before the per-test fixture
        code = preprocess.main(["--dataset", str(root / "ds"), "--out-dir", str(out), "--config", str(config),
                                "--val-size", "1", "--njobs", "1"])
    return code, buffer.getvalue(), root, out


def table_rows(stdout):
    rows = {}
    for line in stdout.splitlines():
        for status in ("excluded", "kept"):
            if line.startswith(status + " "):
                rest = line[len(status):].strip()
                path, _, reason = rest.partition("  ")
                rows[path.strip().rsplit("/", 1)[-1]] = (status, reason.strip())
    return rows


def test_every_bad_input_is_in_one_summary_table(bad_run):
    code, stdout, root, out = bad_run
    assert code == 0
    assert stdout.count("Summary:") == 1
    rows = table_rows(stdout)
    expected = {
        "LJ001-0001.wav": ("excluded", "too long: 9.66 s > data.max_audio_seconds 7.0"),
        "LJ001-0003.wav": ("excluded", "too long"),
        "empty.wav": ("excluded", "empty"),
        "silent.wav": ("excluded", "silent"),
        "short.wav": ("excluded", "too short"),
        "long.wav": ("excluded", "too long"),
        "rate44k.wav": ("excluded", "sample rate 44100 Hz"),
        "garbage.wav": ("excluded", "unreadable"),
        "missing.wav": ("excluded", "file not found"),
        "nothing_to_say.wav": ("excluded", "nothing to speak"),
        "stereo.wav": ("kept", "2 channels mixed down to mono"),
        "emoji.wav": ("kept", "U+1F600"),
    }
    for name, (status, reason) in expected.items():
        assert name in rows, f"{name} missing from the summary:\n{stdout}"
        assert rows[name][0] == status and reason in rows[name][1], (name, rows[name])
    malformed = [r for r in rows.values() if "got 4 field" in r[1]]
    assert len(malformed) == 1 and malformed[0][0] == "excluded"
    assert "metadata.csv:15" in rows  # the malformed line is named by file and line number
    assert "11 excluded" in stdout


def test_filelists_hold_exactly_the_good_clips_with_phonemes(bad_run):
    """Catches a filelist line with a symbol the model lacks, or with no phonemes, or a bad clip kept."""
    _, _, root, out = bad_run
    train, val = read_filelist(out / "train.txt"), read_filelist(out / "val.txt")
    assert len(val) == 1
    names = sorted(u.wav_path.rsplit("/", 1)[-1] for u in train + val)
    assert names == ["LJ001-0002.wav", "LJ001-0004.wav", "emoji.wav", "stereo.wav"]
    for u in train + val:
        assert u.wav_path.startswith("/") and not u.raw_text
        assert set(u.text) <= set(text.symbols), u.text  # no unknown symbols (they would only warn)
        text.cleaned_text_to_sequence(u.text)  # nor empty text (raises)
    by_name = {u.wav_path.rsplit("/", 1)[-1]: u.text for u in train + val}
    assert by_name["LJ001-0002.wav"] == "ɪn bˌiːɪŋ kəmpˈæɹətˌɪvli mˈɑːdɚn."
    assert by_name["emoji.wav"] == text.clean_text("Hello there.")


def test_mel_statistics_and_filled_config(bad_run):
    _, _, root, out = bad_run
    stats = json.loads((out / "mel_stats.json").read_text())
    hps = load_config(out / "config.json")
    d = hps.data
    mels = []
    for u in read_filelist(out / "train.txt"):
        wav, sr = sf.read(u.wav_path, dtype="float32", always_2d=True)
        wav = torch.from_numpy(wav.mean(axis=1))
        mels.append(compute_mel(wav[: len(wav) // d.hop_length * d.hop_length], d).flatten().double())
    values = torch.cat(mels)
    assert stats["mel_mean"] == pytest.approx(float(values.mean()), abs=1e-6)
    assert stats["mel_std"] == pytest.approx(float(values.std(unbiased=False)), abs=1e-6)
    assert stats["n_train_clips"] == 3
    assert d.mel_mean == pytest.approx(stats["mel_mean"]) and d.mel_std == pytest.approx(stats["mel_std"])
    assert d.training_files == str((out / "train.txt").resolve()) and d.cleaned_text is True
    assert d.max_audio_seconds == 7.0 and d.resample is False  # the rest of the input config is kept


def test_filelists_mode_resamples_when_allowed(tmp_path, lj_wavs):
    speech, _ = sf.read(str(lj_wavs[1]), dtype="float32")
    sf.write(tmp_path / "rate44k.wav", np.repeat(speech, 2), 44100)
    (tmp_path / "a.txt").write_text(f"{lj_wavs[1]}|In being comparatively modern.\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("rate44k.wav|Another one, 2 times.\n", encoding="utf-8")
    out = tmp_path / "out"
    code = preprocess.main(["--filelists", str(tmp_path / "a.txt"), str(tmp_path / "b.txt"),
                            "--out-dir", str(out), "--val-size", "0", "--njobs", "1"])
    assert code == 0
    train = read_filelist(out / "train.txt")
    assert len(train) == 2 and (out / "val.txt").read_text() == ""
    assert train[1].text == text.clean_text("Another one, two times.")
    assert not (out / "config.json").exists()


def test_no_usable_clip_fails_cleanly(tmp_path, capsys):
    (tmp_path / "list.txt").write_text("missing.wav|text\n", encoding="utf-8")
    code = preprocess.main(["--filelists", str(tmp_path / "list.txt"), "--out-dir", str(tmp_path / "o"),
                            "--njobs", "1"])
    captured = capsys.readouterr()
    assert code == 2 and "no usable clip" in captured.err and "file not found" in captured.out


def test_cli_help_runs():
    result = subprocess.run([sys.executable, "preprocess.py", "--help"], capture_output=True, text=True,
                            cwd=str(preprocess.__file__).rsplit("/", 1)[0], timeout=120)
    assert result.returncode == 0 and "--dataset" in result.stdout and "--filelists" in result.stdout
