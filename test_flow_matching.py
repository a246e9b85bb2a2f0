"""Self-check and speed table for the flow-matching TTS (runnable as a script).

    python test_flow_matching.py                       # self-checks, then RTF at 5/10/20 steps, CPU fp32
    python test_flow_matching.py --threads 2 --runs 5 --dtype bf16
    python test_flow_matching.py --checkpoint logs/ljs/G_100000.pth --device cuda
    python test_flow_matching.py --no-speed            # self-checks only

1. Core checks (analytic oracles): Euler is exact on a constant field and midpoint on a field linear in
   t, on uniform and swayed grids; sway coefficients that fold the time grid are rejected; the CFM
   loss is zero for the exact target velocity; a padded batch equals its items run alone; forward and
   backward of FlowMatchingTTS (configs/tiny.json) give finite losses and gradients.
   Prints "All Flow Matching core tests passed!" only if every core check passed.
2. Synthesizer checks: text -> audio end to end with FlowMatchingSynthesizer, audio length ==
   mel frames * hop and NFE == steps (Euler) or 2 * steps (midpoint).
   Prints "All FlowMatchingSynthesizer tests passed!" only if they passed.
3. Speed table for the configured model (random weights unless --checkpoint): real-time factor
   (compute seconds / audio seconds) of the acoustic model and the vocoder, median of --runs runs after
   a warm-up run per solver. The audio length is fixed (durations set to give --audio-seconds), since
   an untrained duration predictor's lengths are arbitrary.
Exit status is non-zero if any check failed.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import traceback
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import torch

import commons
import config as config_lib
import ode
import text as text_lib
from flow_matching import ConditionalFlowMatching, FlowMatchingTTS
from models import FlowMatchingSynthesizer
from timing import hardware_name

ROOT = Path(__file__).resolve().parent
TINY_CONFIG = ROOT / "configs" / "tiny.json"
DEFAULT_TEXT = "The quick brown fox jumps over the lazy dog, and then it runs far away into the forest."


# ----------------------------------------------------------------------------------------------------
# Core checks
# ----------------------------------------------------------------------------------------------------

def check_euler_exact_on_constant_field() -> None:
    """dx/dt = c: Euler lands on x0 + c in one step and on any grid."""
    x0 = torch.randn(2, 3, 5, dtype=torch.float64)
    c = torch.randn(2, 3, 5, dtype=torch.float64)
    for n, sway in ((1, None), (7, -1.0), (4, 0.5)):
        x, nfe = ode.solve(lambda x, t: c, x0, ode.time_grid(n, sway, dtype=torch.float64), "euler")
        assert nfe == n, f"Euler NFE {nfe} != {n} steps"
        assert torch.allclose(x, x0 + c, atol=1e-12), "Euler is not exact on a constant field"


def check_midpoint_exact_on_linear_field() -> None:
    """dx/dt = a + b t: midpoint integrates exactly to x0 + a + b/2, on uniform and swayed grids."""
    x0, a, b = (torch.randn(1, 2, 4, dtype=torch.float64) for _ in range(3))
    for n, sway in ((1, None), (3, -1.0), (6, 1.0)):
        x, nfe = ode.solve(lambda x, t: a + b * t, x0, ode.time_grid(n, sway, dtype=torch.float64), "midpoint")
        assert nfe == 2 * n, f"midpoint NFE {nfe} != 2 * {n} steps"
        assert torch.allclose(x, x0 + a + b / 2, atol=1e-12), "midpoint is not exact on a field linear in t"
    # Euler is not exact there (so the check above can fail).
    x, _ = ode.solve(lambda x, t: a + b * t, x0, ode.time_grid(3, None, dtype=torch.float64), "euler")
    assert not torch.allclose(x, x0 + a + b / 2, atol=1e-6)


def check_sway_validation() -> None:
    """s = -1 gives t^2; every s in [-1, 1] is monotonic from 0 to 1; s = -2 (folds the grid) is rejected."""
    grid = ode.time_grid(10, -1.0, dtype=torch.float64)
    uniform = torch.linspace(0, 1, 11, dtype=torch.float64)
    assert torch.allclose(grid, uniform ** 2, atol=1e-12), "sway -1 is not t^2"
    for s in (-1.0, -0.5, 0.0, 0.7, 1.0):
        g = ode.time_grid(16, s, dtype=torch.float64)
        assert float(g[0]) == 0.0 and float(g[-1]) == 1.0 and bool((g[1:] > g[:-1]).all()), f"sway {s} grid"
    for s in (-2.0, 1.5):
        try:
            ode.time_grid(10, s)
        except ValueError:
            continue
        raise AssertionError(f"sway coefficient {s} folds the time grid but was accepted")
    for n in (0, -3):
        try:
            ode.time_grid(n)
        except ValueError:
            continue
        raise AssertionError(f"{n} ODE steps were accepted")


class _ExactVelocity(torch.nn.Module):
    """Knows the target x1 (passed as cond) and recovers x0 from x_t: returns the exact OT velocity."""

    def __init__(self, sigma_min: float):
        super().__init__()
        self.s = sigma_min

    def forward(self, x, mask, cond, t, g=None):
        t = t.view(-1, 1, 1)
        x0 = (x - t * cond) / (1 - (1 - self.s) * t)
        return (cond - (1 - self.s) * x0) * mask


def check_cfm_loss_zero_at_target() -> None:
    x1 = torch.randn(3, 4, 12, dtype=torch.float64)
    mask = commons.sequence_mask(torch.tensor([12, 7, 3]), 12).unsqueeze(1).double()
    mu = torch.randn_like(x1)
    for prior_start in (False, True):
        cfm = ConditionalFlowMatching(_ExactVelocity(1e-4), 1e-4, prior_start)
        loss = float(cfm.loss(x1 * mask, mask, x1 * mask, mu))
        assert loss < 1e-16, f"CFM loss {loss} at the exact target (prior_start={prior_start})"
    off = ConditionalFlowMatching(_ExactVelocity(0.5), 1e-4, False)  # a wrong sigma_min: loss must be > 0
    assert float(off.loss(x1 * mask, mask, x1 * mask, mu)) > 1e-4


def _tiny_hps():
    return config_lib.load_config(TINY_CONFIG)


def _perturb(model: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> torch.nn.Module:
    """Make zero-initialised layers active so the checks exercise every path."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return model


