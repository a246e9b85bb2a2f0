"""Voice blending: a mix of a multi-speaker voice's speakers, weighted, in place of one speaker.

Two spellings are read, the command line's and the one Kokoro's servers made common over OpenAI's `voice`:

    awb:0.7,slt_hts:0.3        awb(7)+slt_hts(3)        awb+slt_hts  (equal weights)

The weights are normalised to sum to 1; the model mixes the speakers' embeddings with them
(flow_matching.FlowMatchingTTS._speaker), so every layer a speaker conditions hears the blend.
"""
from __future__ import annotations

import math
import re
from typing import List, Optional, Tuple

_COLON_PART = re.compile(r"^\s*(?P<name>[^:,()+]+?)\s*:\s*(?P<weight>[^:,()+]+?)\s*$")
# names may hold ':' in the '+' spelling: a server names a speaker FILE:SPEAKER when two files share a name
_PAREN_PART = re.compile(r"^\s*(?P<name>[^,()+]+?)\s*(?:\(\s*(?P<weight>[^()]*?)\s*\))?\s*$")


def is_blend(speaker) -> bool:
    """Whether `speaker` is a blend spelling (a string with ',', '+', ':' or '(') rather than one speaker."""
    return isinstance(speaker, str) and any(c in speaker for c in ",+:(")


def parse_blend(spec: str) -> List[Tuple[str, float]]:
    """'awb:0.7,slt_hts:0.3' or 'awb(7)+slt_hts(3)' -> [(name, weight)] with weights as written (> 0, finite);
    ValueError saying how to write a blend for anything else (an empty part, a bad or non-positive weight, a
    name given twice, the two spellings mixed)."""
    colon = "," in spec or (":" in spec and "+" not in spec)
    pattern, separator = (_COLON_PART, ",") if colon else (_PAREN_PART, "+")
    parts: List[Tuple[str, float]] = []
    for piece in spec.split(separator):
        match = pattern.match(piece)
        if match is None:
            raise ValueError(f"cannot read the speaker blend {spec!r} at {piece.strip()!r}; write "
                             f"'awb:0.7,slt_hts:0.3' or 'awb(7)+slt_hts(3)'")
        name, weight = match["name"], _weight(match["weight"], spec)
        if name in (n for n, _ in parts):
            raise ValueError(f"the speaker blend {spec!r} names {name!r} twice; give each speaker once")
        parts.append((name, weight))
    if len(parts) < 2 and not colon:
        raise ValueError(f"the speaker blend {spec!r} names one speaker; blend two or more, or give the name alone")
    return parts


def _weight(text: Optional[str], spec: str) -> float:
    if text is None:  # awb+slt_hts: equal parts
        return 1.0
    try:
        weight = float(text)
    except ValueError:
        weight = math.nan
    if not (math.isfinite(weight) and weight > 0):
        raise ValueError(f"the speaker blend {spec!r} has weight {text!r}; weights are positive numbers")
    return weight
