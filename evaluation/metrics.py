"""Objective metrics for synthesized speech: word error rate, mel-cepstral distortion, duration ratio.

    wer("The cat sat.", "the cat sat")                  -> 0.0   (text normalised first)
    mcd_dtw(ref_wav, 22050, syn_wav, 22050)              -> dB, frames aligned with DTW
    log_duration_ratio(syn_seconds, ref_seconds)         -> log(syn / ref)

Text normalisation (`normalize_for_wer`) is applied to reference and hypothesis alike: numbers,
money, dates and times are spelled out with the TTS front end's own expansion (text.numbers), so
"$5" in a reference matches the recogniser's "five dollars"; then case, punctuation, hyphens,
title abbreviations and British/American spelling are made uniform.
"""
from __future__ import annotations

import math
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

import jiwer
import librosa
import numpy as np
import scipy.fft
import soxr

from text.numbers import normalize_numbers

# ----------------------------------------------------------------------------------------------------
# Text normalisation and WER
# ----------------------------------------------------------------------------------------------------

# Spoken forms of titles. Used both for the synthesiser's input text (build_corpus.py) and for
# scoring, where the recogniser may write either the abbreviation or the word.
TITLE_WORDS = {"mr": "mister", "mrs": "missus", "dr": "doctor"}
_TITLE_RE = re.compile(r"\b(Mr|Mrs|Dr|mr|mrs|dr|MR|MRS|DR)\.")
# The recogniser's dictionary and language model are American; references may be British.
SPELLING = {
    "neighbour": "neighbor", "neighbours": "neighbors", "neighbourhood": "neighborhood",
    "metre": "meter", "metres": "meters", "kilometre": "kilometer", "kilometres": "kilometers",
    "theatre": "theater", "centre": "center", "colour": "color", "colours": "colors",
    "harbour": "harbor", "honour": "honor", "favourite": "favorite", "marvellous": "marvelous",
    "apologised": "apologized", "organised": "organized", "realised": "realized",
    "tyres": "tires", "tyre": "tire", "grey": "gray", "travelling": "traveling",
    "cancelled": "canceled", "jewellery": "jewelry", "programme": "program", "cheque": "check",
}
_KEEP_RE = re.compile(r"[^a-z0-9' ]+")  # everything else becomes a word break
_MONTHS = "January February March April May June July August September October November December"
# "March 14" is read "March fourteenth": mark the day as an ordinal before numbers are spelled out.
_DATE_RE = re.compile(rf"\b({'|'.join(_MONTHS.split())})\s+(\d{{1,2}})(?!\d|st|nd|rd|th|:\d)\b")


def _ordinal_suffix(n: int) -> str:
    return "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def spell_out(text: str) -> str:
    """Spoken form of a written sentence, keeping case and punctuation.

    Numbers, money, percentages, ordinals, clock times and years become words (text.numbers, the
    same expansion the TTS front end uses), the day after a month name is read as an ordinal
    ("May 3" -> "May third") and Mr./Mrs./Dr. become mister/missus/doctor. This is the text a
    synthesiser should read and what LJSpeech's normalised column holds.
    """
    text = _DATE_RE.sub(lambda m: f"{m.group(1)} {m.group(2)}{_ordinal_suffix(int(m.group(2)))}", text)
    text = _TITLE_RE.sub(lambda m: TITLE_WORDS[m.group(1).lower()].capitalize()
                         if m.group(1)[0].isupper() else TITLE_WORDS[m.group(1).lower()], text)
    return normalize_numbers(text)


def normalize_for_wer(text: str) -> str:
    """Lowercase words only: numbers spelled out, punctuation and hyphens removed, spelling unified."""
    text = spell_out(text).lower().replace("’", "'")
    text = _KEEP_RE.sub(" ", text)
    words = []
    for word in text.split():
        word = word.strip("'")  # quotes, not contractions
        if not word:
            continue
        word = TITLE_WORDS.get(word, word)  # a recogniser may write "mrs" for "missus"
        words.append(SPELLING.get(word, word))
    return " ".join(words)


def wer_counts(reference: str, hypothesis: str) -> Dict[str, int]:
    """Edit counts after normalisation: substitutions, deletions, insertions, hits, ref_words."""
    ref, hyp = normalize_for_wer(reference), normalize_for_wer(hypothesis)
    if not ref:
        raise ValueError(f"reference {reference!r} has no words after normalisation; WER is undefined")
    if not hyp:  # jiwer refuses empty strings; everything was deleted
        n = len(ref.split())
        return {"substitutions": 0, "deletions": n, "insertions": 0, "hits": 0, "ref_words": n}
    out = jiwer.process_words(ref, hyp)
    return {"substitutions": out.substitutions, "deletions": out.deletions, "insertions": out.insertions,
            "hits": out.hits, "ref_words": out.substitutions + out.deletions + out.hits}


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate (S + D + I) / N of one utterance after `normalize_for_wer`."""
    c = wer_counts(reference, hypothesis)
    return (c["substitutions"] + c["deletions"] + c["insertions"]) / c["ref_words"]


def clip_word_errors(references: Sequence[str], hypotheses: Sequence[str]) -> Tuple[List[int], List[int]]:
    """Per utterance: (S + D + I, reference words) after `normalize_for_wer`, as two lists."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    counts = [wer_counts(r, h) for r, h in zip(references, hypotheses)]
    return ([c["substitutions"] + c["deletions"] + c["insertions"] for c in counts],
            [c["ref_words"] for c in counts])


