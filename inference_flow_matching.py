"""Command-line synthesis: text -> 16-bit PCM WAV.

    python inference_flow_matching.py --checkpoint logs/ljs/G_100000.pth --text "Hello world." --output hello.wav
    python inference_flow_matching.py --checkpoint G.pth --text-file lines.txt --output-dir out/

The checkpoint carries its config, so --config is only needed to override it (it must fit the
checkpoint). EMA weights are used unless --no-ema. The speaking flags and their checks are the torch-free
runtime's (runtime/cli.py, the `flowtts` command): every bad input ends with one `error: ...` line on stderr and
exit status 2; WAV files are written atomically (never half-written), and never over an input file (checkpoint,
config, text file) or another output.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from runtime import cli

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Synthesize speech with a flow-matching TTS checkpoint.")
    p.add_argument("--checkpoint", help="G_<step>.pth from training or a voice file (default: the "
                                        "multi-speaker voice pretrained/multispeaker.pth)")
    p.add_argument("--onnx", metavar="DIR", help="speak with an inference.export_onnx folder instead: onnxruntime "
                                                 "and numpy only, no torch (sampling defaults from its voice.json)")
    p.add_argument("--int8", action="store_true", help="with --onnx: the int8-quantized velocity net and vocoder")
    p.add_argument("--config", "-c", help="override the config stored in the checkpoint (must fit it)")
    cli.add_speech_arguments(p)
    p.add_argument("--ref-audio", metavar="WAV", help="speak in the voice of this clip (0.5-30 s; a voice trained "
                   "with a prompt context, e.g. configs/multispeaker.json); needs --ref-text")
    p.add_argument("--ref-text", help="the words spoken in --ref-audio")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA weights")
    return p


def _check_args(args: argparse.Namespace) -> None:
    if args.onnx is not None and (args.checkpoint or args.config or args.no_ema or args.device != "cpu"):
        raise ValueError("--onnx speaks with the export folder alone: drop --checkpoint, --config, --no-ema and "
                         "--device")
    if (args.ref_audio is None) != (args.ref_text is None):
        raise ValueError("--ref-audio and --ref-text go together: the clip and the words spoken in it")
    if args.ref_audio is not None and args.onnx is not None:
        raise ValueError("--ref-audio needs the torch runtime (drop --onnx)")
    if args.int8 and args.onnx is None:
        raise ValueError("--int8 needs --onnx DIR (an export made with inference.export_onnx --int8)")
    cli.check_speech_args(args)


def _resolve_checkpoint(arg: Optional[str]) -> Path:
    from training.checkpoint import CheckpointError
    from training.voice_file import DEFAULT_VOICE

    if arg is not None:
        return Path(arg)
    if not DEFAULT_VOICE.is_file():
        raise CheckpointError(f"no --checkpoint given and the default voice {DEFAULT_VOICE} is not there; "
                              "pass --checkpoint logs/NAME/G_<step>.pth or train one with "
                              "`python train_flow_matching.py -c configs/<config>.json -m NAME`")
    return DEFAULT_VOICE


def _load(args: argparse.Namespace, checkpoint: Optional[Path]):
    """(synthesizer, a line describing the runtime). torch only when needed."""
    if args.onnx is not None:
        from runtime.onnx_synthesizer import OnnxSynthesizer

        tts = OnnxSynthesizer(args.onnx, threads=args.threads, int8=args.int8)
        threads = args.threads if args.threads is not None else "onnxruntime's default"
        return tts, (f"onnxruntime {'int8' if args.int8 else 'fp32'}, threads {threads}, no warm-up "
                                   f"(timings include the first run), graphs from {args.onnx}")
    import torch

    from inference.synthesizer import TorchSynthesizer

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    tts = TorchSynthesizer.from_checkpoint(checkpoint, device=args.device, use_ema=not args.no_ema, config=args.config)
    if args.ref_audio is not None:
        tts.set_reference(args.ref_audio, args.ref_text)
    dtype = "fp32, the vocoder in bf16" if tts.model.vocoder_bf16 else "fp32"
    return tts, (f"device {tts.device}, threads {torch.get_num_threads()}, {dtype}, no warm-up "
                                   f"(timings include the first run), {'raw' if args.no_ema else 'EMA'} weights "
                                   f"from {checkpoint}")


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    if args.onnx is None:
        from training.voice_file import parse_device

        parse_device(args.device)
    if args.list_speakers:
        return cli.list_speakers(_load(args, None if args.onnx else _resolve_checkpoint(args.checkpoint))[0])
    # Check everything that can fail before the slow part: texts, outputs, then the checkpoint.
    jobs = cli.plan_jobs(args)
    checkpoint = None if args.onnx else _resolve_checkpoint(args.checkpoint)
    cli.check_outputs(args, jobs, inputs=(checkpoint, args.config, args.text_file, args.ref_audio))
    tts, runtime = _load(args, checkpoint)
    return cli.speak(tts, args, jobs, runtime)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from config import ConfigError
    from training.checkpoint import CheckpointError

    return cli.run_reporting_errors(run, build_parser().parse_args(argv), (CheckpointError, ConfigError))


if __name__ == "__main__":
    sys.exit(main())
