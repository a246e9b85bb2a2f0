"""SSML input: a documented subset of W3C SSML 1.1 -> a flat list of segments the pipeline speaks in order.

    segments = parse_ssml('<speak>Hello <break time="500ms"/> <prosody rate="slow">world</prosody></speak>')
    # [Segment(text='Hello'), Segment(pause=0.5), Segment(text='world', duration_scale=1.333...)]

Parsed with the standard library's xml.etree.ElementTree; pure Python (no torch, no numpy), so the ONNX runtime
uses it as the torch one does. The elements, attributes and the numbers they map to are listed in
docs/inference.md ("SSML"). A malformed document is a ValueError of one line with its line and column; an
unknown element is read as its text with one SsmlWarning naming it; contour is accepted and ignored with one
SsmlWarning per document. Pitch and range become edits of the prosody the model predicts (a voice without
prosody conditioning warns and ignores them: runtime/pipeline.py).
"""
from __future__ import annotations

import math
import re
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from typing import List, Optional, Set, Union

from .numbers import cardinal, digits, normalize_numbers, ordinal, year
from .sentences import has_speakable

__all__ = ["Segment", "SsmlWarning", "parse_ssml", "looks_like_ssml"]

SENTENCE_PAUSE = 0.2  # seconds after <s>: what the pipeline inserts between sentences (audio.SENTENCE_PAUSE_SECONDS)
PARAGRAPH_PAUSE = 0.6  # seconds after <p>
MAX_BREAK_SECONDS = 10.0  # SSML services cap breaks (Azure 5 s, Polly 10 s): longer is a mistake, not a pause
BREAK_STRENGTH = {"none": 0.0, "x-weak": 0.1, "weak": 0.2, "medium": 0.4, "strong": 0.6, "x-strong": 1.0}
RATE_NAMES = {"x-slow": 0.5, "slow": 0.75, "medium": 1.0, "default": 1.0, "fast": 1.25, "x-fast": 1.5}
VOLUME_DB = {"silent": float("-inf"), "x-soft": -12.0, "soft": -6.0, "medium": 0.0, "default": 0.0,
             "loud": 6.0, "x-loud": 12.0}
# prosody pitch names -> semitones, range names -> factor on the pitch spread
PITCH_NAMES = {"x-low": -6.0, "low": -3.0, "medium": 0.0, "default": 0.0, "high": 3.0, "x-high": 6.0}
RANGE_NAMES = {"x-low": 0.25, "low": 0.5, "medium": 1.0, "default": 1.0, "high": 1.5, "x-high": 2.0}
# emphasis level -> (rate factor, gain dB, pitch semitones, range factor): stressed words come a little slower,
# louder, higher and livelier, reduced ones the opposite.
EMPHASIS = {"strong": (0.8, 4.0, 2.0, 1.3), "moderate": (0.9, 2.0, 1.0, 1.15), "reduced": (1.1, -3.0, -1.0, 0.8),
            "none": (1.0, 0.0, 0.0, 1.0)}
MONTHS = ("January February March April May June July August September October November December").split()
SENTENCE_END = re.compile(r"[.!?;:][\"')\]]*$")
XML_NAMESPACE = "{http://www.w3.org/XML/1998/namespace}"


class SsmlWarning(UserWarning):
    """Part of an SSML document was accepted but is not (fully) realised."""


@dataclass(frozen=True)
class Segment:
    """One piece of an SSML document: words to speak, or a pause (text and phonemes empty, pause > 0).

    duration_scale: factor on the sampling's duration_scale (> 1 slower; prosody rate 2 -> 0.5);
    gain_db: gain on this segment's audio (-inf: silent); pitch_shift: semitones added to the sampling's;
    pitch_range: factor on the sampling's pitch range; speaker: a speaker name of the voice (None: the
    caller's); phonemes: IPA to speak instead of `text` (a <phoneme>; `text` is its written form)."""

    text: str = ""
    pause: float = 0.0
    duration_scale: float = 1.0
    gain_db: float = 0.0
    pitch_shift: float = 0.0
    pitch_range: float = 1.0
    speaker: Optional[str] = None
    phonemes: Optional[str] = None

    @property
    def is_pause(self) -> bool:
        return not self.text and not self.phonemes


_Boundary = float  # a <s> or <p> end in the walk: seconds; merged with its neighbours later
_Item = Union[Segment, _Boundary]


def looks_like_ssml(text: str) -> bool:
    """True when `text` is meant as SSML: it starts with <speak (after an optional XML declaration)."""
    return bool(re.match(r"\s*(<\?xml[^>]*\?>\s*)?<speak[\s>/]", text))


