"""Sentence splitting for synthesis: long text -> speakable sentences, long sentences -> clauses.

    split_sentences("Dr. Smith arrived. He said: hello!")   # ['Dr. Smith arrived.', 'He said:', 'hello!']

No torch: the ONNX runtime and the server use it as the Python API does.
"""
from __future__ import annotations

import re
from typing import List, Sequence

MAX_SENTENCE_CHARS = 200  # longer sentences are split at commas, then at spaces
# Words whose trailing period does not end a sentence.
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "co", "inc", "ltd",
                  "mt", "capt", "col", "gen", "lt", "sgt", "rev", "hon", "gov", "sen", "rep", "e.g", "i.e"}


def has_speakable(text: str) -> bool:
    """True when the text holds at least one letter or digit (punctuation and emoji are not speech)."""
    return any(ch.isalnum() for ch in text)


def _pack(words: Sequence[str], max_chars: int) -> List[str]:
    """Greedily join words with spaces into pieces of at most `max_chars` (a longer word stays whole)."""
    pieces: List[str] = []
    current = ""
    for word in words:
        if current and len(current) + 1 + len(word) > max_chars:
            pieces.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        pieces.append(current)
    return pieces


def _split_long(sentence: str, max_chars: int) -> List[str]:
    """Split a sentence longer than `max_chars` at commas, and a comma-free run at spaces."""
    if len(sentence) <= max_chars:
        return [sentence]
    parts = [part for clause in re.split(r"(?<=,)\s+", sentence) for part in _split_at_spaces(clause, max_chars)]
    return _pack(parts, max_chars)


def _split_at_spaces(clause: str, max_chars: int) -> List[str]:
    if len(clause) <= max_chars:
        return [clause]
    return _pack(clause.split(), max_chars)


def split_sentences(text: str, max_chars: int = MAX_SENTENCE_CHARS) -> List[str]:
    """Split text into speakable sentences, keeping their final punctuation.

    Breaks after . ! ? ; : followed by white space (a period after a common abbreviation such as "Mr."
    or a single initial does not end a sentence), and splits sentences longer than `max_chars` at commas.
    Fragments without a letter or digit (e.g. a stray "...") carry no speech and are dropped.
    """
    text = " ".join(text.split())
    sentences: List[str] = []
    start = 0
    for match in re.finditer(r"[.!?;:]+[\"')\]]*(?=\s)", text):
        end = match.end()
        word = text[start:match.start()].split()[-1:] or [""]
        last = word[0].lstrip("\"'([").lower()
        if match.group().startswith(".") and len(match.group().rstrip("\"')]")) == 1 and (
                last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha())):
            continue
        sentences.append(text[start:end].strip())
        start = end
    sentences.append(text[start:].strip())
    out: List[str] = []
    for sentence in sentences:
        out.extend(piece for piece in _split_long(sentence, max_chars) if has_speakable(piece))
    return out
