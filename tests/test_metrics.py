"""metrics.py (WER with normalisation, MCD-DTW, duration ratio) and asr.py on real LJ Speech clips."""
from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import soxr

from evaluation import metrics
from evaluation.metrics import (clip_word_errors, corpus_wer, log_duration_ratio, mcd_dtw, normalize_for_wer, spell_out, wer,
                     wer_difference_interval)

# ------------------------------------------------------------------------------------------ WER


def test_wer_identical_texts_is_zero():
    assert wer("The cat sat on the mat.", "the cat sat on the mat") == 0.0


def test_wer_counts_known_edits():
    assert wer("one two three four", "one two tree four") == 0.25  # 1 substitution / 4 words
    assert wer("one two three four", "one three four") == 0.25  # 1 deletion
    assert wer("one two", "one two three") == 0.5  # 1 insertion / 2 words
    assert wer("one two three four", "") == 1.0  # nothing recognised: all deleted
    assert wer("a b", "c d e f") == 2.0  # insertions can push WER above 1


def test_wer_ignores_case_and_punctuation_but_not_words():
    assert wer('"Hello, World!" she said; yes?', "hello world she said yes") == 0.0
    assert wer("Hello, World! How are", "hello world who are") == 0.25


def test_normalisation_spells_out_numbers_dates_money_titles():
    ref = "Mrs. Reed paid $12.50 on May 3, 1987, at 7:45 for the 21st time: 40% more!"
    assert normalize_for_wer(ref) == ("missus reed paid twelve dollars and fifty cents on may third nineteen "
                                      "eighty seven at seven forty five for the twenty first time forty percent more")
    # the recogniser's spellings of the same words score as correct
    assert wer(ref, "mrs reed paid twelve dollars and fifty cents on may third nineteen eighty seven at "
                    "seven forty five for the twenty first time forty percent more") == 0.0
    assert wer("The neighbours' theatre is 5 metres away.", "the neighbors theater is five meters away") == 0.0


def test_spell_out_keeps_case_and_punctuation():
    assert spell_out("Dr. Cole owes $3 million, doesn't he?") == "Doctor Cole owes three million dollars, doesn't he?"
    assert spell_out("It was 4,382 books.") == "It was four thousand three hundred eighty-two books."


def test_wer_rejects_empty_reference():
    with pytest.raises(ValueError, match="no words"):
        wer(" ... ", "hello")


def test_clip_word_errors_count_edits_and_words_per_clip():
    assert clip_word_errors(["the cat sat on the mat", "a b"], ["the cat sad on mat today", "a b"]) == ([3, 0], [6, 2])


def test_wer_difference_interval_is_paired_over_clips():
    words = [10] * 40
    same = wer_difference_interval([2] * 40, [2] * 40, words)
    assert same == {"difference": 0.0, "low": 0.0, "high": 0.0}
    # one more error on every clip: 0.1 worse, and no resample can say otherwise
    worse = wer_difference_interval([3, 1] * 20, [2, 0] * 20, words)
    assert worse["difference"] == pytest.approx(0.1) and worse["low"] == pytest.approx(0.1)
    # errors traded between clips: the same total, an interval around 0
    traded = wer_difference_interval([2, 0] * 20, [0, 2] * 20, words)
    assert traded["difference"] == 0.0 and traded["low"] < 0 < traded["high"]
    with pytest.raises(ValueError, match="same non-zero number"):
        wer_difference_interval([1], [1, 2], [5, 5])


def test_corpus_wer_weights_by_reference_words():
    assert corpus_wer(["a b c d", "e f"], ["a x c d", "e f"]) == pytest.approx(1 / 6)
    with pytest.raises(ValueError):
        corpus_wer(["a"], [])


# ------------------------------------------------------------------------------------------ MCD / duration


@pytest.fixture(scope="module")
def clips(lj_wavs):
    """Two real clips (float32, 22050 Hz)."""
    out = []
    for path in lj_wavs[1:3]:
        wav, sr = sf.read(str(path), dtype="float32")
        assert sr == 22050
        out.append(wav)
    return out


def test_mcd_of_a_clip_against_itself_is_zero(clips):
    a, _ = clips
    assert mcd_dtw(a, 22050, a, 22050) == pytest.approx(0.0, abs=1e-6)


def test_mcd_ignores_added_silence_and_survives_resampling(clips):
    a, b = clips
    padded = np.concatenate([np.zeros(8000, np.float32), a, np.zeros(3000, np.float32)])
    # silence is trimmed; what is left is a copy shifted by a fraction of a hop (measured ~0.5 dB)
    shifted = mcd_dtw(a, 22050, padded, 22050)
    same_16k = mcd_dtw(a, 22050, soxr.resample(a, 22050, 16000), 16000)  # compared below 8 kHz
    different = mcd_dtw(a, 22050, b, 22050)  # another sentence, same speaker (measured ~5.5 dB)
    assert shifted < 1.0 and same_16k < 1.0
    assert different > 4.0 and different > 4 * max(shifted, same_16k)
    assert mcd_dtw(a, 22050, 0.5 * a, 22050) < 0.1  # gain changes only c0, which is excluded


def test_mcd_rejects_silence(clips):
    with pytest.raises(ValueError, match="silent"):
        mcd_dtw(clips[0], 22050, np.zeros(22050, np.float32), 22050)


