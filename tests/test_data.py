"""Filelist parsing, the text+mel dataset on real clips, collation padding and the bucket sampler."""
import logging
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

import text
from audio import AudioError
from data_utils import (DistributedBucketSampler, FilelistError, TextMelCollate, TextMelLoader,
                        length_boundaries, read_filelist)
from flow_matching import FlowMatchingTTS
from mel_processing import LOG_MEL_FLOOR, mel_from_config

HOP = 256


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def dataset(lj_filelist):
    from conftest import make_tiny_hps
    return TextMelLoader(lj_filelist, make_tiny_hps())


# ------------------------------------------------------------------------------------------ filelists


def test_ljspeech_metadata_resolves_wavs_and_marks_text_raw(lj_metadata, lj_wavs):
    utts = read_filelist(lj_metadata)
    assert [u.wav_path for u in utts] == [str(p.resolve()) for p in lj_wavs]
    assert all(u.raw_text and u.speaker == 0 for u in utts)
    assert utts[1].text == "in being comparatively modern."


def test_vits_formats_and_relative_paths(tmp_path, lj_wavs):
    (tmp_path / "clips").mkdir()
    shutil.copy(lj_wavs[1], tmp_path / "clips" / "a.wav")
    filelist = tmp_path / "list.txt"
    filelist.write_text(f"clips/a.wav|hello\n\n{lj_wavs[0]}|3|world\n", encoding="utf-8")
    a, b = read_filelist(filelist)
    assert a.wav_path == str((tmp_path / "clips" / "a.wav").resolve()) and a.text == "hello" and a.speaker == 0
    assert b.wav_path == str(lj_wavs[0].resolve()) and b.speaker == 3 and b.text == "world"
    assert not a.raw_text and not b.raw_text


@pytest.mark.parametrize("line, message", [
    ("just_one_field", "got 1 field"),
    ("a.wav|1|text|extra", "got 4 field"),
    ("a.wav|", "empty text"),
    ("|some text", "empty wav path"),
    ("a.wav|x|text", "speaker id must be a non-negative integer"),
    ("a.wav|-2|text", "speaker id must be a non-negative integer"),
    ("|text|normalized", "empty clip id"),
])
def test_malformed_line_names_file_and_line(tmp_path, line, message):
    filelist = tmp_path / "bad.txt"
    filelist.write_text(f"good.wav|fine\n\n{line}\n", encoding="utf-8")
    with pytest.raises(FilelistError, match=rf"bad\.txt:3: .*{message}"):
        read_filelist(filelist)
    errors = []
    assert len(read_filelist(filelist, errors=errors)) == 1
    assert len(errors) == 1 and errors[0][0].endswith("bad.txt:3")


def test_missing_filelist_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="filelist not found"):
        read_filelist(tmp_path / "nope.txt")


# ------------------------------------------------------------------------------------------ dataset


def test_items_match_mel_of_trimmed_wav(dataset, lj_wavs, tiny_hps):
    assert len(dataset) == 4
    for i, path in enumerate(lj_wavs):
        item = dataset[i]
        wav, sr = sf.read(str(path), dtype="float32")
        frames = len(wav) // HOP
        assert dataset.lengths[i] == frames
        assert item["mel"].shape == (80, frames) and item["wav"].shape == (1, frames * HOP)
        torch.testing.assert_close(item["wav"][0], torch.from_numpy(wav[: frames * HOP]))
        expected = mel_from_config(torch.from_numpy(wav[: frames * HOP]).unsqueeze(0), tiny_hps.data)[0]
        torch.testing.assert_close(item["mel"], expected)
        ids = item["text"]
        assert torch.all(ids[0::2] == text.BLANK_ID) and torch.all(ids[1::2] != text.BLANK_ID)  # add_blank
        assert item["path"] == str(path.resolve()) and item["speaker"] == 0 and item["durations"] is None


def test_raw_metadata_is_cleaned_on_the_fly_like_the_phonemized_filelist(dataset, lj_metadata, tiny_hps):
    raw = TextMelLoader(lj_metadata, tiny_hps)
    assert [seq for _, seq in raw.items] == [seq for _, seq in dataset.items]


