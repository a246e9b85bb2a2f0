"""Prosody controls, measured: does the voice deliver the pitch, pitch range, rate and loudness it is asked for?

    python benchmarks/bench_prosody.py --voice pretrained/multispeaker.pth --speaker slt_hts --limit 10 \
        --output benchmarks/results/prosody.json

Each request is an SSML <prosody> around the whole sentence (text/ssml.py: what a user writes) or, for the
model's energy, a sampling setting (--energy: SamplingConfig.energy_db), on held-out
sentences (voices/corpus/test_ids.txt: no voice trained on them), at the voice's default sampling and seed 0.
Against the plain reading of the same sentence it reports, as medians over the sentences
(evaluation/prosody.py): the pitch shift of voiced frames in semitones, the ratio of the F0 spread (range),
the ratio of speaking time, the loudness change in dB; and over all sentences the offline recogniser's WER and
DNSMOS P.808. Each row says whether it meets issue 38's bars (pitch within 1 semitone, range within 25%,
duration 1/rate within 8%, loudness within 2 dB, WER at most 1.2x the plain reading's, P.808 at most 0.2 lower).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import warnings
from pathlib import Path
from typing import Dict, List
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from atomic import write_text_atomic  # noqa: E402
from bench_e2e import held_out  # noqa: E402
from evaluation import metrics  # noqa: E402
from evaluation.asr import Transcriber  # noqa: E402
from evaluation.evaluate import hardware_info  # noqa: E402
from evaluation.naturalness import dnsmos  # noqa: E402
from evaluation.prosody import measure  # noqa: E402
from text.ssml import SsmlWarning  # noqa: E402

# name -> (SSML prosody attribute and value, or a sampling change; the quantity it should change; the change asked)
REQUESTS = {
    "pitch -4 st": ('pitch="-4st"', "pitch_st", -4.0), "pitch -2 st": ('pitch="-2st"', "pitch_st", -2.0),
    "pitch +2 st": ('pitch="+2st"', "pitch_st", 2.0), "pitch +4 st": ('pitch="+4st"', "pitch_st", 4.0),
    "range 0.5": ('range="-50%"', "range_ratio", 0.5), "range 1.5": ('range="+50%"', "range_ratio", 1.5),
    "rate 0.8": ('rate="80%"', "duration_ratio", 1 / 0.8), "rate 1.25": ('rate="125%"', "duration_ratio", 1 / 1.25),
    "volume -6 dB": ('volume="-6dB"', "loudness_db", -6.0), "volume +6 dB": ('volume="+6dB"', "loudness_db", 6.0),
    "energy -6 dB": ({"energy_db": -6.0}, "loudness_db", -6.0), "energy +6 dB": ({"energy_db": 6.0}, "loudness_db", 6.0),
}
TOLERANCE = {"pitch_st": ("abs", 1.0), "range_ratio": ("rel", 0.25), "duration_ratio": ("rel", 0.08),
             "loudness_db": ("abs", 2.0)}
MAX_WER_RATIO, MAX_P808_DROP = 1.2, 0.2


def read(tts, transcriber, sentences: List[str], request, speaker) -> Dict:
    """Synthesize every sentence inside <prosody request> (a str), or plainly with the sampling changes of a
    dict: per-sentence prosody, and over all sentences WER and mean P.808."""
    clips = []
    changes = request if isinstance(request, dict) else {}
    sampling = tts.default_sampling.replace(**changes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SsmlWarning)  # a voice without prosody conditioning warns and ignores pitch
        for s in sentences:
            body = f"<prosody {request}>{escape(s)}</prosody>" if isinstance(request, str) and request else escape(s)
            audio, sr, _ = tts.synthesize_ssml(f"<speak>{body}</speak>", sampling, speaker=speaker)
            clips.append((audio, sr))
    hyps = [transcriber.transcribe(a, sr) for a, sr in clips]
    return {"prosody": [measure(a, sr) for a, sr in clips], "wer": metrics.corpus_wer(sentences, hyps),
            "p808": statistics.fmean(dnsmos(a, sr)["p808"] for a, sr in clips)}


def use_griffin_lim(tts) -> None:
    """Make the synthesizer vocode with Griffin-Lim (vocoder_copy_synthesis.griffin_lim), which puts each
    harmonic where the mel has it."""
    import numpy as np
    import torch
    from vocoder_copy_synthesis import griffin_lim

    def vocode(mel, speakers=None, window=None):
        audio = griffin_lim(mel[0].float().numpy(), tts.hps.data)
        n = mel.size(2) * tts.hop_length
        audio = np.pad(audio, (0, max(0, n - len(audio))))[:n]
        return torch.from_numpy(audio)[None, None], None

    tts.model.vocode = vocode


def change(plain, asked) -> Dict[str, float]:
    """Medians over sentences of what a request changed against the plain reading."""
    pairs = list(zip(plain, asked))
    return {"pitch_st": statistics.median(b.f0_median_st - a.f0_median_st for a, b in pairs),
            "range_ratio": statistics.median(b.f0_std_st / a.f0_std_st for a, b in pairs),
            "duration_ratio": statistics.median(b.speech_seconds / a.speech_seconds for a, b in pairs),
            "loudness_db": statistics.median(b.loudness_db - a.loudness_db for a, b in pairs)}


def meets(quantity: str, measured: float, wanted: float) -> bool:
    kind, tolerance = TOLERANCE[quantity]
    off = abs(measured - wanted) if kind == "abs" else abs(measured / wanted - 1.0)
    return bool(off <= tolerance)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--voice", default=str(ROOT / "pretrained" / "multispeaker.pth"))
    p.add_argument("--speaker", default=None, help="speaker of a multi-speaker voice (default: its default)")
    p.add_argument("--limit", type=int, default=10, help="held-out sentences")
    p.add_argument("--requests", nargs="+", default=list(REQUESTS), choices=list(REQUESTS), metavar="REQUEST")
    p.add_argument("--griffin-lim", action="store_true",
                   help="vocode with Griffin-Lim instead of the voice's vocoder: what the acoustic model delivers, "
                        "apart from the vocoder (the shipped one locks its harmonics to the 86 Hz frame rate)")
    p.add_argument("--output", help="JSON report")
    args = p.parse_args(argv)
    import torch

    from inference.synthesizer import TorchSynthesizer

    tts, transcriber = TorchSynthesizer.from_checkpoint(args.voice), Transcriber()
    if args.griffin_lim:
        use_griffin_lim(tts)
    sentences = held_out(args.limit)
    plain = read(tts, transcriber, sentences, {}, args.speaker)
    print(f"plain: WER {plain['wer']:.3f}, P.808 {plain['p808']:.2f}", flush=True)
    rows = []
    for name in args.requests:
        request, quantity, wanted = REQUESTS[name]
        if isinstance(request, dict) and not tts.realises_prosody:
            print(f"{name}: skipped (the voice has no prosody conditioning)", flush=True)
            continue
        asked = read(tts, transcriber, sentences, request, args.speaker)
        measured = change(plain["prosody"], asked["prosody"])
        row = {"request": name, "quantity": quantity, "wanted": wanted, "measured": measured[quantity],
               "all_changes": measured, "wer": asked["wer"], "p808": asked["p808"]}
        row["meets"] = {"target": meets(quantity, measured[quantity], wanted),
                        "wer": bool(asked["wer"] <= MAX_WER_RATIO * plain["wer"]),
                        "p808": bool(asked["p808"] >= plain["p808"] - MAX_P808_DROP)}
        rows.append(row)
        print(f"{name}: {quantity} {measured[quantity]:+.3f} (asked {wanted:+.3f}), WER {asked['wer']:.3f}, "
              f"P.808 {asked['p808']:.2f}; meets {row['meets']}", flush=True)
    report = {"voice": args.voice, "vocoder": "griffin-lim" if args.griffin_lim else "the voice's", "speaker": args.speaker, "sentences": len(sentences), "threads": torch.get_num_threads(),
              "hardware": hardware_info("cpu"), "plain": {"wer": plain["wer"], "p808": plain["p808"]}, "rows": rows}
    if args.output:
        write_text_atomic(args.output, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