def parse_ssml(document: str) -> List[Segment]:
    """An SSML document -> its segments in speaking order (adjacent text with the same settings merged).

    ValueError: malformed XML (one line with line and column), a root other than <speak>, a bad attribute value."""
    root = _parse_xml(document)
    if _local(root.tag) != "speak":
        raise ValueError(f"SSML: the root element must be <speak>, got <{_local(root.tag)}>")
    walker = _Walker()
    walker.walk(root, Segment())
    if walker.unknown:
        warnings.warn(f"SSML: unknown element(s) {', '.join(f'<{n}>' for n in sorted(walker.unknown))} read as "
                      f"their text", SsmlWarning, stacklevel=2)
    if walker.contour:
        warnings.warn("SSML: prosody contour is not supported (give pitch and range instead); it was ignored",
                      SsmlWarning, stacklevel=2)
    return _finish(walker.items)


def _parse_xml(document: str) -> ET.Element:
    if not isinstance(document, str) or not document.strip():
        raise ValueError("SSML document is empty; give <speak>...</speak>")
    try:
        return ET.fromstring(document)
    except ET.ParseError as e:
        line, column = e.position
        reason = str(e).split(":")[0]  # "mismatched tag: line 1, column 20" -> "mismatched tag"
        raise ValueError(f"SSML document is not well-formed XML: {reason} at line {line}, column {column + 1}") \
            from None


def _local(tag: str) -> str:
    """'{http://www.w3.org/2001/10/synthesis}speak' -> 'speak' (documents may declare the SSML namespace)."""
    return tag.rsplit("}", 1)[-1]


class _Walker:
    """Depth-first walk of the element tree: each element's settings (a Segment used as a template) pass
    to its children; text and pauses are collected in `items`."""

    def __init__(self):
        self.items: List[_Item] = []
        self.unknown: Set[str] = set()
        self.contour = False

    def text(self, text: Optional[str], ctx: Segment) -> None:
        if text:
            self.items.append(replace(ctx, text=text))

    def walk(self, element: ET.Element, ctx: Segment) -> None:
        """Speak `element` (its text, children and their tails) with the settings `ctx`."""
        name = _local(element.tag)
        handler = getattr(self, "_" + name.replace("-", "_"), None)
        if handler is None:
            self.unknown.add(name)
            self.children(element, ctx)
        else:
            handler(element, ctx)

    def children(self, element: ET.Element, ctx: Segment) -> None:
        self.text(element.text, ctx)
        for child in element:
            self.walk(child, ctx)
            self.text(child.tail, ctx)

    # -- one method per element (the name after "_", "-" as "_") ---------------------------------------------

    def _speak(self, element, ctx):
        self.children(element, ctx)  # xml:lang and version are accepted and ignored

    def _s(self, element, ctx):
        self.children(element, ctx)
        self.items.append(SENTENCE_PAUSE)

    def _p(self, element, ctx):
        self.children(element, ctx)
        self.items.append(PARAGRAPH_PAUSE)

    def _break(self, element, ctx):
        seconds = _break_seconds(element.get("time"), element.get("strength"))
        if seconds > 0:
            self.items.append(Segment(pause=seconds))

    def _mark(self, element, ctx):
        pass  # a bookmark for event callbacks: nothing to speak

    def _prosody(self, element, ctx):
        self.contour = self.contour or element.get("contour") is not None
        rate = _rate(element.get("rate")) if element.get("rate") is not None else 1.0
        gain = _volume(element.get("volume")) if element.get("volume") is not None else 0.0
        pitch = _pitch(element.get("pitch")) if element.get("pitch") is not None else 0.0
        spread = _range(element.get("range")) if element.get("range") is not None else 1.0
        self.children(element, _changed(ctx, rate, gain, pitch, spread))

    def _emphasis(self, element, ctx):
        level = element.get("level", "moderate")
        if level not in EMPHASIS:
            raise _bad_value("emphasis", "level", level, ", ".join(EMPHASIS))
        self.children(element, _changed(ctx, *EMPHASIS[level]))

    def _say_as(self, element, ctx):
        self.text(say_as("".join(element.itertext()), element.get("interpret-as", ""), element.get("format")), ctx)

    def _sub(self, element, ctx):
        alias = element.get("alias")
        self.text(alias if alias is not None else "".join(element.itertext()), ctx)

    def _phoneme(self, element, ctx):
        written, ph = "".join(element.itertext()), element.get("ph", "")
        alphabet = element.get("alphabet", element.get("alph", "ipa"))
        if alphabet.lower() != "ipa" or not ph.strip():
            warnings.warn(f"SSML: <phoneme> needs alphabet=\"ipa\" and a ph; read {written!r} as text",
                          SsmlWarning, stacklevel=4)
            self.text(written, ctx)
        else:
            self.items.append(replace(ctx, text=written, phonemes=ph.strip()))

    def _voice(self, element, ctx):
        name = element.get("name")
        if not name:
            raise ValueError("SSML: <voice> needs a name attribute (a speaker of the voice)")
        self.children(element, replace(ctx, speaker=name))