def test_collate_pads_mel_with_silence_and_the_rest_with_zeros_keeping_items_intact(dataset):
    items = [dataset[i] for i in (1, 0, 3)]
    batch = TextMelCollate()(items)
    assert batch["mel_lengths"].tolist() == [it["mel"].size(1) for it in items]
    assert batch["text_lengths"].tolist() == [it["text"].numel() for it in items]
    assert batch["wav_lengths"].tolist() == [it["wav"].size(1) for it in items]
    assert torch.equal(batch["wav_lengths"], batch["mel_lengths"] * HOP)
    t_mel, t_text = int(batch["mel_lengths"].max()), int(batch["text_lengths"].max())
    assert int(batch["mel_lengths"].min()) < t_mel  # some item is padded: the padding checks are not vacuous
    assert batch["mel"].shape == (3, 80, t_mel) and batch["text"].shape == (3, t_text)
    assert batch["wav"].shape == (3, 1, t_mel * HOP)
    assert batch["text"].dtype == torch.long and batch["mel"].dtype == torch.float32
    for i, it in enumerate(items):
        n_mel, n_text, n_wav = it["mel"].size(1), it["text"].numel(), it["wav"].size(1)
        assert torch.equal(batch["mel"][i, :, :n_mel], it["mel"])
        assert torch.equal(batch["text"][i, :n_text], it["text"])
        assert torch.equal(batch["wav"][i, :, :n_wav], it["wav"])
        # Mel padding is the log-mel of silence (log 1e-5), not 0, which would be a loud frame.
        assert torch.all(batch["mel"][i, :, n_mel:] == LOG_MEL_FLOOR) and torch.all(batch["text"][i, n_text:] == 0)
        assert torch.all(batch["wav"][i, :, n_wav:] == 0)
    assert batch["speakers"].tolist() == [0, 0, 0] and batch["durations"] is None
    assert batch["paths"] == [it["path"] for it in items]


def test_dataloader_with_bucket_sampler_gives_padded_batches(dataset):
    sampler = DistributedBucketSampler(dataset, 2, [100, 500, 1000], num_replicas=1, rank=0, seed=3)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=TextMelCollate())
    seen = []
    for batch in loader:
        assert batch["mel"].size(2) == int(batch["mel_lengths"].max())
        for i, length in enumerate(batch["mel_lengths"].tolist()):
            assert torch.all(batch["mel"][i, :, length:] == LOG_MEL_FLOOR)
        seen += batch["paths"]
    assert set(seen) == set(dataset.paths)


def test_mel_cache_is_written_and_reused(tmp_path, lj_filelist, tiny_hps):
    tiny_hps = tiny_hps.replace(cache_dir=str(tmp_path / "cache"))
    ds = TextMelLoader(lj_filelist, tiny_hps)
    first = ds[1]["mel"]
    files = list((tmp_path / "cache").rglob("*.npy"))
    assert len(files) == 1 and "LJ001-0002" in files[0].name
    np.save(files[0], np.full(first.shape, 7.0, dtype=np.float32))  # prove the second read uses the cache
    assert torch.all(ds[1]["mel"] == 7.0)


