"""The synthesizer-independent steps of text -> speech, shared by synthesize.Synthesizer (torch) and
onnx_runtime.OnnxSynthesizer: one inference path.

    audio, sample_rate, info = synthesize_text(tts, "Hello there.", sampling, speaker, seed, with_timings)
    chunks = stream_sentences(sentences, to_ids, mel_of, vocode, hop, sample_rate, seed)

A synthesizer provides sentences(text), text_to_ids(sentence), check_speaker(speaker), data, hop_length and
synthesize_sequences(ids, sampling, speaker, seed) -> (audio, sample_rate, info with durations). No torch.
"""
from __future__ import annotations

import time
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

import streaming
from audio import SENTENCE_PAUSE_SECONDS
from sampling import SamplingConfig
from timings import text_timings


def synthesize_text(tts, text: str, sampling: SamplingConfig, speaker: Optional[int], seed: int,
                    with_timings: bool) -> Tuple[np.ndarray, int, Dict]:
    """Synthesizer.synthesize for any synthesizer with sentences / text_to_ids / synthesize_sequences
    (the torch and the ONNX one)."""
    tts.check_speaker(speaker)
    t0 = time.perf_counter()
    sentences = tts.sentences(text)
    sequences = [tts.text_to_ids(s) for s in sentences]
    text_seconds = time.perf_counter() - t0
    audio, sample_rate, info = tts.synthesize_sequences(sequences, sampling, speaker, seed)
    info["text_seconds"] = text_seconds
    if with_timings:
        info["timings"] = text_timings(sentences, info["durations"], tts.data, tts.hop_length, sample_rate)
    return audio, sample_rate, info


def stream_sentences(sentences: List[str], to_ids: Callable, mel_of: Callable, vocode: Callable, hop: int,
                     sample_rate: int, seed: int = 0, stats: Optional[Dict] = None) -> Iterator[np.ndarray]:
    """Yield float32 audio chunks for `sentences`, with SENTENCE_PAUSE_SECONDS of silence between them.

    to_ids(sentence) -> ids; mel_of(ids, sentence_seed) -> (mel (1, n_mels, T), vocoder conditioning, NFE);
    vocode(mel window, conditioning) -> float32 (T_window * hop,). Sentence i draws its noise from seed
    SeedSequence(seed)[i], as the whole-text synthesizers do, so the joined stream equals their output.
    stats (optional dict) is filled as the stream goes: nfe, acoustic_seconds, vocoder_seconds,
    audio_seconds, sentences.
    """
    stats = {} if stats is None else stats
    stats.update(nfe=0, acoustic_seconds=0.0, vocoder_seconds=0.0, audio_seconds=0.0, sentences=0)
    seeds = np.random.SeedSequence(int(seed)).generate_state(max(len(sentences), 1), dtype=np.uint64)
    pause = np.zeros(int(round(SENTENCE_PAUSE_SECONDS * sample_rate)), dtype=np.float32)
    for i, sentence in enumerate(sentences):
        if i:
            stats["audio_seconds"] += len(pause) / sample_rate
            yield pause
        t0 = time.perf_counter()
        mel, cond, stats["nfe"] = mel_of(to_ids(sentence), int(seeds[i]))
        stats["acoustic_seconds"] += time.perf_counter() - t0
        for start, end, left, right in streaming.vocoder_windows(mel.shape[-1]):
            t0 = time.perf_counter()
            audio = vocode(mel[..., left:right], cond)[(start - left) * hop:(end - left) * hop]
            stats["vocoder_seconds"] += time.perf_counter() - t0
            stats["audio_seconds"] += len(audio) / sample_rate
            yield audio
        stats["sentences"] += 1
