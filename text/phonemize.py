"""espeak-ng phonemisation through `phonemizer`, with the library from the `espeakng-loader` wheel.

No system espeak is needed: the wheel ships libespeak-ng and its data. We export their paths in
PHONEMIZER_ESPEAK_LIBRARY / PHONEMIZER_ESPEAK_DATA_PATH (unless the user already points
PHONEMIZER_ESPEAK_LIBRARY at another espeak) so that phonemizer's worker processes (njobs > 1)
find them too. One backend per language is created and cached: creating it costs ~40 ms.
"""
from __future__ import annotations

import functools
import logging
import os
import re
import threading
from typing import List, Sequence

_ESPEAK_LOGGER = "text.phonemize.espeak"
_WHITESPACE_RE = re.compile(r"\s+")
_MIN_TEXTS_PER_JOB = 256  # below this, starting worker processes costs more than it saves
# One espeak instance per process keeps its state between calls, so two threads phonemizing at once (a
# server checking one request's text while another's is being spoken) mix their lines: one at a time.
_ESPEAK_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def configure_espeak() -> str:
    """Point phonemizer at espeakng-loader's library/data (once); return the library path in use."""
    if "PHONEMIZER_ESPEAK_LIBRARY" not in os.environ:
        try:
            import espeakng_loader
        except ImportError as e:
            raise RuntimeError("phonemizing cleaners need espeak-ng: `pip install espeakng-loader` "
                               "(or set PHONEMIZER_ESPEAK_LIBRARY to a system libespeak-ng)") from e
        os.environ["PHONEMIZER_ESPEAK_LIBRARY"] = espeakng_loader.get_library_path()
        os.environ["PHONEMIZER_ESPEAK_DATA_PATH"] = espeakng_loader.get_data_path()
    return os.environ["PHONEMIZER_ESPEAK_LIBRARY"]


@functools.lru_cache(maxsize=16)
def espeak_backend(language: str):
    """The cached phonemizer EspeakBackend for `language` (an espeak voice such as "en-us", "fr-fr")."""
    configure_espeak()
    from phonemizer.backend import EspeakBackend

    if not EspeakBackend.is_supported_language(language):
        raise ValueError(f"espeak does not know the language {language!r}; use an espeak voice code "
                         f"such as 'en-us', 'en-gb', 'fr-fr', 'de' (see `espeak-ng --voices`)")
    # phonemizer warns "words count mismatch" whenever espeak merges words ("in the" -> "ɪnðə"),
    # which is normal; show only its errors unless the user configured this logger.
    logger = logging.getLogger(_ESPEAK_LOGGER)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.ERROR)
    # remove-flags: drop espeak's "(en)" language-switch markers; they are not speech.
    return EspeakBackend(language, preserve_punctuation=True, with_stress=True,
                         language_switch="remove-flags", logger=logger)


def phonemize(texts: Sequence[str], language: str = "en-us", njobs: int = 1) -> List[str]:
    """IPA strings for `texts` (one output per input, order kept), words separated by single spaces.

    Only texts with at least one letter or digit are sent to espeak: phonemizer drops empty lines
    and misplaces punctuation-only ones, which would shift every later result in a batch. The
    others come back unchanged (the caller decides whether they are speakable).
    """
    from phonemizer.separator import Separator

    texts = [_WHITESPACE_RE.sub(" ", t).strip() for t in texts]
    out = list(texts)
    todo = [i for i, t in enumerate(texts) if any(c.isalnum() for c in t)]
    if todo:
        with _ESPEAK_LOCK:
            result = espeak_backend(language).phonemize(
                [texts[i] for i in todo], separator=Separator(phone="", syllable="", word=" "),
                strip=True, njobs=max(1, int(njobs)) if len(todo) >= _MIN_TEXTS_PER_JOB * 2 else 1)
        if len(result) != len(todo):
            raise RuntimeError(f"phonemizer returned {len(result)} results for {len(todo)} texts")
        for i, phones in zip(todo, result):
            out[i] = _WHITESPACE_RE.sub(" ", phones).strip()
    return out
