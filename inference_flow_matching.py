"""Command-line synthesis: text -> 16-bit PCM WAV.

    python inference_flow_matching.py --checkpoint logs/ljs/G_100000.pth --text "Hello world." --output hello.wav
    python inference_flow_matching.py --checkpoint G.pth --text-file lines.txt --output-dir out/

The checkpoint carries its config, so --config is only needed to override it (it must fit the
checkpoint). EMA weights are used unless --no-ema. Every bad input ends with one `error: ...` line on
stderr and a non-zero exit status; WAV files are written atomically (never half-written), and never
over an input file (checkpoint, config, text file).
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from sampling import SamplingConfig, add_sampling_arguments, from_args

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "pretrained" / "multispeaker.pth"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Synthesize speech with a flow-matching TTS checkpoint.")
    p.add_argument("--checkpoint", help="G_<step>.pth from training or a voice file (default: the "
                                        "multi-speaker voice pretrained/multispeaker.pth)")
    p.add_argument("--onnx", metavar="DIR", help="speak with an export_onnx.py folder instead: onnxruntime and "
                                                 "numpy only, no torch (sampling defaults from its voice.json)")
    p.add_argument("--int8", action="store_true", help="with --onnx: the int8-quantized velocity net and vocoder")
    p.add_argument("--config", "-c", help="override the config stored in the checkpoint (must fit it)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--text", "-t", help="text to speak (long text is split into sentences); - reads stdin")
    src.add_argument("--text-file", help="UTF-8 file, one utterance per line -> numbered WAVs in --output-dir")
    p.add_argument("--output", "-o", default="out.wav",
                   help="output WAV for --text (default: out.wav), written as it is synthesized; - streams raw "
                        "16-bit mono PCM to stdout (e.g. | aplay -r 22050 -f S16_LE -c 1)")
    p.add_argument("--output-dir", default="out", help="output folder for --text-file (default: out/, created)")
    p.add_argument("--alignments", metavar="JSON", help="with --text: write word and phoneme start/end seconds here")
    add_sampling_arguments(p)
    p.add_argument("--speaker", type=_speaker, default=None, help="speaker name or id for multi-speaker models")
    p.add_argument("--list-speakers", action="store_true", help="print the voice's speakers and exit")
    p.add_argument("--ref-audio", metavar="WAV", help="speak in the voice of this clip (0.5-30 s; a voice trained "
                   "with a prompt context, e.g. configs/multispeaker.json); needs --ref-text")
    p.add_argument("--ref-text", help="the words spoken in --ref-audio")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: the runtime's choice)")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA weights")
    return p


def _speaker(value: str):
    """--speaker: an id (digits) or a name."""
    return int(value) if value.isdigit() else value


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


def _check_args(args: argparse.Namespace) -> None:
    from_args(args)  # ValueError for a bad sampling flag, before anything is loaded
    if args.onnx is not None and (args.checkpoint or args.config or args.no_ema or args.device != "cpu"):
        raise ValueError("--onnx speaks with the export folder alone: drop --checkpoint, --config, --no-ema and "
                         "--device")
    if (args.ref_audio is None) != (args.ref_text is None):
        raise ValueError("--ref-audio and --ref-text go together: the clip and the words spoken in it")
    if args.ref_audio is not None and args.onnx is not None:
        raise ValueError("--ref-audio needs the torch runtime (drop --onnx)")
    if args.int8 and args.onnx is None:
        raise ValueError("--int8 needs --onnx DIR (an export made with export_onnx.py --int8)")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be a positive integer, got {args.threads}")
    if args.text is None and args.text_file is None and not args.list_speakers:
        raise ValueError("nothing to say: pass --text \"...\" or --text-file FILE")
    if args.text == "-":
        args.text = sys.stdin.read()
    if args.text is not None and not args.text.strip():
        raise ValueError("--text is empty; give some words to speak")
    if args.output == "-" and args.text_file is not None:
        raise ValueError("--output - (raw PCM on stdout) goes with --text, not --text-file")
    if args.alignments is not None and args.text_file is not None:
        raise ValueError("--alignments goes with --text, not --text-file")


def _resolve_checkpoint(arg: Optional[str]) -> Path:
    from checkpoint import CheckpointError

    if arg is not None:
        return Path(arg)
    if not DEFAULT_CHECKPOINT.is_file():
        raise CheckpointError(f"no --checkpoint given and the default voice {DEFAULT_CHECKPOINT} is not there; "
                              "pass --checkpoint logs/NAME/G_<step>.pth or train one with "
                              "`python train_flow_matching.py -c configs/<config>.json -m NAME`")
    return DEFAULT_CHECKPOINT


def _read_text_file(path: str) -> List[Tuple[int, str]]:
    """(line number, text) for every non-blank line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"text file {path} is not UTF-8: {e}") from None
    items = [(n, line.strip()) for n, line in enumerate(lines, 1) if line.strip()]
    if not items:
        raise ValueError(f"text file {path} has no non-blank lines")
    return items