def test_external_durations_are_loaded_and_checked(tmp_path, lj_filelist, tiny_hps, dataset, caplog):
    n_text, frames = dataset[1]["text"].numel(), dataset.lengths[1]
    dur = np.zeros(n_text, dtype=np.int64)
    dur[1::2] = frames // (n_text // 2)
    dur[1] += frames - dur.sum()
    np.save(tmp_path / "LJ001-0002.npy", dur)
    np.save(tmp_path / "LJ001-0003.npy", np.ones(5, dtype=np.int64))  # wrong token count
    n_text4, frames4 = dataset[3]["text"].numel(), dataset.lengths[3]
    gross = np.zeros(n_text4, dtype=np.int64)
    gross[1] = int(frames4 * 1.2)  # 20 % too long: durations of another clip or config
    np.save(tmp_path / "LJ001-0004.npy", gross)
    tiny_hps = tiny_hps.replace(durations_dir=str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="data_utils"):
        ds = TextMelLoader(lj_filelist, tiny_hps)
    assert [p.rsplit("/", 1)[-1] for p in ds.paths] == ["LJ001-0002.wav"]  # the others are reported
    assert "LJ001-0001.npy is missing" in caplog.text and "LJ001-0003.npy has 5 entries" in caplog.text
    assert f"LJ001-0004.npy sums to {int(frames4 * 1.2)} frames but the clip has {frames4}" in caplog.text
    assert ds[0]["durations"].tolist() == dur.tolist()
    batch = TextMelCollate()([ds[0], ds[0]])
    assert batch["durations"].shape == batch["text"].shape and int(batch["durations"][0].sum()) == frames


def test_durations_a_few_frames_off_load_and_train(tmp_path, lj_filelist, tiny_hps, dataset):
    """Aligners often round a frame or two differently from our mel framing: such clips are kept, load
    without error mid-epoch, and the model reconciles the durations to the mel length."""
    n_text, frames = dataset[1]["text"].numel(), dataset.lengths[1]
    dur = np.zeros(n_text, dtype=np.int64)
    dur[1::2] = frames // (n_text // 2)
    dur[1] += frames - dur.sum() + 2  # two frames more than the mel has
    np.save(tmp_path / "LJ001-0002.npy", dur)
    tiny_hps = tiny_hps.replace(durations_dir=str(tmp_path))
    ds = TextMelLoader(lj_filelist, tiny_hps)
    assert [p.rsplit("/", 1)[-1] for p in ds.paths] == ["LJ001-0002.wav"]
    plus_two = ds[0]
    assert plus_two["durations"].tolist() == dur.tolist() and int(plus_two["durations"].sum()) == frames + 2
    minus_one = dict(plus_two, durations=plus_two["durations"].clone())
    minus_one["durations"][1] -= 3  # one frame fewer than the mel has
    batch = TextMelCollate()([plus_two, minus_one])
    torch.manual_seed(0)
    model = FlowMatchingTTS(len(text.symbols), tiny_hps)
    out = model(batch["text"], batch["text_lengths"], batch["mel"], batch["mel_lengths"],
                durations=batch["durations"])
    assert out["durations"].sum(1).tolist() == [frames, frames]
    assert all(torch.isfinite(out[k]) for k in ("loss_flow", "loss_dur", "loss_prior"))


