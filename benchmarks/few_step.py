"""Few-step sampling: intelligibility and spectral distance against the number of network evaluations.

    python benchmarks/few_step.py --voice pretrained/demo_voice.pth \
        --filelist datasets/voices/slt_hts/metadata_test.csv --limit 20 --output few_step.json

For every solver (euler, midpoint), time grid (uniform, sway -1 quadratic, epss) and NFE in --nfe
(midpoint needs an even NFE), every held-out sentence is synthesized (same seed) and scored against its
recording: pocketsphinx WER (corpus level; the recordings' own WER is the ceiling) and MCD (dB, DTW).
The ODE runs in onnxruntime when --onnx DIR is given (same sampler, faster), else in torch. RTF here is
only indicative (the machine may be busy); benchmarks/bench_e2e.py measures speed on a quiet machine.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluation import metrics  # noqa: E402
from evaluation.asr import Transcriber  # noqa: E402
from atomic import write_text_atomic  # noqa: E402
from audio import read_audio  # noqa: E402
from evaluation.evaluate import load_utterances  # noqa: E402
from sampling import SamplingConfig  # noqa: E402

GRIDS = {"uniform": dict(sway_coef=0.0), "sway": dict(sway_coef=-1.0), "epss": dict(sway_schedule="epss")}


def settings(nfes, methods, grids):
    for method in methods:
        for grid in grids:
            for nfe in nfes:
                if method == "midpoint" and nfe % 2:
                    continue
                steps = nfe // 2 if method == "midpoint" else nfe
                yield grid, SamplingConfig(steps=steps, method=method, **GRIDS[grid])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--voice", default=str(ROOT / "pretrained" / "demo_voice.pth"))
    p.add_argument("--onnx", help="export_onnx.py folder of the same voice: run the sampler in onnxruntime")
    p.add_argument("--int8", action="store_true", help="with --onnx: the int8 velocity net and vocoder")
    p.add_argument("--filelist", required=True, help="held-out clips (LJSpeech metadata or wav|text)")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--nfe", type=int, nargs="+", default=[1, 2, 3, 4, 6, 10])
    p.add_argument("--methods", nargs="+", default=["euler", "midpoint"])
    p.add_argument("--grids", nargs="+", default=list(GRIDS), choices=list(GRIDS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--output")
    args = p.parse_args(argv)
    if args.onnx:
        from runtime.onnx_synthesizer import OnnxSynthesizer
        tts = OnnxSynthesizer(args.onnx, threads=args.threads, int8=args.int8)
    else:
        import torch

        from inference.synthesizer import TorchSynthesizer
        torch.set_num_threads(args.threads)
        tts = TorchSynthesizer.from_checkpoint(args.voice)
    utterances = load_utterances(Path(args.filelist), args.limit)
    transcriber = Transcriber()
    refs = [read_audio(u.wav_path) for u in utterances]
    texts = [u.text for u in utterances]
    ceiling = metrics.corpus_wer(texts, [transcriber.transcribe(r.wav, r.sampling_rate) for r in refs])
    print(f"recordings: WER {ceiling:.3f} ({len(texts)} sentences)", flush=True)
    rows = []
    for grid, sampling in settings(args.nfe, args.methods, args.grids):
        hyps, mcds, compute, audio_s = [], [], 0.0, 0.0
        for text, ref in zip(texts, refs):
            t0 = time.perf_counter()
            wav, sr, _ = tts.synthesize(text, sampling, seed=0)
            compute += time.perf_counter() - t0
            audio_s += len(wav) / sr
            hyps.append(transcriber.transcribe(wav, sr))
            mcds.append(metrics.mcd_dtw(ref.wav, ref.sampling_rate, wav, sr))
        row = {"method": sampling.method, "grid": grid, "steps": sampling.steps, "nfe": sampling.nfe,
               "wer": metrics.corpus_wer(texts, hyps), "mcd": sum(mcds) / len(mcds), "rtf": compute / audio_s}
        rows.append(row)
        print(f"{row['method']:>8} {grid:>7} NFE {row['nfe']:>2}: WER {row['wer']:.3f}  MCD {row['mcd']:.2f}  "
              f"RTF {row['rtf']:.3f}", flush=True)
    print("\n| solver | grid | NFE | WER | MCD dB | RTF |\n|---|---|---:|---:|---:|---:|")
    print(f"| recordings | | | {ceiling:.3f} | | |")
    for r in rows:
        print(f"| {r['method']} | {r['grid']} | {r['nfe']} | {r['wer']:.3f} | {r['mcd']:.2f} | {r['rtf']:.3f} |")
    if args.output:
        report = {"ceiling_wer": ceiling, "rows": rows, "settings": {k: v for k, v in vars(args).items()}}
        write_text_atomic(args.output, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