def test_mel_cepstrum_shape(clips):
    c = metrics.mel_cepstrum(clips[0], 22050, n_coeffs=13)
    assert c.shape == (13, 1 + len(clips[0]) // 256)


def test_duration_ratio(clips):
    assert log_duration_ratio(2.0, 1.0) == pytest.approx(math.log(2.0))
    assert log_duration_ratio(1.5, 1.5) == 0.0
    with pytest.raises(ValueError):
        log_duration_ratio(0.0, 1.0)
    a = clips[0]
    padded = np.concatenate([np.zeros(11025, np.float32), a, np.zeros(11025, np.float32)])
    assert metrics.speech_seconds(padded, 22050) == pytest.approx(metrics.speech_seconds(a, 22050), abs=0.03)
    assert metrics.speech_seconds(a, 22050) <= len(a) / 22050


# ------------------------------------------------------------------------------------------ ASR


@pytest.fixture(scope="module")
def asr():
    from evaluation.asr import Transcriber
    return Transcriber()


def test_asr_transcribes_real_speech(asr, lj_wavs, lj_metadata):
    texts = dict(line.split("|")[0::2] for line in lj_metadata.read_text().splitlines())
    wav, sr = sf.read(str(lj_wavs[0]), dtype="float32")
    hyp = asr.transcribe(wav, sr)
    # 25 words; pocketsphinx gives "resulting in ... we are at present concerns ..." (2 errors)
    assert wer(texts["LJ001-0001"], hyp) <= 0.25, hyp
    wav2, sr2 = sf.read(str(lj_wavs[1]), dtype="float32")  # "in being comparatively modern."
    hyp2 = asr.transcribe(wav2, sr2)
    assert "comparatively" in hyp2.split(), hyp2  # measured: "him being comparatively mater"
    assert wer(texts["LJ001-0002"], hyp2) <= 0.5, hyp2


def test_asr_is_order_independent_and_rate_agnostic(asr, lj_wavs):
    """A clip's transcript must not depend on what was decoded before, nor on its sample rate / dtype."""
    short, _ = sf.read(str(lj_wavs[1]), dtype="float32")
    other, _ = sf.read(str(lj_wavs[3]), dtype="float32")
    first = asr.transcribe(short, 22050)
    asr.transcribe(other, 22050)
    assert asr.transcribe(short, 22050) == first
    as_int16 = (short * 32767).astype(np.int16)
    assert asr.transcribe(as_int16, 22050) == first
    at_16k = soxr.resample(short, 22050, 16000, quality="HQ")
    assert asr.transcribe(at_16k, 16000) == first


def test_asr_silence_and_bad_input(asr):
    assert asr.transcribe(np.zeros(1000, np.float32), 22050) == ""
    with pytest.raises(ValueError, match="NaN"):
        asr.transcribe(np.full(22050, np.nan, np.float32), 22050)
    with pytest.raises(ValueError, match="mono"):
        asr.transcribe(np.zeros((2, 2, 2), np.float32), 22050)


def test_frame_rate_lock_tells_a_frame_periodic_buzz_from_speech(clips):
    """A pulse train repeating every hop (what a frame-locked vocoder makes of a steady vowel) scores
    high; the same pulses at a real pitch (103 Hz) and a real recording score near 0."""
    sr, hop = 22050, 256
    locked = np.zeros(sr)
    locked[::hop] = 1.0
    pitched = np.zeros(sr)
    pitched[np.round(np.arange(0, sr, sr / 103.0)).astype(int)[:-1]] = 1.0
    assert metrics.frame_rate_lock(locked, sr, hop) > 5
    assert abs(metrics.frame_rate_lock(pitched, sr, hop)) < 1
    assert all(abs(metrics.frame_rate_lock(wav, sr, hop)) < 1 for wav in clips)
    with pytest.raises(ValueError, match="at least 1024 samples"):
        metrics.frame_rate_lock(locked[:100], sr, hop)


def test_loud_band_log_mel_error_finds_where_energy_is_lost(clips):
    """A real clip against itself: 0 in every band; at half amplitude: log(1/2) in every band (magnitude mels);
    low-passed at 1 kHz: the lowest quarter (41-822 Hz) intact, the upper quarters (from 863 Hz) far below."""
    import scipy.signal
    import torch

    from mel_processing import mel_spectrogram

    def log_mel(wav):
        return mel_spectrogram(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)).unsqueeze(0),
                               1024, 80, 22050, 256, 1024, 0.0, None)[0].numpy()

    wav = clips[0]
    ref = log_mel(wav)
    assert metrics.loud_band_log_mel_error(ref, ref) == [0.0] * 4
    halved = metrics.loud_band_log_mel_error(ref, log_mel(0.5 * wav))
    assert np.allclose(halved, math.log(0.5), atol=0.05)
    low_passed = scipy.signal.sosfiltfilt(scipy.signal.butter(8, 1000, fs=22050, output="sos"), wav)
    low, *upper = metrics.loud_band_log_mel_error(ref, log_mel(low_passed))
    assert abs(low) < 0.1 and all(e < -1 for e in upper)


def test_dnsmos_hears_noise_that_leaves_the_words_alone(lj_wavs):
    """DNSMOS (speechmos's ONNX models, offline): a real recording scores above itself with noise added."""
    from audio import read_audio
    from evaluation.naturalness import dnsmos

    clip = read_audio(lj_wavs[0])
    noisy = clip.wav + np.random.default_rng(0).normal(0, 0.05, len(clip.wav)).astype(np.float32)
    clean, dirty = dnsmos(clip.wav, clip.sampling_rate), dnsmos(noisy, clip.sampling_rate)
    assert set(clean) == {"p808", "ovrl", "sig", "bak"} and all(1 <= v <= 5 for v in clean.values())
    assert clean["p808"] > dirty["p808"] + 0.3 and clean["bak"] > dirty["bak"] + 0.5, (clean, dirty)
