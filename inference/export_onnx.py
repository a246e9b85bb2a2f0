"""Export a voice to ONNX: three graphs and one JSON, everything the torch-free runtime needs.

    python -m inference.export_onnx pretrained/demo_voice.pth onnx/demo_voice            # fp32
    python -m inference.export_onnx pretrained/demo_voice.pth onnx/demo_voice --int8     # + int8 velocity and vocoder

Writes to OUT_DIR:
  encoder.onnx    ids (B, T_text) int64, lengths (B,) int64 [, speaker_weights (B, n_speakers) float32: one-hot
                  for one speaker, a blend's weights summing to 1 (runtime/speaker_blend.py)]
                  [, prosody_edit (B, 3) float32: pitch shift in semitones, pitch range factor, energy change
                  in dB (a voice with model.prosody_conditioning; 0, 1, 0 leaves the predicted prosody)]
                  -> h (B, H, T_text), mu (B, n_mels, T_text) (normalized mel; both with the edited prosody), logw (B, T_text) [, g (B, gin, 1)]
  velocity.onnx   x (B, n_mels, T), mask (B, 1, T), cond (B, H + n_mels, T), t (B,) [, g] -> v (B, n_mels, T)
                  (one call per ODE step, t as an input)
  vocoder.onnx    mel (B, n_mels, T) de-normalized log-mel [, g] -> audio (B, 1, T * hop) (conv iSTFT)
                  the source-filter vocoder (model.vocoder "source_filter") also takes f0, voicing (B, T),
                  cycles0 (B,) (the pulses' phase at the first frame) and noise (B, T * hop) (excitation.py),
                  and pitch.onnx gives the first two: mel (B, n_mels, T) -> f0 (B, T) Hz, voicing (B, T)
  voice.json      symbols, cleaners, language, add_blank, sample rate, hop, mel statistics, prior start,
                  speaker count and the default sampling settings
  *_int8.onnx     with --int8: onnxruntime's dynamic int8 quantization of the velocity net and vocoder
OUT_DIR must be new, empty or an earlier export of the same voice file (voice.json records the file's SHA-256):
another voice's export is refused, never mixed with this one, and re-exporting without --int8 removes the
earlier int8 graphs. --cfg-scale is refused for a voice that never learned the unconditional velocity.
Lengths are dynamic on every axis that is a length. onnx_runtime.py runs the folder with onnxruntime and
numpy only. A TensorRT engine can be built from the same files on a GPU, e.g.
    trtexec --onnx=velocity.onnx --saveEngine=velocity.plan --fp16 \
        --minShapes=x:1x80x1,mask:1x1x1,cond:1x272x1,t:1 --optShapes=x:1x80x400,mask:1x1x400,cond:1x272x400,t:1 \
        --maxShapes=x:1x80x3000,mask:1x1x3000,cond:1x272x3000,t:1
(272 = hidden_channels + n_mels for configs/small.json).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

import text as text_lib
from atomic import file_sha256, write_text_atomic
from config import default_sampling, guidance_refusal
from sampling import SamplingConfig
from source_filter import SourceFilterGenerator
from training.voice_file import load_voice

OPSET = 17
FORMAT_VERSION = 2  # 2: the encoder takes speaker_weights (blends), not speaker ids
GRAPHS = ("encoder.onnx", "velocity.onnx", "vocoder.onnx")
INT8_GRAPHS = ("velocity_int8.onnx", "vocoder_int8.onnx")


class EncoderGraph(nn.Module):
    """Text encoder + duration predictor of a FlowMatchingTTS as one graph; with prosody conditioning also the
    prosody predictor and its edit, so h comes out as the flow's text condition.
    forward(ids, lengths [, speaker_weights] [, prosody_edit])."""

    def __init__(self, acoustic):
        super().__init__()
        self.acoustic = acoustic
        self.multi = acoustic.emb_g is not None
        self.prosody = acoustic.prosody_predictor is not None

    def forward(self, ids, lengths, *extra):
        speaker_weights = extra[0] if self.multi else None
        h, mu, x_mask, g = self.acoustic._encode(ids, lengths, speaker_weights)
        logw = self.acoustic.duration_predictor(h, x_mask, g)
        if self.prosody:
            h, mu = self.acoustic.prosody_condition(h, mu, x_mask, g, extra[-1])
        return (h, mu, logw) if g is None else (h, mu, logw, g)


class VelocityGraph(nn.Module):
    def __init__(self, estimator):
        super().__init__()
        self.estimator = estimator

    def forward(self, x, mask, cond, t, g=None):
        return self.estimator(x, mask, cond, t, g)


class VocoderGraph(nn.Module):
    def __init__(self, generator):
        super().__init__()
        self.generator = generator

    def forward(self, mel, g=None):
        return self.generator(mel, g)[0]


class SourceFilterGraph(nn.Module):
    """The source-filter vocoder given its pitch, pulse phase and noise (the runtime computes the last two with
    excitation.py, so a window vocoded alone matches the whole clip). forward(mel, f0, voicing, cycles0, noise)."""

    def __init__(self, generator):
        super().__init__()
        self.generator = generator

    def forward(self, mel, f0, voicing, cycles0, noise):
        return self.generator(mel, None, (f0, voicing), cycles0, noise=noise)[0]


class PitchGraph(nn.Module):
    """The source-filter vocoder's pitch predictor: mel -> (f0, voicing)."""

    def __init__(self, generator):
        super().__init__()
        self.generator = generator

    def forward(self, mel):
        return self.generator.predict_pitch(mel)


