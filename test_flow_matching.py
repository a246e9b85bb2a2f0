"""Self-checks and speed table for the flow-matching TTS (runnable as a script).

    python test_flow_matching.py                       # self-checks, then RTF at 5/10/20 steps, CPU fp32
    python test_flow_matching.py --threads 2 --runs 5 --dtype bf16
    python test_flow_matching.py --checkpoint logs/ljs/G_100000.pth --device cuda
    python test_flow_matching.py --no-speed            # self-checks only
    python test_flow_matching.py --no-checks           # speed table only

1. Self-checks: the test suite's own modules, run with pytest (no second copy of the tests):
   tests/test_flow_matching_core.py (ODE solvers against analytic fields, sway grids, the CFM objective,
   padding invariance, MAS, a tiny overfit) -- prints "All Flow Matching core tests passed!" -- and
   tests/test_synthesizer.py + tests/test_vocoder.py (text -> audio end to end, audio length == frames *
   hop, NFE per solver, the MB-iSTFT vocoder) -- prints "All FlowMatchingSynthesizer tests passed!".
2. Speed table for the configured model (random weights unless --checkpoint): real-time factor
   (compute seconds / audio seconds) of the acoustic model and the vocoder, median of --runs runs after
   a warm-up run per solver. The audio length is fixed (durations set to give --audio-seconds), since
   an untrained duration predictor's lengths are arbitrary.
Exit status is non-zero if any check failed.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import List, Optional, Tuple

import torch

import config as config_lib
import ode
import text as text_lib
from models import FlowMatchingSynthesizer
from sampling import SamplingConfig
from evaluation.hardware import hardware_name

ROOT = Path(__file__).resolve().parent
DEFAULT_TEXT = "The quick brown fox jumps over the lazy dog, and then it runs far away into the forest."
CHECK_SUITES = (
    ("All Flow Matching core tests passed!", ["tests/test_flow_matching_core.py"]),
    ("All FlowMatchingSynthesizer tests passed!", ["tests/test_synthesizer.py", "tests/test_vocoder.py"]),
)


def run_checks(modules: List[str]) -> bool:
    """Run test modules with pytest in a subprocess (its own output shows); True when all passed."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *modules], cwd=ROOT)
    return proc.returncode == 0


def _text_tensor(sentence: str, hps) -> Tuple[torch.Tensor, torch.Tensor]:
    ids = text_lib.text_to_ids(sentence, hps.data)
    return torch.tensor([ids], dtype=torch.long), torch.tensor([len(ids)], dtype=torch.long)


# ----------------------------------------------------------------------------------------------------
# Speed table
# ----------------------------------------------------------------------------------------------------

def load_model(args, device: torch.device):
    """(model, hps, description) from --checkpoint (EMA weights) or --config with random weights."""
    if args.checkpoint:
        from training.voice_file import load_voice

        model, hps = load_voice(args.checkpoint, device)
        return model, hps, f"{args.checkpoint} (EMA weights)"
    hps = config_lib.load_config(args.config)
    torch.manual_seed(0)
    model = FlowMatchingSynthesizer(len(text_lib.symbols), hps)
    model.remove_weight_norm()
    return model.to(device).eval(), hps, f"{args.config} (random weights)"