def _random_batch(n_vocab: int, lengths: List[int], seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    text = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for b, n in enumerate(lengths):
        text[b, :n] = torch.randint(1, n_vocab, (n,), generator=gen)
    return text, torch.tensor(lengths)


def check_batch_invariance() -> None:
    """A padded batch gives each item the durations and mel it gets when run alone."""
    hps = _tiny_hps()
    torch.manual_seed(0)
    model = _perturb(FlowMatchingTTS(len(text_lib.symbols), hps)).eval()
    text, lengths = _random_batch(len(text_lib.symbols), [13, 5, 9])
    for method in ("euler", "midpoint"):
        batch = model.infer(text, lengths, n_timesteps=3, method=method,
                            generator=[torch.Generator().manual_seed(b) for b in range(3)])
        for b, n in enumerate(lengths.tolist()):
            alone = model.infer(text[b:b + 1, :n], lengths[b:b + 1], n_timesteps=3, method=method,
                                generator=torch.Generator().manual_seed(b))
            t = int(alone["mel_lengths"][0])
            assert int(batch["mel_lengths"][b]) == t, "padding changed an item's length"
            err = float((batch["mel"][b, :, :t] - alone["mel"][0]).abs().max())
            assert err < 1e-4, f"padding changed item {b}'s mel by {err:.2e} ({method})"


def check_forward_backward() -> None:
    """Training forward on a random batch: finite losses; backward: finite gradients reaching the model."""
    hps = _tiny_hps()
    torch.manual_seed(0)
    model = _perturb(FlowMatchingTTS(len(text_lib.symbols), hps)).train()
    text, text_lengths = _random_batch(len(text_lib.symbols), [10, 6])
    mel_lengths = torch.tensor([40, 23])
    mel = torch.randn(2, hps.data.n_mel_channels, 40) * hps.data.mel_std + hps.data.mel_mean
    out = model(text, text_lengths, mel, mel_lengths)
    for key in ("loss_flow", "loss_dur", "loss_prior"):
        assert out[key].dim() == 0 and torch.isfinite(out[key]), f"{key} = {out[key]}"
    assert out["attn"].shape == (2, 10, 40)
    assert out["durations"].sum(1).tolist() == mel_lengths.tolist(), "alignment does not cover every frame"
    (out["loss_flow"] + out["loss_dur"] + out["loss_prior"]).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads), "missing or non-finite gradients"
    assert sum(float(g.abs().sum()) for g in grads) > 0


CORE_CHECKS = [check_euler_exact_on_constant_field, check_midpoint_exact_on_linear_field, check_sway_validation,
               check_cfm_loss_zero_at_target, check_batch_invariance, check_forward_backward]


# ----------------------------------------------------------------------------------------------------
# Synthesizer checks
# ----------------------------------------------------------------------------------------------------

