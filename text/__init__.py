"""Text front end: cleaners (normalisation + espeak phonemes) and the symbol <-> id mapping.

    ids = text_to_sequence("Hello world.", ["english_cleaners2"], language="en-us")
    model_ids = text_to_ids("Hello world.", hps.data)   # what the model takes: cleaners + blanks
    n_vocab = len(symbols)        # pad / blank id is 0 ("_")

Characters outside the symbol table are dropped with an UnknownSymbolWarning naming them (never a
KeyError). Text with nothing speakable left (no letter after cleaning) raises ValueError.
"""
from __future__ import annotations

import warnings
from typing import Iterable, List, Sequence, Union

from .cleaners import CLEANERS, UnknownSymbolWarning, clean_texts
from .symbols import BLANK_ID, PAD_ID, PUNCTUATION, SYMBOL_TO_ID, symbols

__all__ = ["symbols", "PAD_ID", "BLANK_ID", "SYMBOL_TO_ID", "CLEANERS", "UnknownSymbolWarning",
           "clean_text", "clean_texts", "text_to_sequence", "cleaned_text_to_sequence", "sequence_to_text",
           "text_to_ids", "intersperse"]

_SILENT_IDS = frozenset([PAD_ID] + [SYMBOL_TO_ID[c] for c in PUNCTUATION])


def _nothing_to_say(what: str) -> ValueError:
    return ValueError(f"{what} has nothing to speak: no letter or phoneme is left after cleaning. "
                      f"Give it at least one word, or remove it from the filelist.")


def clean_text(text: str, cleaners: Union[str, Sequence[str]] = ("english_cleaners2",),
               language: str = "en-us") -> str:
    """Run the named cleaners on one text; ValueError if nothing speakable remains."""
    cleaned = clean_texts([text], cleaners, language)[0]
    if not any(c.isalnum() for c in cleaned):
        raise _nothing_to_say(f"text {text[:80]!r} (cleaned to {cleaned!r})")
    return cleaned


def cleaned_text_to_sequence(cleaned_text: str) -> List[int]:
    """Cleaned text -> symbol ids; unknown characters are dropped with an UnknownSymbolWarning."""
    ids, unknown = [], []
    for c in cleaned_text:
        i = SYMBOL_TO_ID.get(c)
        if i is None:
            unknown.append(c)
        else:
            ids.append(i)
    if unknown:
        chars = sorted(set(unknown))
        warnings.warn(f"dropped {len(unknown)} character(s) not in text.symbols: {''.join(chars)!r} "
                      f"({', '.join(f'U+{ord(c):04X}' for c in chars)}) in {cleaned_text[:80]!r}",
                      UnknownSymbolWarning, stacklevel=2)
    if all(i in _SILENT_IDS for i in ids):
        raise _nothing_to_say(f"cleaned text {cleaned_text[:80]!r}")
    return ids


def text_to_sequence(text: str, cleaners: Union[str, Sequence[str]] = ("english_cleaners2",),
                     language: str = "en-us") -> List[int]:
    """Raw text -> cleaned -> symbol ids (list of int, without blanks)."""
    return cleaned_text_to_sequence(clean_text(text, cleaners, language))


def text_to_ids(text: str, data, cleaned: bool = False) -> List[int]:
    """The model's input ids for one text under a data config (text_cleaners, language, add_blank).

    cleaned: the text is already cleaned (a preprocessed filelist). Blanks (BLANK_ID) are interspersed
    when data.add_blank, as in training. ValueError when nothing speakable is left."""
    if not cleaned:
        text = clean_text(text, data.text_cleaners, data.language)
    ids = cleaned_text_to_sequence(text)
    return intersperse(ids, BLANK_ID) if data.add_blank else ids


def intersperse(seq: Sequence[int], item: int) -> List[int]:
    """[a, b] -> [item, a, item, b, item] (VITS's blank tokens between symbols)."""
    out = [item] * (2 * len(seq) + 1)
    out[1::2] = seq
    return out


def sequence_to_text(sequence: Iterable[int]) -> str:
    """Symbol ids -> string (inverse of cleaned_text_to_sequence for known symbols)."""
    out = []
    for i in sequence:
        i = int(i)
        if not 0 <= i < len(symbols):
            raise ValueError(f"symbol id {i} is outside the symbol table (0..{len(symbols) - 1})")
        out.append(symbols[i])
    return "".join(out)