def _changed(ctx: Segment, rate: float, gain_db: float, pitch: float, spread: float) -> Segment:
    """ctx with a <prosody> / <emphasis> applied on top of the enclosing settings."""
    return replace(ctx, duration_scale=ctx.duration_scale / rate, gain_db=ctx.gain_db + gain_db,
                   pitch_shift=ctx.pitch_shift + pitch, pitch_range=ctx.pitch_range * spread)


def _finish(items: List[_Item]) -> List[Segment]:
    """Merge adjacent text with the same settings, drop unspeakable text, turn <s>/<p> ends into pauses (the
    longest of adjacent ones; none at the ends), and add a sentence pause where one text segment ends a sentence
    and the next one goes on (the pipeline adds it inside a segment)."""
    merged: List[_Item] = []
    for item in items:
        last = merged[-1] if merged else None
        if isinstance(item, Segment) and isinstance(last, Segment) and _mergeable(last, item):
            merged[-1] = replace(last, text=last.text + item.text)
        else:
            merged.append(item)
    out: List[_Item] = []
    for item in merged:
        if isinstance(item, Segment) and not item.is_pause:
            if not item.phonemes and not has_speakable(item.text):
                continue  # whitespace or a lone "." between elements
            item = replace(item, text=" ".join(item.text.split()))
            prev = out[-1] if out else None
            if isinstance(prev, Segment) and not prev.is_pause and SENTENCE_END.search(prev.text):
                out.append(SENTENCE_PAUSE)
        if isinstance(item, float) and out and isinstance(out[-1], float):
            out[-1] = max(out[-1], item)
        else:
            out.append(item)
    while out and isinstance(out[-1], float):
        out.pop()
    while out and isinstance(out[0], float):
        out.pop(0)
    return [Segment(pause=item) if isinstance(item, float) else item for item in out]


def _mergeable(a: Segment, b: Segment) -> bool:
    return not a.is_pause and not b.is_pause and a.phonemes is None and b.phonemes is None \
        and replace(a, text="") == replace(b, text="")


# -- attribute values ------------------------------------------------------------------------------------------

def _bad_value(element: str, attribute: str, value: str, expected: str) -> ValueError:
    return ValueError(f"SSML: <{element} {attribute}={value!r}> is not supported; give {expected}")


def _break_seconds(time: Optional[str], strength: Optional[str]) -> float:
    """<break>: time ("500ms", "1.5s") wins over strength (BREAK_STRENGTH); neither is a medium break."""
    if time is not None:
        m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)\s*", time)
        if not m:
            raise _bad_value("break", "time", time, 'a duration such as "500ms" or "1.5s"')
        seconds = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
        if seconds > MAX_BREAK_SECONDS:
            raise ValueError(f"SSML: <break time={time!r}> is longer than {MAX_BREAK_SECONDS:g} s")
        return seconds
    strength = strength or "medium"
    if strength not in BREAK_STRENGTH:
        raise _bad_value("break", "strength", strength, ", ".join(BREAK_STRENGTH))
    return BREAK_STRENGTH[strength]


def _rate(value: str) -> float:
    """prosody rate -> speaking-rate factor (2 = twice as fast): a name, "80%" (of the enclosing rate),
    "+20%" / "-20%" (a change), or a plain factor "1.5"."""
    value = value.strip()
    if value in RATE_NAMES:
        return RATE_NAMES[value]
    m = re.fullmatch(r"([+-]?)(\d+(?:\.\d*)?|\.\d+)(%?)", value)
    if not m:
        raise _bad_value("prosody", "rate", value, f"{', '.join(RATE_NAMES)}, a percentage or a factor")
    sign, number, percent = m.groups()
    x = float(number) / (100 if percent else 1)
    factor = 1 + x if sign == "+" else 1 - x if sign == "-" else x
    if factor <= 0:
        raise ValueError(f"SSML: <prosody rate={value!r}> must leave a positive speaking rate")
    return factor


def _volume(value: str) -> float:
    """prosody volume -> gain in dB: a name (VOLUME_DB) or "+6dB" / "-3dB"."""
    value = value.strip()
    if value in VOLUME_DB:
        return VOLUME_DB[value]
    m = re.fullmatch(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))dB", value)
    if not m:
        raise _bad_value("prosody", "volume", value, f"{', '.join(VOLUME_DB)} or a change such as \"+6dB\"")
    return float(m.group(1))


