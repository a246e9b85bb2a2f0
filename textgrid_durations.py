"""Durations of the model's own tokens from a Montreal Forced Aligner TextGrid (its word and phone tiers).

    words, phones, end = read_textgrid("aligned/LJ001-0002.TextGrid")
    durations = token_durations(cleaned, add_blank=True, words=words, phones=phones, end=end,
                                phonemized=phonemize_words(...), frames_per_second=22050 / 256)

MFA aligns the words and the phones of its own dictionary (ARPAbet or MFA's IPA set); the model's tokens are
espeak's IPA characters, with blanks between them when data.add_blank, and espeak joins some words ("in the"
-> "ɪnðɪ"). So the words decide, and the phones only share out time inside a word:
  1. the model's words (the cleaned text split at spaces) are matched in order to runs of TextGrid words, by
     comparing each with the TextGrid words phonemized one by one (dynamic programming over edit distance;
     a model word may cover up to MAX_RUN TextGrid words, or a TextGrid word up to MAX_RUN model words);
  2. a matched group spans its TextGrid words' time; its sounding characters share that span as the phones
     inside it do (character k of n takes the k-th n-th of the phone sequence, so a long phone gives more
     time, and n characters on n phones is exactly one to one); stress marks and blanks inside take none;
  3. a pause between groups goes to the first punctuation or space between them, the silence before the
     first word to the first token and after the last to the last token.
Token end times are rounded to frames once (round(t * frames_per_second)), so every group boundary is the
TextGrid's word boundary to the frame.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from text import SYMBOL_TO_ID

SILENCE = {"", "sil", "sp", "<eps>"}  # labels MFA gives pauses (words: empty; phones: empty, sil or sp)
STRESS = "ˈˌ"
MAX_RUN = 4  # the most words one side of a match may join ("out of the" -> one espeak word)
MAX_MISMATCH = 0.6  # mean edit distance (0 same .. 1 nothing alike) above which the TextGrid is another text


@dataclass(frozen=True)
class Interval:
    start: float
    end: float
    label: str


def read_textgrid(path: Path) -> Tuple[List[Interval], List[Interval], float]:
    """(words, phones, end time) of an MFA TextGrid: its tiers named `words` and `phones` (or `SPEAKER -
    words` / `SPEAKER - phones`, as MFA names them for a corpus with speakers), pauses left out. ValueError
    naming the file for an unreadable file or a missing tier."""
    from praatio import textgrid

    try:
        grid = textgrid.openTextgrid(str(path), includeEmptyIntervals=False)
    except Exception as e:  # praatio raises many kinds (parse errors, bad tiers): one message
        raise ValueError(f"{path} is not a readable TextGrid ({type(e).__name__}: {e})") from None

    def tier(kind: str) -> List[Interval]:
        names = [n for n in grid.tierNames if n == kind or n.endswith(f" - {kind}")]
        if not names:
            raise ValueError(f"{path} has no {kind!r} tier (it has {', '.join(grid.tierNames) or 'none'}); give "
                             f"the TextGrids Montreal Forced Aligner writes (tiers 'words' and 'phones')")
        return [Interval(float(s), float(e), lab.strip()) for s, e, lab in grid.getTier(names[0]).entries
                if lab.strip().lower() not in SILENCE]

    words, phones = tier("words"), tier("phones")
    if not words:
        raise ValueError(f"{path} has no word in its 'words' tier")
    return words, phones, float(grid.maxTimestamp)


def phonemize_words(words: Sequence[str], cleaners: Sequence[str], language: str) -> Dict[str, str]:
    """{word: its phonemes as the cleaners give them, said alone} for the TextGrid words (one phonemizer call)."""
    from text.cleaners import clean_texts

    unique = sorted(set(words))
    return dict(zip(unique, clean_texts(unique, cleaners, language))) if unique else {}


def sounding(c: str) -> bool:
    """Characters that carry sound (letters, IPA letters, length marks), not stress marks or punctuation."""
    return c.isalnum() and c not in STRESS


def _key(chars: str) -> str:
    return "".join(c for c in chars if sounding(c))


def match_words(model_words: List[str], grid_words: List[str], phonemized: Dict[str, str]
                ) -> List[Tuple[range, range]]:
    """Monotonic groups (model word indices, TextGrid word indices), every word in exactly one group, each
    group one-to-many or many-to-one; ValueError when even the best grouping is mostly mismatched."""
    m, n = len(model_words), len(grid_words)
    keys = [_key(w) for w in model_words]
    grid_keys = [_key(phonemized.get(w, w)) for w in grid_words]
    inf = float("inf")
    cost = np.full((m + 1, n + 1), inf)
    cost[0, 0] = 0.0
    back: Dict[Tuple[int, int], Tuple[int, int]] = {}
    for i in range(m + 1):
        for j in range(n + 1):
            if cost[i, j] == inf:
                continue
            for a, b in [(1, b) for b in range(1, MAX_RUN + 1)] + [(a, 1) for a in range(2, MAX_RUN + 1)]:
                if i + a > m or j + b > n:
                    continue
                left, right = "".join(keys[i:i + a]), "".join(grid_keys[j:j + b])
                step = 1.0 - difflib.SequenceMatcher(None, left, right, autojunk=False).ratio()
                if cost[i, j] + step < cost[i + a, j + b]:
                    cost[i + a, j + b] = cost[i, j] + step
                    back[i + a, j + b] = (i, j)
    if cost[m, n] == inf:
        raise ValueError(f"the transcript's {m} words cannot be matched with the TextGrid's {n} words: is it the "
                         f"TextGrid of another clip?")
    groups, at = [], (m, n)
    while at != (0, 0):
        prev = back[at]
        groups.append((range(prev[0], at[0]), range(prev[1], at[1])))
        at = prev
    groups.reverse()
    mismatch = cost[m, n] / len(groups)
    if mismatch > MAX_MISMATCH:
        raise ValueError(f"the TextGrid's words ({' '.join(grid_words[:6])} ...) do not match the transcript's "
                         f"(mean edit distance {mismatch:.2f}): is it the TextGrid of another clip?")
    return groups


def _share(span: Tuple[float, float], phones: List[Interval], n: int) -> np.ndarray:
    """(n + 1,) boundary times of n characters sharing `span` as the phones inside it do."""
    start, end = span
    inside = [p for p in phones if p.start >= start - 1e-6 and p.end <= end + 1e-6]
    bounds = np.array([start] + [p.end for p in inside[:-1]] + [end]) if inside else np.array([start, end])
    places = np.linspace(0.0, len(bounds) - 1, n + 1)
    return np.interp(places, np.arange(len(bounds)), bounds)


def model_words(cleaned: str) -> Tuple[List[str], List[Tuple[int, int]]]:
    """(the model's tokens without blanks: the characters cleaned_text_to_sequence keeps, the (first, last + 1)
    token index of each of its words: runs between spaces that hold a sounding character)."""
    chars = [c for c in cleaned if c in SYMBOL_TO_ID]
    pieces, at = [], 0
    for i, c in enumerate(chars + [" "]):
        if c == " ":
            if any(sounding(x) for x in chars[at:i]):
                pieces.append((at, i))
            at = i + 1
    return chars, pieces


def token_durations(cleaned: str, add_blank: bool, words: List[Interval], phones: List[Interval], end: float,
                    phonemized: Dict[str, str], frames_per_second: float) -> np.ndarray:
    """(T_text,) int64 frames per model token (text.text_to_ids of `cleaned`, blanks included when add_blank),
    summing to round(end * frames_per_second). ValueError when the words cannot be matched."""
    chars, pieces = model_words(cleaned)
    groups = match_words(["".join(chars[a:b]) for a, b in pieces], [w.label for w in words], phonemized)
    starts = np.full(len(chars), np.nan)  # sounding characters: their own span; the rest: none yet
    ends = np.full(len(chars), np.nan)
    for model, grid in groups:
        span = (words[grid[0]].start, words[grid[-1]].end)
        voiced = [k for p in model for k in range(*pieces[p]) if sounding(chars[k])]
        times = _share(span, phones, len(voiced))
        starts[voiced], ends[voiced] = times[:-1], times[1:]
    token_end = _fill_pauses(chars, starts, ends)
    if add_blank:  # [blank, c1, blank, c2, ..., cn, blank]: a blank ends where the next character starts
        char_starts = np.concatenate([[np.nanmin(starts)], token_end[:-1]])  # the first blank: the lead silence
        char_starts[~np.isnan(starts)] = starts[~np.isnan(starts)]
        token_end = np.concatenate([np.stack([char_starts, token_end], 1).reshape(-1), [end]])
    else:
        token_end[-1] = end  # the last token takes the silence after the last word
    frames = np.round(np.maximum.accumulate(token_end) * frames_per_second).astype(np.int64)
    return np.diff(np.concatenate([[0], frames]))


def _fill_pauses(chars: List[str], starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """End time of every character: sounding ones their own; a pause before a sounding character goes to the
    first punctuation or space since the previous one (else to the sounding one); the rest take no time."""
    token_end = np.empty(len(chars))
    voiced = np.flatnonzero(~np.isnan(starts))
    t = 0.0
    for k, c in enumerate(chars):
        if not np.isnan(ends[k]):
            t = ends[k]
        else:
            nxt = voiced[voiced > k]
            if len(nxt) and not c.isalnum() and _first_separator(chars, k):  # a space or punctuation
                t = starts[nxt[0]]
        token_end[k] = t
    return token_end


def _first_separator(chars: List[str], k: int) -> bool:
    """Whether chars[k] is the first punctuation or space since the last sounding character."""
    for c in reversed(chars[:k]):
        if sounding(c):
            return True
        if c not in STRESS:
            return False
    return True
