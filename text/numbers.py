"""English number normalisation: digits -> words before phonemisation.

Handles cardinals with thousands separators, ordinals (1st, 22nd), decimals, percentages, clock
times, currency ($, £, €, ¥ with cents/pence and "million"-style scales) and years (1984 -> nineteen
eighty-four). espeak could read digits itself, but doing it here keeps the result identical across
espeak versions and makes "$5" and "1st" come out right.
"""
from __future__ import annotations

import re

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ["", "thousand", "million", "billion", "trillion", "quadrillion"]
_ORDINAL_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                      "nine": "ninth", "twelve": "twelfth"}
# symbol -> (major singular, major plural, minor singular, minor plural)
_CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
               "€": ("euro", "euros", "cent", "cents"), "¥": ("yen", "yen", "sen", "sen")}

_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}\b)")
_CURRENCY_RE = re.compile(r"([$£€¥])\s?(\d+(?:\.\d+)?)(?:\s?(thousand|million|billion|trillion)\b)?", re.I)
_PERCENT_RE = re.compile(r"(\d+(?:\.\d+)?)\s?%")
_ORDINAL_RE = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.I)
# 7:45, 3:45pm, 3:45 p.m.; and 7pm / 7 a.m. without minutes (the meridiem is read as letters: "p m").
# "p.m." keeps its last period: it may also end the sentence.
_TIME_RE = re.compile(r"\b(\d{1,2}):(\d{2})(?:\s?([ap])(?:\.m(?=\.)|m\b))?(?!\w)", re.I)
_HOUR_MERIDIEM_RE = re.compile(r"\b(\d{1,2})\s?([ap])(?:\.m(?=\.)|m\b)", re.I)
_DECIMAL_RE = re.compile(r"(\d+)\.(\d+)")
_INTEGER_RE = re.compile(r"\d+")


def _below_thousand(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    words = [f"{_ONES[hundreds]} hundred"] if hundreds else []
    if rest >= 20:
        words.append(_TENS[rest // 10] + (f"-{_ONES[rest % 10]}" if rest % 10 else ""))
    elif rest or not hundreds:
        words.append(_ONES[rest])
    return " ".join(words)


def cardinal(n: int) -> str:
    """12345 -> 'twelve thousand three hundred forty-five' (American style, no 'and')."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n < 1000:
        return _below_thousand(n)
    if n >= 1000 ** len(_SCALES):
        return digits(str(n))  # beyond the named scales: read digit by digit
    groups = []
    scale = 0
    while n:
        n, group = divmod(n, 1000)
        if group:
            groups.append(_below_thousand(group) + (f" {_SCALES[scale]}" if scale else ""))
        scale += 1
    return " ".join(reversed(groups))


def ordinal(n: int) -> str:
    """21 -> 'twenty-first'."""
    words = cardinal(n)
    cut = max(words.rfind(" "), words.rfind("-")) + 1
    head, last = words[:cut], words[cut:]
    if last in _ORDINAL_IRREGULAR:
        last = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + last


def digits(s: str) -> str:
    """'0427' -> 'zero four two seven'."""
    return " ".join(_ONES[int(c)] for c in s)


def year(n: int) -> str:
    """Read a year: 1984 -> 'nineteen eighty-four', 1905 -> 'nineteen oh five', 2007 -> 'two thousand seven'."""
    if 2000 <= n <= 2009 or n % 1000 == 0:
        return cardinal(n)
    high, low = divmod(n, 100)
    return _pair(high, low, "hundred")


def _pair(high: int, low: int, when_zero: str) -> str:
    """Read two numbers as a pair, the way years and clock times are: 19|84, 7|05 ('oh five'), 7|00."""
    if low == 0:
        return f"{cardinal(high)} {when_zero}"
    if low < 10:
        return f"{cardinal(high)} oh {_ONES[low]}"
    return f"{cardinal(high)} {cardinal(low)}"


def _integer(s: str) -> str:
    if len(s) > 1 and s.startswith("0"):
        return digits(s)
    n = int(s)
    if len(s) == 4 and 1100 <= n <= 2099:
        return year(n)
    return cardinal(n)


def _decimal(whole: str, frac: str) -> str:
    return f"{_integer(whole)} point {digits(frac)}"


def _number(s: str) -> str:
    """'12' or '3.14' -> words."""
    whole, _, frac = s.partition(".")
    return _decimal(whole, frac) if frac else _integer(whole)


def _currency(m: re.Match) -> str:
    major_1, major_n, minor_1, minor_n = _CURRENCIES[m.group(1)]
    amount, scale = m.group(2), m.group(3)
    if scale:  # "$2.5 million" -> "two point five million dollars"
        return f"{_number(amount)} {scale.lower()} {major_n}"
    whole, _, frac = amount.partition(".")
    major = int(whole)
    minor = int((frac + "00")[:2]) if frac else 0
    parts = []
    if major or not minor:
        parts.append(f"{cardinal(major)} {major_1 if major == 1 else major_n}")
    if minor:
        parts.append(f"{cardinal(minor)} {minor_1 if minor == 1 else minor_n}")
    return " and ".join(parts)


def _meridiem(letter) -> str:
    return f" {letter.lower()} m" if letter else ""


def _time(m: re.Match) -> str:
    hours, minutes = int(m.group(1)), int(m.group(2))
    if hours > 24 or minutes > 59:  # not a clock time (e.g. a ratio): read both numbers
        return f"{cardinal(hours)} {cardinal(minutes)}" + _meridiem(m.group(3))
    return _pair(hours, minutes, "" if m.group(3) else "o'clock").strip() + _meridiem(m.group(3))


def normalize_numbers(text: str) -> str:
    """Replace every number in `text` by words (see the module docstring for what is covered)."""
    text = _THOUSANDS_RE.sub("", text)
    text = _CURRENCY_RE.sub(_currency, text)
    text = _PERCENT_RE.sub(lambda m: f"{_number(m.group(1))} percent", text)
    text = _ORDINAL_RE.sub(lambda m: ordinal(int(m.group(1))), text)
    text = _TIME_RE.sub(_time, text)
    text = _HOUR_MERIDIEM_RE.sub(lambda m: f"{cardinal(int(m.group(1)))}{_meridiem(m.group(2))}", text)
    text = _DECIMAL_RE.sub(lambda m: _decimal(m.group(1), m.group(2)), text)
    return _INTEGER_RE.sub(lambda m: _integer(m.group(0)), text)