def _text_tensor(sentence: str, hps) -> Tuple[torch.Tensor, torch.Tensor]:
    ids = text_lib.text_to_sequence(sentence, hps.data.text_cleaners, language=hps.data.language)
    if hps.data.add_blank:
        ids = commons.intersperse(ids, 0)
    return torch.tensor([ids]), torch.tensor([len(ids)])


def check_synthesizer_end_to_end() -> None:
    hps = _tiny_hps()
    torch.manual_seed(0)
    model = FlowMatchingSynthesizer(len(text_lib.symbols), hps).eval()
    model.remove_weight_norm()
    text, lengths = _text_tensor("Hello world, this is a test.", hps)
    for method, steps in (("euler", 4), ("midpoint", 3)):
        audio, durations, mel, extra = model.infer(text, lengths, n_timesteps=steps, method=method,
                                                   generator=torch.Generator().manual_seed(0))
        frames = int(durations.sum())
        assert mel.shape == (1, hps.data.n_mel_channels, frames), f"mel {tuple(mel.shape)}"
        assert audio.shape == (1, 1, frames * hps.data.hop_length), \
            f"audio {tuple(audio.shape)} != mel frames {frames} * hop {hps.data.hop_length}"
        assert torch.isfinite(audio).all(), "non-finite audio"
        assert extra["nfe"] == steps * (1 if method == "euler" else 2), f"{method} NFE {extra['nfe']}"
        assert int(extra["audio_lengths"][0]) == audio.shape[-1]


def check_synthesizer_batch() -> None:
    """Two texts in one batch: each audio length is its own frames * hop."""
    hps = _tiny_hps()
    torch.manual_seed(1)
    model = FlowMatchingSynthesizer(len(text_lib.symbols), hps).eval()
    a, la = _text_tensor("A short one.", hps)
    b, lb = _text_tensor("And a somewhat longer sentence follows.", hps)
    text = torch.zeros(2, max(a.size(1), b.size(1)), dtype=torch.long)
    text[0, :a.size(1)], text[1, :b.size(1)] = a[0], b[0]
    audio, durations, _, extra = model.infer(text, torch.cat([la, lb]), n_timesteps=2)
    expected = (durations.sum(1) * hps.data.hop_length).tolist()
    assert extra["audio_lengths"].tolist() == expected and audio.shape[-1] == max(expected)


SYNTH_CHECKS = [check_synthesizer_end_to_end, check_synthesizer_batch]


def run_checks(checks: List[Callable[[], None]]) -> List[str]:
    """Run each check; returns the names of those that failed (with the reason printed)."""
    failed = []
    for check in checks:
        try:
            with torch.no_grad() if check is not check_forward_backward else nullcontext():
                check()
            print(f"  ok    {check.__name__}")
        except Exception as e:  # report every failing check, not only the first
            failed.append(check.__name__)
            print(f"  FAIL  {check.__name__}: {type(e).__name__}: {e}")
            traceback.print_exc(limit=-2, file=sys.stdout)
    return failed


# ----------------------------------------------------------------------------------------------------
# Speed table
# ----------------------------------------------------------------------------------------------------

def load_model(args, device: torch.device):
    """(model, hps, description) from --checkpoint (EMA weights) or --config with random weights."""
    if args.checkpoint:
        from checkpoint import load_checkpoint

        ckpt = load_checkpoint(args.checkpoint, map_location="cpu")
        hps = config_lib.from_dict(ckpt["config"])
        model = FlowMatchingSynthesizer(int(ckpt["n_vocab"]), hps)
        model.load_state_dict(ckpt.get("ema") or ckpt["model"])
        what = f"{args.checkpoint} (EMA weights)"
    else:
        hps = config_lib.load_config(args.config)
        torch.manual_seed(0)
        model = FlowMatchingSynthesizer(len(text_lib.symbols), hps)
        what = f"{args.config} (random weights)"
    model.remove_weight_norm()
    return model.to(device).eval(), hps, what


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
            audio, _, _, extra = model.infer(text, lengths, n_timesteps=steps, method=method,
                                             generator=torch.Generator().manual_seed(0), durations=durations)
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
    args = p.parse_args(argv)
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
    print("Flow Matching core checks")
    core_failed = run_checks(CORE_CHECKS)
    if not core_failed:
        print("All Flow Matching core tests passed!")
    print("FlowMatchingSynthesizer checks")
    synth_failed = run_checks(SYNTH_CHECKS)
    if not synth_failed:
        print("All FlowMatchingSynthesizer tests passed!")
    failed = core_failed + synth_failed
    if failed:
        print(f"\n{len(failed)} check(s) FAILED: {', '.join(failed)}; no speed table", file=sys.stderr)
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
