"""Word and phoneme timings from the predicted durations (no torch).

    words, phonemes = sentence_timings("Meet me at 3:45pm.", cleaned, durations, data, seconds_per_frame)

The model's input is the cleaned (phonemized) sentence, one token per character (with a blank token
between characters when data.add_blank), and the duration predictor gives each token a number of mel
frames, so every phoneme has a start and an end. Words need two alignments:
  - the sentence's own words -> normalized words: each word is normalized alone (numbers, money, titles
    spelled out: "$5,340" -> five thousand three hundred forty dollars);
  - normalized words -> the phoneme words espeak wrote, which sometimes merge ("from the" -> "fɹʌmðə"):
    a small dynamic program pairs them by phoneme length (each normalized word phonemized alone).
A word's time is the union of its phonemes' times; words that espeak merged share their phoneme word's
time in proportion to their own phoneme lengths. Every word of the sentence gets an entry, in order.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

import text as text_lib
from audio import SENTENCE_PAUSE_SECONDS

Span = Tuple[float, float]


def token_frames(durations: Sequence[int], n_chars: int, add_blank: bool) -> List[Span]:
    """(start, end) in frames of every character of the cleaned text; blanks go to the following character."""
    bounds = np.concatenate([[0], np.cumsum(np.asarray(durations, dtype=np.int64))])
    if not add_blank:
        return [(float(bounds[i]), float(bounds[i + 1])) for i in range(n_chars)]
    # tokens: blank, c0, blank, c1, ..., blank: character i is token 2i + 1, its leading blank 2i.
    return [(float(bounds[2 * i]), float(bounds[2 * i + 2])) for i in range(n_chars)]


def _phoneme_words(cleaned: str) -> List[Tuple[int, int]]:
    """(start, end) character offsets of the space-separated words of the cleaned text."""
    spans, start = [], None
    for i, ch in enumerate(cleaned + " "):
        if ch == " " and start is not None:
            spans.append((start, i))
            start = None
        elif ch != " " and start is None:
            start = i
    return spans


def _letters(s: str) -> int:
    return max(1, sum(ch.isalpha() for ch in s))


def _align(phoneme_lengths: List[int], word_lengths: List[int]) -> List[List[int]]:
    """For each phoneme word, the normalized words it covers: monotonic, every word used once.

    A phoneme word covers 1 to 3 normalized words (espeak merges), or a normalized word spreads over
    2 phoneme words; the cost is the difference of phoneme lengths."""
    n, m = len(phoneme_lengths), len(word_lengths)
    inf = float("inf")
    cost = np.full((n + 1, m + 1), inf)
    back: Dict[Tuple[int, int], Tuple[int, int]] = {}
    cost[0, 0] = 0.0
    for i in range(n + 1):
        for j in range(m + 1):
            if cost[i, j] == inf:
                continue
            moves = [(1, k) for k in (1, 2, 3)] + [(2, 1)]
            for di, dj in moves:
                if i + di > n or j + dj > m:
                    continue
                c = cost[i, j] + abs(sum(phoneme_lengths[i:i + di]) - sum(word_lengths[j:j + dj])) + 0.5 * (di + dj - 2)
                if c < cost[i + di, j + dj]:
                    cost[i + di, j + dj] = c
                    back[(i + di, j + dj)] = (i, j)
    if cost[n, m] == inf:  # nothing fits (e.g. no phoneme words): everything in one group
        return [list(range(m))] + [[] for _ in range(n - 1)] if n else []
    groups = [[] for _ in range(n)]
    i, j = n, m
    while (i, j) != (0, 0):
        pi, pj = back[(i, j)]
        for a in range(pi, i):
            groups[a] = list(range(pj, j))
        i, j = pi, pj
    return groups


def sentence_timings(sentence: str, cleaned: str, durations: Sequence[int], data, seconds_per_frame: float,
                     offset: float = 0.0) -> Tuple[List[Dict], List[Dict]]:
    """([{word, start, end}] for every word of `sentence`, [{phoneme, start, end}] for every phoneme
    character of `cleaned`), in seconds from `offset`. durations: the model's frames per input token."""
    chars = token_frames(durations, len(cleaned), data.add_blank)

    def seconds(frames: Span) -> Tuple[float, float]:
        return (round(float(offset + frames[0] * seconds_per_frame), 4),
                round(float(offset + frames[1] * seconds_per_frame), 4))

    phonemes = [dict(zip(("start", "end"), seconds(chars[i])), phoneme=ch) for i, ch in enumerate(cleaned)
                if ch != " "]
    words = sentence.split()
    normalized = text_lib.clean_texts(words, data.text_cleaners, data.language, phonemes=False)
    norm_words = [(w_index, nw) for w_index, n in enumerate(normalized) for nw in n.split()]
    norm_phonemes = text_lib.clean_texts([nw for _, nw in norm_words], data.text_cleaners, data.language)
    spans = _phoneme_words(cleaned)
    groups = _align([_letters(cleaned[a:b]) for a, b in spans], [_letters(p) for p in norm_phonemes])
    norm_spans: Dict[int, Span] = {}
    for (a, b), group in zip(spans, groups):
        start, end = chars[a][0], chars[b - 1][1]
        weights = np.cumsum([0] + [_letters(norm_phonemes[j]) for j in group], dtype=np.float64)
        for k, j in enumerate(group):
            lo, hi = weights[k] / weights[-1], weights[k + 1] / weights[-1]
            norm_spans[j] = (start + lo * (end - start), start + hi * (end - start))
    result, last_end = [], chars[0][0] if chars else 0.0
    for w_index, word in enumerate(words):
        own = [norm_spans[j] for j, (wi, _) in enumerate(norm_words) if wi == w_index and j in norm_spans]
        span = (min(s for s, _ in own), max(e for _, e in own)) if own else (last_end, last_end)
        last_end = span[1]
        result.append(dict(zip(("start", "end"), seconds(span)), word=word))
    return result, phonemes


def text_timings(sentences: Sequence[str], durations: Sequence[Sequence[int]], data, hop_length: int,
                 sample_rate: int, pause_seconds: float = SENTENCE_PAUSE_SECONDS) -> Dict[str, List[Dict]]:
    """Timings of sentences joined with pauses (audio.join_with_pauses): {"words": [...], "phonemes": [...]}.
    A sentence's audio is exactly sum(durations) * hop_length samples."""
    cleaned = text_lib.clean_texts(list(sentences), data.text_cleaners, data.language)
    words: List[Dict] = []
    phonemes: List[Dict] = []
    offset = 0.0
    for sentence, clean, dur in zip(sentences, cleaned, durations):
        w, p = sentence_timings(sentence, clean, dur, data, hop_length / sample_rate, offset)
        words += w
        phonemes += p
        offset += sum(dur) * hop_length / sample_rate + pause_seconds
    return {"words": words, "phonemes": phonemes}