def wer_difference_interval(errors_a: Sequence[int], errors_b: Sequence[int], words: Sequence[int],
                            resamples: int = 2000, level: float = 0.95, seed: int = 0) -> Dict[str, float]:
    """Corpus WER of path a minus path b on the same clips, with a paired bootstrap interval over clips.

    errors_a / errors_b: word errors per clip of the two paths; words: reference words per clip. Clips are
    resampled with replacement, both paths together, so what the clips share (hard sentences) cancels.
    Returns {"difference", "low", "high"}: an interval that excludes 0 says the paths differ on such clips.
    """
    a, b, n = (np.asarray(x, dtype=np.float64) for x in (errors_a, errors_b, words))
    if not (len(a) == len(b) == len(n)) or len(n) == 0:
        raise ValueError(f"need the same non-zero number of clips: {len(a)}, {len(b)}, {len(n)}")
    picks = np.random.default_rng(seed).integers(0, len(n), size=(resamples, len(n)))
    diffs = (a[picks].sum(1) - b[picks].sum(1)) / n[picks].sum(1)
    tail = (1.0 - level) / 2 * 100
    return {"difference": float((a.sum() - b.sum()) / n.sum()),
            "low": float(np.percentile(diffs, tail)), "high": float(np.percentile(diffs, 100 - tail))}


def corpus_wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER: total errors over total reference words (long utterances weigh more)."""
    errors, words = clip_word_errors(references, hypotheses)
    if not words:
        raise ValueError("no utterances to score")
    return sum(errors) / sum(words)


# ----------------------------------------------------------------------------------------------------
# Mel-cepstral distortion
# ----------------------------------------------------------------------------------------------------

MCD_SAMPLE_RATE = 22050
MCD_CONST = 10.0 * math.sqrt(2.0) / math.log(10.0)  # dB per unit of Euclidean cepstral distance
# Mel power floor, about the level of 16-bit quantisation noise: digital silence and LSB noise
# count as the same thing, and log(0) never happens.
MEL_POWER_FLOOR = 1e-8


def trim_silence(wav: np.ndarray, top_db: float = 40.0) -> np.ndarray:
    """Drop leading/trailing audio quieter than `top_db` below the clip's peak (all of it if silent)."""
    wav = np.asarray(wav, dtype=np.float32)
    if wav.size == 0 or not np.any(wav):
        return wav[:0]
    trimmed, _ = librosa.effects.trim(wav, top_db=top_db, frame_length=1024, hop_length=256)
    return trimmed


def mel_cepstrum(wav: np.ndarray, sample_rate: int, n_coeffs: int = 24, n_mels: int = 80,
                 fmax: Optional[float] = None) -> np.ndarray:
    """Mel-frequency cepstrum (n_coeffs, T) of a waveform, c0 (energy) excluded.

    wav: (T_wav,) float at any rate, analysed at 22050 Hz (n_fft 1024, hop 256) with `n_mels` mel
    bands from 0 to `fmax` (default: the clip's own Nyquist frequency). The cepstrum is the cosine
    series of the natural-log mel amplitude, log|H(w)| = c0 + 2 sum_m c_m cos(m w), so that
    MCD_CONST * ||delta c|| is the usual mel-cepstral distortion in dB. It approximates SPTK
    mel-cepstra (no all-pass warping): compare values with each other, not with published ones.
    """
    wav = np.asarray(wav, dtype=np.float32)
    if fmax is None:
        fmax = sample_rate / 2.0
    if sample_rate != MCD_SAMPLE_RATE:
        wav = soxr.resample(wav, sample_rate, MCD_SAMPLE_RATE)
    power = librosa.feature.melspectrogram(y=wav, sr=MCD_SAMPLE_RATE, n_fft=1024, hop_length=256,
                                           win_length=1024, n_mels=n_mels, fmin=0.0,
                                           fmax=min(fmax, MCD_SAMPLE_RATE / 2.0), power=2.0)
    log_amp = 0.5 * np.log(np.maximum(power, MEL_POWER_FLOOR))
    # unnormalised DCT-II: y_m = 2 sum_n x_n cos(pi m (2n+1) / 2N), so c_m = y_m / 2N
    return scipy.fft.dct(log_amp, type=2, axis=0)[1:n_coeffs + 1] / (2.0 * n_mels)