def _summary(name: str, info: dict, sampling: SamplingConfig) -> str:
    audio_s = max(info["audio_seconds"], 1e-9)
    return (f"{name}: {info['audio_seconds']:.2f} s audio, {info['sentences']} sentence(s), "
            f"NFE {info['nfe']} per sentence ({sampling.steps} {sampling.method} steps)\n"
            f"  RTF {info['rtf']:.3f} = acoustic {info['acoustic_seconds'] / audio_s:.3f}"
            f" + vocoder {info['vocoder_seconds'] / audio_s:.3f}"
            f" (acoustic {info['acoustic_seconds']:.2f} s, vocoder {info['vocoder_seconds']:.2f} s)")


def _load(args: argparse.Namespace, checkpoint: Optional[Path]):
    """(synthesizer, its default SamplingConfig, a line describing the runtime). torch only when needed."""
    if args.onnx is not None:
        from onnx_runtime import OnnxSynthesizer

        tts = OnnxSynthesizer(args.onnx, threads=args.threads, int8=args.int8)
        threads = args.threads if args.threads is not None else "onnxruntime's default"
        return tts, tts.default_sampling, (f"onnxruntime {'int8' if args.int8 else 'fp32'}, threads {threads}, no warm-up "
                                   f"(timings include the first run), graphs from {args.onnx}")
    import torch

    from synthesize import Synthesizer

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    tts = Synthesizer.from_checkpoint(checkpoint, device=args.device, use_ema=not args.no_ema, config=args.config)
    if args.ref_audio is not None:
        tts.set_reference(args.ref_audio, args.ref_text)
    return tts, tts.default_sampling, (f"device {tts.device}, threads {torch.get_num_threads()}, fp32, no warm-up "
                                   f"(timings include the first run), {'raw' if args.no_ema else 'EMA'} weights "
                                   f"from {checkpoint}")


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    from tqdm import tqdm

    from atomic import check_output_path
    from audio import save_wav
    from text.sentences import split_sentences

    if args.onnx is None:
        from voice import parse_device

        parse_device(args.device)
    if args.list_speakers:
        tts = _load(args, None if args.onnx else _resolve_checkpoint(args.checkpoint))[0]
        names = tts.speaker_names or [str(i) for i in range(tts.n_speakers)]
        default = tts.validate_speaker(None)
        print("\n".join(f"{i}\t{name}" + ("\t(default)" if i == default else "") for i, name in enumerate(names))
              if tts.n_speakers > 1 else "single speaker (no --speaker needed)")
        return 0
    # Check everything that can fail before the slow part: texts, outputs, then the checkpoint.
    if args.text_file is not None:
        items = _read_text_file(args.text_file)
        width = max(4, len(str(items[-1][0])))
        jobs = [(text, Path(args.output_dir) / f"{n:0{width}d}.wav", f"line {n}") for n, text in items]
    else:
        jobs = [(args.text, Path(args.output), None)]
    for text, _, label in jobs:
        if not split_sentences(text):
            prefix = f"{label} of {args.text_file}: " if label else ""
            raise ValueError(f"{prefix}text {text[:80]!r} has nothing speakable (no letters or digits)")
    if args.text_file is not None:
        try:
            Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"cannot create output directory {args.output_dir}: {e.strerror or e}") from None
    checkpoint = None if args.onnx else _resolve_checkpoint(args.checkpoint)
    to_stdout = args.output == "-"
    outputs = ([] if to_stdout else [path for _, path, _ in jobs]) + ([args.alignments] if args.alignments else [])
    for path in outputs:
        check_output_path(path, inputs=(checkpoint, args.config, args.text_file, args.ref_audio))
    tts, defaults, runtime = _load(args, checkpoint)
    sampling = from_args(args, defaults)
    if args.text_file is None:
        return _speak_text(tts, args, sampling, runtime)
    prepared = []
    for text, path, label in jobs:  # clean every utterance first: a bad line fails before any file is written
        try:
            prepared.append((tts.prepare(text), path))
        except ValueError as e:
            raise ValueError(f"{label} of {args.text_file}: {e}" if label else str(e)) from None
    tts.validate_speaker(args.speaker)
    progress = tqdm(prepared, desc="synthesizing", unit="file", disable=len(prepared) < 2, file=sys.stderr)
    for sequences, path in progress:
        audio, sample_rate, info = tts.synthesize_sequences(sequences, sampling, args.speaker, args.seed)
        save_wav(path, audio, sample_rate)
        tqdm.write(_summary(str(path), info, sampling))
    print(runtime)
    return 0


