"""Speaker similarity with resemblyzer's voice encoder (its weights ship in the wheel: nothing downloads).

    enc = SpeakerEncoder()
    voice = enc.centroid(["a.wav", "b.wav"])          # unit vector (256,) of a voice's real clips
    enc.similarity(enc.embed_file("gen.wav"), voice)  # cosine in [-1, 1]

An utterance is scored by the cosine between its embedding and the centroid of a voice's real clips
(clips other than the one scored). For orientation, two different voices of the multi-voice corpus sit
around 0.6 and two clips of one voice around 0.85; `progress(sim, same, different)` places a score on
that scale (0 = a different voice, 1 = as close as another recording of the voice).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence, Union

import numpy as np

PathLike = Union[str, Path]


class SpeakerEncoder:
    """resemblyzer.VoiceEncoder on the CPU, loaded once."""

    def __init__(self, device: str = "cpu"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # webrtcvad's pkg_resources deprecation notice
            from resemblyzer import VoiceEncoder, preprocess_wav
        self._preprocess = preprocess_wav
        self._encoder = VoiceEncoder(device, verbose=False)

    def embed(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        """(T,) float waveform -> (256,) unit embedding (resampled to 16 kHz, long silences trimmed)."""
        wav = self._preprocess(np.asarray(wav, dtype=np.float32), source_sr=sample_rate)
        if len(wav) == 0:
            raise ValueError("the clip is silent: no speech to take a voice from")
        return self._encoder.embed_utterance(wav)

    def embed_file(self, path: PathLike) -> np.ndarray:
        from audio import read_audio

        clip = read_audio(path)
        return self.embed(clip.wav, clip.sampling_rate)

    def centroid(self, paths: Sequence[PathLike]) -> np.ndarray:
        """Unit mean embedding of a voice's clips."""
        if not paths:
            raise ValueError("a voice's centroid needs at least one clip")
        return unit(np.mean([self.embed_file(p) for p in paths], axis=0))

    @staticmethod
    def similarity(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.dot(unit(a), unit(b)))


def unit(x: np.ndarray) -> np.ndarray:
    return x / max(float(np.linalg.norm(x)), 1e-12)


def progress(similarity: float, same: float, different: float) -> float:
    """Where `similarity` lies from the different-voice level (0) to the same-voice level (1)."""
    return (similarity - different) / max(same - different, 1e-9)
