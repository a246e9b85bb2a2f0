"""Naturalness without listeners: Microsoft's DNSMOS, from the ONNX models inside the `speechmos` wheel (no download).

    from evaluation.naturalness import dnsmos
    dnsmos(wav, 22050)   # {"p808": 3.6, "ovrl": 2.8, "sig": 3.2, "bak": 3.9}

p808 predicts an ITU-T P.808 listening-test MOS (1 to 5); sig, bak and ovrl the P.835 ratings of the speech
signal, the background and the whole. DNSMOS hears what a word error rate cannot (buzz, metallic or muffled
timbre, noise), but it was trained on real noisy speech: compare systems on the same sentences, with the
recordings' own score as the ceiling, not with figures from elsewhere.
"""
from __future__ import annotations

from typing import Dict

import numpy as np
import soxr

DNSMOS_RATE = 16000  # the models' sample rate


def dnsmos(wav: np.ndarray, sample_rate: int) -> Dict[str, float]:
    """DNSMOS scores of a mono clip (float samples in [-1, 1]; clips shorter than 9 s are looped to 9 s by the
    model's own rule, longer ones scored in 9 s windows a second apart and averaged)."""
    from speechmos import dnsmos as model

    x = np.asarray(wav, dtype=np.float32)
    if sample_rate != DNSMOS_RATE:
        x = soxr.resample(x, sample_rate, DNSMOS_RATE).astype(np.float32)
    scores = model.run(np.clip(x, -1.0, 1.0), DNSMOS_RATE)
    return {"p808": float(scores["p808_mos"]), "ovrl": float(scores["ovrl_mos"]), "sig": float(scores["sig_mos"]),
            "bak": float(scores["bak_mos"])}