def _pitch(value: str) -> float:
    """prosody pitch -> semitones: a name (PITCH_NAMES), "+2st" / "-3st", or "+10%" / "-10%" of the frequency.
    Hertz are refused: the model moves pitch relative to the voice's own."""
    value = value.strip()
    if value in PITCH_NAMES:
        return PITCH_NAMES[value]
    m = re.fullmatch(r"([+-](?:\d+(?:\.\d*)?|\.\d+))(st|%)", value)
    if not m:
        raise _bad_value("prosody", "pitch", value, f'{", ".join(PITCH_NAMES)}, semitones such as "+2st" or a '
                                                    f'relative change such as "-10%" (not Hz)')
    number = float(m.group(1))
    if m.group(2) == "st":
        return number
    if number <= -100:
        raise ValueError(f"SSML: <prosody pitch={value!r}> must leave a positive pitch")
    return 12.0 * math.log2(1.0 + number / 100.0)


def _range(value: str) -> float:
    """prosody range -> factor on the pitch spread: a name (RANGE_NAMES) or "+50%" / "-50%"."""
    value = value.strip()
    if value in RANGE_NAMES:
        return RANGE_NAMES[value]
    m = re.fullmatch(r"([+-](?:\d+(?:\.\d*)?|\.\d+))%", value)
    if not m or float(m.group(1)) < -100:
        raise _bad_value("prosody", "range", value, f'{", ".join(RANGE_NAMES)} or a change such as "+50%"')
    return 1.0 + float(m.group(1)) / 100.0


# -- say-as -----------------------------------------------------------------------------------------------------

def say_as(text: str, interpret_as: str, format: Optional[str] = None) -> str:
    """<say-as> content -> words for the text front end, spelled with text.numbers (ValueError for content
    that does not fit the interpretation; an unknown interpret-as reads the text as it is, with a warning)."""
    text = text.strip()
    kind = interpret_as.strip().lower()
    if kind in ("characters", "spell-out", "verbatim"):
        return " ".join(digits(c) if c.isdigit() else c for c in text if c.isalnum())
    if kind == "cardinal":
        return cardinal(_integer(text, kind))
    if kind == "ordinal":
        return ordinal(_integer(re.sub(r"(?i)(st|nd|rd|th)$", "", text), kind))
    if kind == "digits":
        return digits("".join(c for c in text if c.isdigit()))
    if kind == "date":
        return _date(text, format)
    if kind == "time":
        return normalize_numbers(text)  # 7:45, 3:45pm, 7 a.m.: the front end's own clock-time reading
    if kind == "telephone":
        return _telephone(text)
    warnings.warn(f"SSML: <say-as interpret-as={interpret_as!r}> is not supported; read as text", SsmlWarning,
                  stacklevel=5)
    return text


def _integer(text: str, kind: str) -> int:
    cleaned = text.replace(",", "").replace(" ", "")
    if not re.fullmatch(r"[+-]?\d+", cleaned):
        raise ValueError(f"SSML: <say-as interpret-as=\"{kind}\"> needs a whole number, got {text!r}")
    return int(cleaned)


def _date(text: str, format: Optional[str]) -> str:
    """'2024-03-05' (ymd), '03/05/2024' (mdy) or '05.03.2024' (dmy) -> 'March fifth, twenty twenty-four'."""
    parts = [p for p in re.split(r"[-/.\s]+", text) if p]
    fmt = (format or ("ymd" if parts and len(parts[0]) == 4 else "mdy")).lower()
    if sorted(fmt) != sorted("dmy") or len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"SSML: <say-as interpret-as=\"date\"> needs a day, month and year in format mdy, dmy or "
                         f"ymd, got {text!r} (format {fmt!r})")
    value = dict(zip(fmt, map(int, parts)))
    if not 1 <= value["m"] <= 12 or not 1 <= value["d"] <= 31:
        raise ValueError(f"SSML: <say-as interpret-as=\"date\"> {text!r} is not a date in format {fmt}")
    month, day, yr = MONTHS[value["m"] - 1], ordinal(value["d"]), year(value["y"])
    return f"the {day} of {month}, {yr}" if fmt == "dmy" else f"{month} {day}, {yr}"


def _telephone(text: str) -> str:
    """'+1 (555) 123-4567' -> 'plus one, five five five, one two three, four five six seven': digit by digit,
    a short pause (comma) between the groups."""
    groups = re.findall(r"\d+", text)
    if not groups:
        raise ValueError(f"SSML: <say-as interpret-as=\"telephone\"> needs digits, got {text!r}")
    words = ", ".join(digits(g) for g in groups)
    return ("plus " if text.startswith("+") else "") + words