def _export(module: nn.Module, args: tuple, path: Path, inputs: Sequence[str], outputs: Sequence[str],
            dynamic: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about python ints from shapes: shapes stay dynamic
        torch.onnx.export(module.eval(), args, str(path), dynamo=False, input_names=list(inputs),
                          output_names=list(outputs), dynamic_axes=dynamic, opset_version=OPSET)


def check_out_dir(out_dir: Path, sha256: str) -> None:
    """ValueError unless out_dir is missing, empty, or an earlier export of this very voice file (its voice.json
    "source" has the same SHA-256): writing into another voice's export would mix the two."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} is a file; give a folder")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    try:
        source = json.loads((out_dir / "voice.json").read_text(encoding="utf-8")).get("source") or {}
    except (OSError, ValueError, AttributeError):
        source = {}
    if isinstance(source, dict) and source.get("sha256") == sha256:
        return
    held = f"the export of {source['file']}" if isinstance(source, dict) and source.get("file") else "other files"
    raise ValueError(f"{out_dir} already holds {held}, not an export of this voice file; choose an empty folder "
                     f"or remove it first")


def voice_json(hps, step, sampling: SamplingConfig) -> dict:
    d, m = hps.data, hps.model
    return {"format_version": FORMAT_VERSION, "symbols": list(text_lib.symbols), "text_cleaners": list(d.text_cleaners),
            "language": d.language, "add_blank": d.add_blank, "sample_rate": d.sampling_rate,
            "hop_length": d.hop_length, "n_mel_channels": d.n_mel_channels, "mel_mean": float(d.mel_mean),
            "mel_std": float(d.mel_std), "prior_start": m.prior_start, "n_speakers": d.n_speakers,
            "speaker_names": list(d.speaker_names), "default_speaker": d.default_speaker,
            "gin_channels": m.gin_channels if d.n_speakers > 1 else 0,
            "cond_channels": m.hidden_channels + d.n_mel_channels * (2 if m.prompt_context else 1),
            "prosody_conditioning": m.prosody_conditioning, "vocoder": m.vocoder,
            "sampling": dataclasses.asdict(sampling), "guidance_refusal": guidance_refusal(hps), "step": step}


def export(checkpoint: Path, out_dir: Path, int8: bool = False, **sampling_changes) -> dict:
    """Write the folder (see the module docstring); returns voice.json's content. The stored default sampling
    is the voice file's own (config.default_sampling), with `sampling_changes` (steps, method, cfg_scale, ...)
    where given.

    out_dir must be missing, empty or an earlier export of the same voice file (check_out_dir); re-exporting
    without int8 removes that export's int8 graphs, so the folder never holds graphs of another export."""
    sha256 = file_sha256(checkpoint)
    check_out_dir(out_dir, sha256)
    model, hps = load_voice(checkpoint, istft_impl="conv")
    sampling = default_sampling(hps.model).replace(**sampling_changes)
    if sampling.cfg_scale and guidance_refusal(hps):
        raise ValueError(f"--cfg-scale {sampling.cfg_scale:g}: {guidance_refusal(hps)}")
    acoustic, d = model.acoustic, hps.data
    if acoustic.duration_predictor is None:
        raise ValueError(f"{checkpoint} has no duration predictor (model.use_duration_predictor false): the "
                         f"ONNX runtime needs one to speak text")
    multi = d.n_speakers > 1
    out_dir.mkdir(parents=True, exist_ok=True)
    t_text, t_mel, n_mels = 12, 40, d.n_mel_channels
    ids, lengths = torch.randint(1, len(text_lib.symbols), (1, t_text)), torch.tensor([t_text])
    spk = (torch.eye(d.n_speakers)[:1],) if multi else ()
    prosodic = acoustic.prosody_predictor is not None
    edit = (torch.tensor([[1.0, 1.2, -2.0]]),) if prosodic else ()
    enc_in = ["ids", "lengths"] + (["speaker_weights"] if multi else []) + (["prosody_edit"] if prosodic else [])
    enc_out = ["h", "mu", "logw"] + (["g"] if multi else [])
    _export(EncoderGraph(acoustic), (ids, lengths, *spk, *edit), out_dir / "encoder.onnx", enc_in, enc_out,
            {"ids": {0: "B", 1: "T_text"}, "lengths": {0: "B"}, "h": {0: "B", 2: "T_text"},
             "mu": {0: "B", 2: "T_text"}, "logw": {0: "B", 1: "T_text"},
             **({"speaker_weights": {0: "B"}} if multi else {}), **({"prosody_edit": {0: "B"}} if prosodic else {})})
    g = (torch.randn(1, hps.model.gin_channels, 1),) if multi else ()
    cond_channels = voice_json(hps, None, sampling)["cond_channels"]
    _export(VelocityGraph(acoustic.cfm.estimator),
            (torch.randn(1, n_mels, t_mel), torch.ones(1, 1, t_mel), torch.randn(1, cond_channels, t_mel),
             torch.full((1,), 0.5), *g), out_dir / "velocity.onnx",
            ["x", "mask", "cond", "t"] + (["g"] if multi else []), ["v"],
            {"x": {0: "B", 2: "T"}, "mask": {0: "B", 2: "T"}, "cond": {0: "B", 2: "T"}, "t": {0: "B"},
             "v": {0: "B", 2: "T"}, **({"g": {0: "B"}} if multi else {})})
    export_vocoder(model.generator, g if model.generator.cond is not None else (), out_dir, t_mel, n_mels)  # shared: no g
    if int8:
        quantize(out_dir)
    else:
        for name in INT8_GRAPHS:  # an earlier export's, of this same voice (check_out_dir)
            (out_dir / name).unlink(missing_ok=True)
    info = voice_json(hps, read_step(checkpoint), sampling)
    info["source"] = {"file": Path(checkpoint).name, "sha256": sha256}
    write_text_atomic(out_dir / "voice.json", json.dumps(info, indent=2) + "\n")
    return info


def export_vocoder(generator, g: tuple, out_dir: Path, t_mel: int, n_mels: int) -> None:
    """vocoder.onnx (and pitch.onnx for the source-filter vocoder)."""
    mel = torch.randn(1, n_mels, t_mel) - 5.0
    if not isinstance(generator, SourceFilterGenerator):
        (out_dir / "pitch.onnx").unlink(missing_ok=True)  # an earlier export's, of this same voice (check_out_dir)
        _export(VocoderGraph(generator), (mel, *g), out_dir / "vocoder.onnx", ["mel"] + (["g"] if g else []),
                ["audio"], {"mel": {0: "B", 2: "T"}, "audio": {0: "B", 2: "S"}})
        return
    _export(PitchGraph(generator), (mel,), out_dir / "pitch.onnx", ["mel"], ["f0", "voicing"],
            {"mel": {0: "B", 2: "T"}, "f0": {0: "B", 1: "T"}, "voicing": {0: "B", 1: "T"}})
    f0, voicing = generator.predict_pitch(mel)
    noise = torch.randn(1, t_mel * generator.hop_length)
    _export(SourceFilterGraph(generator), (mel, f0, voicing, torch.zeros(1), noise), out_dir / "vocoder.onnx",
            ["mel", "f0", "voicing", "cycles0", "noise"], ["audio"],
            {"mel": {0: "B", 2: "T"}, "f0": {0: "B", 1: "T"}, "voicing": {0: "B", 1: "T"}, "cycles0": {0: "B"},
             "noise": {0: "B", 1: "S"}, "audio": {0: "B", 2: "S"}})


def read_step(checkpoint: Path) -> Optional[int]:
    return torch.load(checkpoint, map_location="cpu", weights_only=True).get("step")


def quantize(out_dir: Path) -> None:
    """velocity_int8.onnx and vocoder_int8.onnx: dynamic int8 weights (MatMul / Gemm / Conv)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    for name in ("velocity", "vocoder"):
        quantize_dynamic(str(out_dir / f"{name}.onnx"), str(out_dir / f"{name}_int8.onnx"), weight_type=QuantType.QInt8)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from training.checkpoint import CheckpointError
    from config import ConfigError

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="voice file or G_<step>.pth")
    p.add_argument("out_dir", help="folder for the graphs and voice.json (created)")
    p.add_argument("--int8", action="store_true", help="also write int8-quantized velocity and vocoder graphs")
    p.add_argument("--steps", type=int, default=None,
                   help="default ODE steps stored for the runtime (default: the voice's own, model.sampling_steps)")
    p.add_argument("--method", default=None,
                   help="default solver stored for the runtime (default: the voice's own, model.sampling_method)")
    p.add_argument("--cfg-scale", type=float, default=None,
                   help="default guidance scale stored for the runtime (default: the voice's model.cfg_scale)")
    args = p.parse_args(argv)
    out = Path(args.out_dir)
    try:
        changes = {k: v for k, v in (("steps", args.steps), ("method", args.method), ("cfg_scale", args.cfg_scale))
                   if v is not None}
        SamplingConfig(**changes)  # a bad value fails before anything is loaded
        if not Path(args.checkpoint).is_file():
            raise FileNotFoundError(f"voice file {args.checkpoint} does not exist")
        info = export(Path(args.checkpoint), out, args.int8, **changes)
    except (CheckpointError, ConfigError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    written = GRAPHS + (("pitch.onnx",) if info["vocoder"] == "source_filter" else ()) + (INT8_GRAPHS if args.int8 else ())
    sizes = ", ".join(f"{name} {(out / name).stat().st_size / 1e6:.1f} MB" for name in written)
    default = info["sampling"]
    print(f"wrote {out}: {sizes}; voice.json (step {info['step']}, default {default['steps']} {default['method']} "
          f"steps, guidance {default['cfg_scale']:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
