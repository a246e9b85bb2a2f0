"""Streaming helpers shared by the torch and ONNX synthesizers (no torch needed); the loop that uses them
is pipeline.stream_sentences.

    clauses = split_first_clause(sentences)       # a quicker first chunk

The vocoder is convolutional, with a receptive field of a few frames each side, so a chunk of frames
vocoded together with CONTEXT_FRAMES of mel on both sides (cut away afterwards) gives the samples the
whole utterance would give, to within float rounding: the joined stream equals the whole-utterance
output (tests/test_streaming.py measures the difference).
"""
from __future__ import annotations

import re
from typing import List, Tuple

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
