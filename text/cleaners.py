"""Text cleaners: raw text -> the string whose characters are looked up in `text.symbols`.

Select them by name in the config (`data.text_cleaners`, applied in order):
  basic_cleaners            lowercase, collapse whitespace (any language, no transliteration)
  transliteration_cleaners  unidecode to ASCII, lowercase, collapse whitespace
  english_cleaners          English normalisation without phonemes (numbers, abbreviations, ASCII)
  english_cleaners2         english_cleaners + espeak IPA with stress marks and punctuation
  multilingual_cleaners     basic_cleaners + espeak IPA in `language` (no English-only rules)

Every cleaner has the signature (text, language="en-us") -> str. `clean_texts` runs a list of
cleaners over many texts and phonemizes them in one batch, which is what preprocessing uses.
"""
from __future__ import annotations

import re
import unicodedata
import warnings
from types import MappingProxyType
from typing import Callable, List, Mapping, Sequence, Tuple, Union

from unidecode import unidecode

from .numbers import normalize_numbers
from .phonemize import phonemize


class UnknownSymbolWarning(UserWarning):
    """Characters of the input were dropped because they cannot be spoken / looked up."""


_WHITESPACE_RE = re.compile(r"\s+")
_ABBREVIATIONS = [(re.compile(rf"\b{short}\.", re.IGNORECASE), long) for short, long in [
    ("mrs", "misess"), ("mr", "mister"), ("dr", "doctor"), ("st", "saint"), ("co", "company"),
    ("jr", "junior"), ("maj", "major"), ("gen", "general"), ("drs", "doctors"), ("rev", "reverend"),
    ("lt", "lieutenant"), ("hon", "honorable"), ("sgt", "sergeant"), ("capt", "captain"),
    ("esq", "esquire"), ("ltd", "limited"), ("col", "colonel"), ("ft", "fort"), ("vs", "versus"),
    ("etc", "et cetera"),
]]
_SYMBOL_WORDS = [(re.compile(r"\s*&\s*"), " and "), (re.compile(r"\s*@\s*"), " at "),
                 (re.compile(r"\s*%"), " percent")]
_DASH_RE = re.compile(r"\s*(?:—|–|--)\s*")  # a spoken pause; unidecode would make "--", which espeak drops


def replace_control_characters(text: str) -> str:
    """Control and format characters (NUL, escape codes, zero-width marks) -> spaces, with a warning.

    espeak reads text as a C string: a NUL would silently end it there and lose the rest of the clause."""
    bad = sorted({c for c in text if unicodedata.category(c) in ("Cc", "Cf") and c not in "\t\n\r"})
    if not bad:
        return text
    warnings.warn(f"replaced control character(s) {', '.join(f'U+{ord(c):04X}' for c in bad)} with spaces in "
                  f"text {text[:80]!r}", UnknownSymbolWarning, stacklevel=3)
    return "".join(" " if c in bad else c for c in text)


def collapse_whitespace(text: str) -> str:
    return _WHITESPACE_RE.sub(" ", text).strip()


def expand_abbreviations(text: str) -> str:
    for pattern, replacement in _ABBREVIATIONS:
        text = pattern.sub(replacement, text)
    return text


def transliterate(text: str) -> str:
    """unidecode to ASCII; characters it cannot transliterate (emoji, ...) are dropped with a warning."""
    dropped = sorted({c for c in text if ord(c) > 127 and not c.isspace() and not unidecode(c).strip()})
    if dropped:
        warnings.warn(f"dropped characters {''.join(dropped)!r} ({', '.join(f'U+{ord(c):04X}' for c in dropped)}) "
                      f"that have no spoken form, in text {text[:80]!r}", UnknownSymbolWarning, stacklevel=3)
    return unidecode(text)


def basic_cleaners(text: str, language: str = "en-us") -> str:
    """Lowercase and collapse whitespace; keeps non-ASCII letters."""
    return collapse_whitespace(text.lower())


def transliteration_cleaners(text: str, language: str = "en-us") -> str:
    """ASCII transliteration, lowercase, collapse whitespace."""
    return collapse_whitespace(transliterate(text).lower())


def english_cleaners(text: str, language: str = "en-us") -> str:
    """English normalisation: numbers/currency to words, ASCII, lowercase, abbreviations, & @ %."""
    text = normalize_numbers(text)  # before transliteration, which would turn "£" into "PS"
    text = transliterate(_DASH_RE.sub(", ", text)).lower()
    text = expand_abbreviations(text)
    for pattern, words in _SYMBOL_WORDS:
        text = pattern.sub(words, text)
    return collapse_whitespace(text)


def english_cleaners2(text: str, language: str = "en-us") -> str:
    """english_cleaners, then espeak IPA (stress marks, punctuation kept) in `language`."""
    return phonemize([english_cleaners(text, language)], language)[0]


def multilingual_cleaners(text: str, language: str = "en-us") -> str:
    """basic_cleaners, then espeak IPA in `language` (for non-English data)."""
    return phonemize([basic_cleaners(text, language)], language)[0]


Cleaner = Callable[[str, str], str]
CLEANERS: Mapping[str, Cleaner] = MappingProxyType({f.__name__: f for f in (
    basic_cleaners, transliteration_cleaners, english_cleaners, english_cleaners2, multilingual_cleaners)})
# Phonemizing cleaners as (text normalisation, then phonemize): lets clean_texts batch espeak.
_PHONEMIZING: Mapping[str, Cleaner] = MappingProxyType(
    {"english_cleaners2": english_cleaners, "multilingual_cleaners": basic_cleaners})


def get_cleaner(name: str) -> Cleaner:
    if name not in CLEANERS:
        raise ValueError(f"unknown text cleaner {name!r}; available: {', '.join(CLEANERS)}")
    return CLEANERS[name]


def clean_texts(texts: Sequence[str], cleaners: Union[str, Sequence[str]], language: str = "en-us",
                njobs: int = 1, return_warnings: bool = False, phonemes: bool = True
                ) -> Union[List[str], Tuple[List[str], List[List[str]]]]:
    """Apply `cleaners` (in order) to every text, phonemizing all texts in one espeak batch.

    Gives the same strings as calling the cleaners one text at a time. With return_warnings=True
    the UnknownSymbolWarning messages are returned per text (list of lists) instead of emitted.
    phonemes=False stops before espeak: the normalized words (numbers spelled out) the phonemes come from.
    A text may clean to "" here; callers decide (text.clean_text raises).
    """
    names = [cleaners] if isinstance(cleaners, str) else list(cleaners)
    for name in names:
        get_cleaner(name)  # unknown names fail before any work
    texts = list(texts)
    caught: List[List[str]] = [[] for _ in texts]

    def apply(fn: Callable[[str], str]) -> None:
        for i, t in enumerate(texts):
            with warnings.catch_warnings(record=True) as records:
                warnings.simplefilter("always", UnknownSymbolWarning)
                texts[i] = fn(t)
            for r in records:
                if issubclass(r.category, UnknownSymbolWarning):
                    caught[i].append(str(r.message))
                else:  # not ours: pass it on untouched
                    warnings.warn_explicit(r.message, r.category, r.filename, r.lineno)

    apply(replace_control_characters)
    for name in names:
        normalize = _PHONEMIZING.get(name, get_cleaner(name))
        apply(lambda t: normalize(t, language))  # noqa: B023 (called at once, inside the loop)
        if name in _PHONEMIZING and phonemes:
            texts = phonemize(texts, language, njobs)
    if return_warnings:
        return texts, caught
    for messages in caught:
        for message in messages:
            warnings.warn(message, UnknownSymbolWarning, stacklevel=2)
    return texts