def fixed_durations(n_tokens: int, frames: int) -> torch.Tensor:
    """(1, n_tokens) long durations summing to `frames`, spread evenly (0 for some tokens if frames < n_tokens)."""
    base = torch.full((1, n_tokens), frames // n_tokens, dtype=torch.long)
    base[0, :frames % n_tokens] += 1
    return base


def speed_table(args) -> None:
    device = torch.device(args.device)
    model, hps, what = load_model(args, device)
    text, lengths = _text_tensor(args.text, hps)
    frames = int(round(args.audio_seconds * hps.data.sampling_rate / hps.data.hop_length))
    if frames < 1:
        raise ValueError(f"--audio-seconds {args.audio_seconds} is shorter than one frame")
    durations = fixed_durations(text.size(1), frames).to(device)
    text, lengths = text.to(device), lengths.to(device)
    audio_seconds = frames * hps.data.hop_length / hps.data.sampling_rate
    n_acoustic = sum(p.numel() for p in model.acoustic.parameters())
    n_vocoder = sum(p.numel() for p in model.generator.parameters())
    if args.dtype == "bf16":
        autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16)  # noqa: E731
    else:
        autocast = nullcontext

    def once(steps: int, method: str):
        with torch.inference_mode(), autocast():
            audio, _, _, extra = model.infer(text, lengths, sampling=SamplingConfig(steps=steps, method=method),
                                             rng=torch.Generator().manual_seed(0), durations=durations)
        assert audio.shape[-1] == frames * hps.data.hop_length
        return extra

    print(f"\nSpeed: {what}, {n_acoustic / 1e6:.1f}M acoustic + {n_vocoder / 1e6:.1f}M vocoder parameters")
    threads = torch.get_num_threads() if device.type == "cpu" else "-"
    print(f"hardware: {hardware_name(device)}; device {device}, {threads} threads, dtype {args.dtype}, "
          f"torch {torch.__version__}")
    print(f"audio: {audio_seconds:.2f} s ({frames} frames at hop {hps.data.hop_length}, "
          f"{hps.data.sampling_rate} Hz; durations fixed), text {lengths.item()} tokens; sway -1; vocoder "
          f"included; warm-up: 1 run per solver; median of {args.runs} runs; RTF = compute s / audio s")
    print(f"{'steps':>5} {'method':>9} {'NFE':>4} {'ms/NFE':>7} {'acoustic s':>10} {'vocoder s':>9} "
          f"{'total s':>8} {'RTF ac':>7} {'RTF voc':>7} {'RTF':>7}")
    for method in args.methods:
        once(min(args.steps), method)  # warm-up: allocator, kernels, caches
        for steps in args.steps:
            runs = [once(steps, method) for _ in range(args.runs)]
            ac = statistics.median(r["acoustic_seconds"] for r in runs)
            vo = statistics.median(r["vocoder_seconds"] for r in runs)
            total = statistics.median(r["acoustic_seconds"] + r["vocoder_seconds"] for r in runs)
            nfe = runs[0]["nfe"]
            print(f"{steps:>5} {method:>9} {nfe:>4} {1000 * ac / nfe:>7.0f} {ac:>10.3f} {vo:>9.3f} {total:>8.3f} "
                  f"{ac / audio_seconds:>7.3f} {vo / audio_seconds:>7.3f} {total / audio_seconds:>7.3f}",
                  flush=True)


# ----------------------------------------------------------------------------------------------------

def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "configs" / "flow_matching.json"),
                   help="model config for the speed table (random weights)")
    p.add_argument("--checkpoint", help="time this checkpoint instead (its config and EMA weights)")
    p.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20], help="ODE steps to time")
    p.add_argument("--methods", nargs="+", default=["euler", "midpoint"], choices=sorted(ode.SOLVERS))
    p.add_argument("--runs", type=int, default=3, help="timed runs per setting (median reported)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="autocast dtype")
    p.add_argument("--text", default=DEFAULT_TEXT, help="sentence to synthesize for the speed table")
    p.add_argument("--audio-seconds", type=float, default=3.0, help="fixed audio length for the speed table")
    p.add_argument("--no-speed", action="store_true", help="run the self-checks only")
    p.add_argument("--no-checks", action="store_true", help="print the speed table only")
    args = p.parse_args(argv)
    if args.no_speed and args.no_checks:
        p.error("--no-speed and --no-checks leave nothing to do")
    if any(s < 1 for s in args.steps) or args.runs < 1 or (args.threads is not None and args.threads < 1):
        p.error("--steps, --runs and --threads must be positive")
    if args.audio_seconds <= 0:
        p.error("--audio-seconds must be positive")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda was requested but CUDA is not available", file=sys.stderr)
        return 2
    failed = []
    for passed_line, modules in () if args.no_checks else CHECK_SUITES:
        print(f"Running {' '.join(modules)}", flush=True)
        if run_checks(modules):
            print(passed_line, flush=True)
        else:
            failed += modules
    if failed:
        print(f"\nchecks FAILED in {', '.join(failed)}; no speed table", file=sys.stderr)
        return 1
    if not args.no_speed:
        try:
            speed_table(args)
        except (ValueError, OSError, config_lib.ConfigError, RuntimeError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