def test_stereo_is_mixed_and_other_rates_resampled_or_refused(tmp_path, lj_wavs, tiny_hps):
    wav, sr = sf.read(str(lj_wavs[1]), dtype="float32")
    sf.write(tmp_path / "stereo.wav", np.stack([wav, 0.5 * wav], axis=1), sr, subtype="FLOAT")
    sf.write(tmp_path / "rate11k.wav", wav[::2], 11025, subtype="FLOAT")
    filelist = tmp_path / "list.txt"
    filelist.write_text("stereo.wav|a\nrate11k.wav|b\n", encoding="utf-8")
    tiny_hps = tiny_hps.replace(cleaned_text=True)
    ds = TextMelLoader(filelist, tiny_hps)
    torch.testing.assert_close(ds[0]["wav"][0], torch.from_numpy(0.75 * wav[: len(wav) // HOP * HOP]))
    assert ds[1]["mel"].size(1) == ds.lengths[1] == len(wav[::2]) * 2 // HOP
    tiny_hps = tiny_hps.replace(resample=False)
    with pytest.raises(AudioError, match="11025 Hz.*data.resample"):
        TextMelLoader(filelist, tiny_hps)


def test_unusable_clips_are_skipped_and_reported(tmp_path, lj_wavs, tiny_hps, caplog):
    (tmp_path / "garbage.wav").write_bytes(b"not audio at all")
    sf.write(tmp_path / "short.wav", np.zeros(1000, dtype=np.float32), 22050)
    filelist = tmp_path / "list.txt"
    filelist.write_text(f"{lj_wavs[1]}|fine\nmissing.wav|a\ngarbage.wav|b\nshort.wav|c\n{lj_wavs[2]}|...\n",
                        encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="data_utils"):
        ds = TextMelLoader(filelist, tiny_hps)
    assert ds.paths == [str(lj_wavs[1].resolve())]
    log = caplog.text
    assert "skipped 4 of 5" in log and "file not found" in log and "unreadable" in log
    assert "outside data.min/max_audio_seconds" in log and "nothing to speak" in log


# ------------------------------------------------------------------------------------------ sampler


class Lengths:
    def __init__(self, lengths):
        self.lengths = lengths
        self.paths = [f"clip{i}.wav" for i in range(len(lengths))]

    def __len__(self):
        return len(self.lengths)


def test_every_rank_gets_the_same_number_of_batches_and_all_clips_are_used():
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(50, 900, (97,), generator=gen).tolist()
    data = Lengths(lengths)
    boundaries = [0, 100, 200, 400, 1000]
    per_rank = [list(DistributedBucketSampler(data, 4, boundaries, num_replicas=3, rank=r, seed=1)) for r in range(3)]
    assert len({len(b) for b in per_rank}) == 1
    assert all(len(b) == len(DistributedBucketSampler(data, 4, boundaries, num_replicas=3, rank=0)) for b in per_rank)
    used = {i for batches in per_rank for batch in batches for i in batch}
    assert used == set(range(97))
    for batches in per_rank:
        for batch in batches:
            assert len(batch) == 4
            buckets = {int(np.searchsorted(boundaries, lengths[i], side="left")) for i in batch}
            assert len(buckets) == 1  # one bucket per batch: similar lengths


def test_empty_buckets_and_out_of_range_clips_are_reported_not_fatal(caplog):
    data = Lengths([150, 160, 170, 5000, 10])
    with caplog.at_level(logging.WARNING, logger="data_utils"):
        sampler = DistributedBucketSampler(data, 2, [32, 100, 200, 300, 1000], num_replicas=1, rank=0)
    batches = list(sampler)
    assert sorted({i for b in batches for i in b}) == [0, 1, 2]
    assert "2 of 5 clips are outside" in caplog.text and "clip3.wav (5000 frames)" in caplog.text
    with pytest.raises(ValueError, match="no clip length falls inside"):
        DistributedBucketSampler(data, 2, [2000, 3000], num_replicas=1, rank=0)


def test_set_epoch_reshuffles_deterministically():
    data = Lengths(list(range(100, 300)))
    sampler = DistributedBucketSampler(data, 8, [99, 200, 300], num_replicas=2, rank=1, seed=5)
    first = list(sampler)
    assert list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first
    other = DistributedBucketSampler(data, 8, [99, 200, 300], num_replicas=2, rank=1, seed=5)
    other.set_epoch(1)
    assert list(other) == list(sampler)
    ordered = list(DistributedBucketSampler(data, 8, [99, 200, 300], num_replicas=1, rank=0, shuffle=False))
    assert ordered[0] == list(range(8))


def test_frame_budget_batching_respects_the_budget():
    lengths = [100] * 20 + [700] * 6
    sampler = DistributedBucketSampler(Lengths(lengths), 4, [0, 200, 800], num_replicas=1, rank=0,
                                       max_frames_per_batch=1500)
    for batch in sampler:
        assert len(batch) * max(lengths[i] for i in batch) <= 1500
    sizes = sorted({len(b) for b in sampler})
    assert sizes == [2, 15]


def test_length_boundaries_cover_every_clip():
    lengths = [37, 50, 90, 91, 200, 640, 641, 1200]
    bounds = length_boundaries(lengths, num_buckets=3)
    assert bounds[0] < min(lengths) and bounds[-1] == max(lengths)
    sampler = DistributedBucketSampler(Lengths(lengths), 2, bounds, num_replicas=1, rank=0)
    assert {i for b in sampler for i in b} == set(range(len(lengths)))
