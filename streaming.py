"""Streaming helpers shared by the torch and ONNX synthesizers (no torch needed).

    chunks = stream_sentences(sentences, to_ids, mel_of, vocode, hop, sample_rate, seed)   # see below

The vocoder is convolutional, with a receptive field of a few frames each side, so a chunk of frames
vocoded together with CONTEXT_FRAMES of mel on both sides (cut away afterwards) gives the samples the
whole utterance would give, to within float rounding: the joined stream equals the whole-utterance
output (tests/test_streaming.py measures the difference).
"""
from __future__ import annotations

import re
import time
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from audio import SENTENCE_PAUSE_SECONDS

CHUNK_FRAMES = 64  # mel frames vocoded per chunk (0.74 s at 22050 Hz / hop 256)
FIRST_CHUNK_FRAMES = 24  # a smaller first chunk: the first audio comes out sooner
CONTEXT_FRAMES = 16  # mel frames of context on each side of a chunk
FIRST_CLAUSE_CHARS = 60  # a longer first sentence is split at its clause boundaries


def vocoder_windows(n_frames: int, chunk: int = CHUNK_FRAMES, context: int = CONTEXT_FRAMES,
                    first_chunk: int = FIRST_CHUNK_FRAMES) -> List[Tuple[int, int, int, int]]:
    """[(start, end, left, right)]: frames [start, end) are kept from the vocoder run on [left, right)."""
    windows, start = [], 0
    while start < n_frames:
        end = min(n_frames, start + (first_chunk if start == 0 else chunk))
        windows.append((start, end, max(0, start - context), min(n_frames, end + context)))
        start = end
    return windows


def split_first_clause(sentences: List[str], max_chars: int = FIRST_CLAUSE_CHARS) -> List[str]:
    """Split the first sentence at clause boundaries (, ; : and dashes) when it is longer than max_chars."""
    if not sentences or len(sentences[0]) <= max_chars:
        return sentences
    clauses = [c for c in re.split(r"(?<=[,;:])\s+|\s+(?:--|-|—|–)\s+", sentences[0]) if c.strip()]
    return clauses + sentences[1:]


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
        for start, end, left, right in vocoder_windows(mel.shape[-1]):
            t0 = time.perf_counter()
            audio = vocode(mel[..., left:right], cond)[(start - left) * hop:(end - left) * hop]
            stats["vocoder_seconds"] += time.perf_counter() - t0
            stats["audio_seconds"] += len(audio) / sample_rate
            yield audio
        stats["sentences"] += 1