def _speak_text(tts, args: argparse.Namespace, sampling: SamplingConfig, runtime: str) -> int:
    """--text: stream the audio into the WAV (or raw PCM to stdout) as it is made; memory stays flat."""
    from tqdm import tqdm

    from audio import to_pcm16, write_wav_stream

    if args.alignments is not None:
        return _speak_with_alignments(tts, args, sampling, runtime)
    stats: dict = {}
    n_sentences = len(tts.sentences(args.text))
    progress = tqdm(total=n_sentences, desc="synthesizing", unit="sentence", disable=n_sentences < 3,
                    file=sys.stderr)

    def chunks():
        # Raw PCM starts sooner (first clause first); a WAV equals the whole-text API output exactly.
        for chunk in tts.stream(args.text, sampling, args.speaker, args.seed, quick_start=args.output == "-",
                                stats=stats):
            progress.update(stats["sentences"] - progress.n)
            yield chunk

    if args.output == "-":
        for chunk in chunks():
            sys.stdout.buffer.write(to_pcm16(chunk))
            sys.stdout.buffer.flush()
    else:
        write_wav_stream(args.output, chunks(), tts.sample_rate)
    progress.update(stats["sentences"] - progress.n)
    progress.close()
    if args.output == "-":  # stdout carries the audio: the report goes to stderr
        print(_summary("stdout", _with_rtf(stats), sampling), file=sys.stderr)
        return 0
    print(_summary(args.output, _with_rtf(stats), sampling))
    print(runtime)
    return 0


def _speak_with_alignments(tts, args: argparse.Namespace, sampling: SamplingConfig, runtime: str) -> int:
    """--text with --alignments: the whole text at once, then the audio and the timings JSON."""
    import json

    from atomic import write_text_atomic
    from audio import save_wav, to_pcm16

    audio, sample_rate, info = tts.synthesize(args.text, sampling, args.speaker, args.seed, timings=True)
    if args.output == "-":
        sys.stdout.buffer.write(to_pcm16(audio))
        sys.stdout.buffer.flush()
    else:
        save_wav(args.output, audio, sample_rate)
    write_text_atomic(args.alignments, json.dumps({"sample_rate": sample_rate, "audio_seconds": len(audio) / sample_rate,
                                                   **info["timings"]}, indent=1, ensure_ascii=False) + "\n")
    report = _summary(args.output if args.output != "-" else "stdout", info, sampling)
    print(report, file=sys.stderr if args.output == "-" else sys.stdout)
    if args.output != "-":
        print(f"alignments: {len(info['timings']['words'])} words -> {args.alignments}\n{runtime}")
    return 0


def _with_rtf(stats: dict) -> dict:
    return {**stats, "rtf": (stats["acoustic_seconds"] + stats["vocoder_seconds"]) / max(stats["audio_seconds"], 1e-9)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from checkpoint import CheckpointError
    from config import ConfigError

    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return run(args)
        except (ValueError, CheckpointError, ConfigError, OSError) as e:  # OnnxVoiceError is a ValueError
            print(f"error: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
