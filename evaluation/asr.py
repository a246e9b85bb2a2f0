"""Offline English speech recognition with pocketsphinx, as a coarse intelligibility metric.

    asr = Transcriber()                          # loads the bundled en-us model once (~0.5 s)
    text = asr.transcribe(wav, sample_rate)      # any rate, float or int16 -> lowercase words

The pocketsphinx wheel ships its US English acoustic model, dictionary and language model, so
nothing is downloaded. Its word error on clean read speech is far from modern recognisers (about
0.2 on LJ Speech), which is why evaluate.py also scores the reference audio: compare a model's WER
with that ceiling, not with zero.
"""
from __future__ import annotations

import re

import numpy as np
import soxr

ASR_SAMPLE_RATE = 16000
_VARIANT_RE = re.compile(r"\(\d+\)$")  # dictionary pronunciation variants: "read(2)"


class Transcriber:
    """A pocketsphinx decoder created once and reused for every utterance.

    Each utterance is decoded independently: the feature front end (including the cepstral-mean
    estimate that pocketsphinx otherwise carries over from one utterance to the next) is reset
    first, so a clip's transcript does not depend on what was decoded before it.
    """

    def __init__(self):
        try:
            import pocketsphinx
        except ImportError as e:  # pragma: no cover - it is in requirements.txt
            raise ImportError("pocketsphinx is not installed; run `pip install pocketsphinx` "
                              "(the wheel includes the offline en-us model)") from e
        self._decoder = pocketsphinx.Decoder(loglevel="FATAL")

    @staticmethod
    def to_pcm16(wav: np.ndarray, sample_rate: int) -> np.ndarray:
        """(T,) or (T, C) float in [-1, 1] or int16 at `sample_rate` -> (T16,) int16 at 16 kHz, mono."""
        wav = np.asarray(wav)
        if wav.ndim == 2:
            wav = wav.mean(axis=1) if wav.dtype.kind == "f" else wav.astype(np.float32).mean(axis=1)
        if wav.ndim != 1:
            raise ValueError(f"expected a mono (T,) or (T, C) waveform, got shape {wav.shape}")
        if wav.dtype == np.int16:
            wav = wav.astype(np.float32) / 32768.0
        elif wav.dtype.kind != "f":
            raise ValueError(f"waveform must be float in [-1, 1] or int16, got dtype {wav.dtype}")
        if not np.all(np.isfinite(wav)):
            raise ValueError("waveform holds NaN or infinite samples")
        if int(sample_rate) <= 0:
            raise ValueError(f"sample rate must be positive, got {sample_rate}")
        wav = wav.astype(np.float32)
        if sample_rate != ASR_SAMPLE_RATE:
            wav = soxr.resample(wav, int(sample_rate), ASR_SAMPLE_RATE, quality="HQ")
        return (np.clip(wav, -1.0, 1.0) * 32767.0).astype(np.int16)

    def transcribe(self, wav: np.ndarray, sample_rate: int) -> str:
        """Recognised words, lowercase and space-separated ('' when nothing was recognised)."""
        pcm = self.to_pcm16(wav, sample_rate)
        if pcm.size < ASR_SAMPLE_RATE // 10:  # under 0.1 s: nothing to recognise
            return ""
        dec = self._decoder
        dec.reinit_feat()  # forget the previous utterance's cepstral mean (order independence)
        dec.start_utt()
        dec.process_raw(pcm.tobytes(), no_search=False, full_utt=True)
        dec.end_utt()
        hyp = dec.hyp()
        if hyp is None:
            return ""
        # Fillers such as <sil> or [noise] are not words.
        words = [_VARIANT_RE.sub("", w) for w in hyp.hypstr.split() if not w.startswith(("<", "["))]
        return " ".join(words).lower()