def mcd_dtw(ref_wav: np.ndarray, ref_rate: int, syn_wav: np.ndarray, syn_rate: int,
            n_coeffs: int = 24, trim: bool = True) -> float:
    """Mel-cepstral distortion in dB between two clips, frames paired by dynamic time warping.

    ref_wav, syn_wav: (T,) float waveforms at their own rates; both are analysed up to the lower
    of the two Nyquist frequencies, so a 16 kHz clip is not penalised for its missing top band.
    Leading/trailing silence is trimmed first (trim=True) so that padding does not count.
    Returns the mean over the DTW path of MCD_CONST * ||c_ref - c_syn||; 0 for identical clips.
    """
    if trim:
        ref_wav, syn_wav = trim_silence(ref_wav), trim_silence(syn_wav)
    if len(ref_wav) == 0 or len(syn_wav) == 0:
        raise ValueError("cannot compute MCD: a clip is empty or silent")
    fmax = min(ref_rate, syn_rate) / 2.0
    c_ref = mel_cepstrum(ref_wav, ref_rate, n_coeffs, fmax=fmax).astype(np.float64)
    c_syn = mel_cepstrum(syn_wav, syn_rate, n_coeffs, fmax=fmax).astype(np.float64)
    _, path = librosa.sequence.dtw(X=c_ref, Y=c_syn, metric="euclidean")
    dist = np.linalg.norm(c_ref[:, path[:, 0]] - c_syn[:, path[:, 1]], axis=0)
    return float(MCD_CONST * dist.mean())


def frame_rate_lock(wav: np.ndarray, sample_rate: int, hop_length: int, fmin: float = 500.0,
                    fmax: float = 1200.0) -> float:
    """How much a waveform repeats itself every mel frame: log of the mean power at the multiples of
    sample_rate / hop_length (86 Hz at 22050 / 256) over the power half-way between them, fmin-fmax Hz.

    A mel-conditioned convolutional vocoder given the same frame twice outputs the same samples twice, so
    for steady sounds its harmonics snap to multiples of the frame rate instead of the voice's pitch
    (a buzz). Speech scores near 0 (recordings here 0.16-0.17); a signal periodic in hop_length scores
    several units (a pulse train: about 14). wav (T,) float; spectra of n_fft = 4 x hop_length, averaged.
    """
    n_fft = 4 * hop_length
    wav = np.asarray(wav, dtype=np.float64)
    if len(wav) < n_fft:
        raise ValueError(f"frame_rate_lock needs at least {n_fft} samples, got {len(wav)}")
    frames = wav[:len(wav) // n_fft * n_fft].reshape(-1, n_fft) * np.hanning(n_fft)
    power = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).mean(0)
    bins = np.arange(len(power))
    band = (bins * sample_rate / n_fft > fmin) & (bins * sample_rate / n_fft < fmax)
    on, between = power[band & (bins % 4 == 0)].mean(), power[band & (bins % 4 == 2)].mean()
    return float(np.log(max(on, 1e-20) / max(between, 1e-20)))


def loud_band_log_mel_error(ref_mel: np.ndarray, out_mel: np.ndarray, bands: int = 4) -> List[float]:
    """Mean signed log-mel error (output minus recording) over the louder half of the recording's frames, per
    band of n_mels / bands mel channels, low to high. ref_mel, out_mel (n_mels, T) natural-log mels (the
    longer is cut to the shorter).

    Where a vocoder loses energy (negative) or adds it: the frame-rate lock shows as a deficit in the low
    bands (harmonics snapped to the frame rate leave the channels between them empty), and an adversarial
    phase that mutes the locked band as a larger one (Griffin-Lim on an LJ Speech clip: +0.20 to -0.04).
    """
    frames = min(ref_mel.shape[1], out_mel.shape[1])
    ref, out = ref_mel[:, :frames], out_mel[:, :frames]
    energy = ref.mean(0)
    loud = energy >= np.median(energy)
    error = (out - ref)[:, loud]
    return [float(part.mean()) for part in np.array_split(error, bands, axis=0)]


# ----------------------------------------------------------------------------------------------------
# Duration
# ----------------------------------------------------------------------------------------------------

def speech_seconds(wav: np.ndarray, sample_rate: int, top_db: float = 40.0) -> float:
    """Duration of a clip without leading/trailing silence."""
    return len(trim_silence(wav, top_db)) / float(sample_rate)


def log_duration_ratio(syn_seconds: float, ref_seconds: float) -> float:
    """log(syn / ref): 0 when equal, +0.1 about 10 % too long, -0.1 about 10 % too short."""
    if syn_seconds <= 0 or ref_seconds <= 0:
        raise ValueError(f"durations must be positive, got synthesized {syn_seconds} s, reference {ref_seconds} s")
    return math.log(syn_seconds / ref_seconds)


def finite_mean(values: Sequence[Union[float, None]]) -> Union[float, None]:
    """Mean of the finite values (None when there are none)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None
