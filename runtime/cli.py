"""Speaking from the command line, shared by the torch-free `flowtts` command (this module's `main`) and the
research checkout's `inference_flow_matching.py`: text in, 16-bit PCM WAV (or raw PCM on stdout) out.

    flowtts --voice onnx/multispeaker --text "Hello world." --output hello.wav
    echo "Hello world." | flowtts --voice onnx/multispeaker --text - --output - | aplay -r 22050 -f S16_LE -c 1
    flowtts --voice onnx/multispeaker --text-file lines.txt --output-dir out/
    flowtts --voice onnx/multispeaker --ssml --text '<speak>Hi <break time="300ms"/> there.</speak>' -o hi.wav

Every bad input ends with one `error: ...` line on stderr and exit status 2 (argparse's own usage errors use 2 as
well); WAV files are written atomically (never half-written), and never over an input file.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import warnings
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from atomic import check_output_path, write_text_atomic
from audio import save_wav, to_pcm16, write_wav_stream
from sampling import SamplingConfig, add_sampling_arguments, from_args
from text.cleaners import UnknownSymbolWarning
from text.sentences import split_sentences
from text.ssml import parse_ssml
from .pipeline import check_is_text

USER_ERROR = 2  # the exit status of every user error, as argparse's

Job = Tuple[str, Path, Optional[str]]  # (text, output path, label such as "line 3" for --text-file)


def add_speech_arguments(p: argparse.ArgumentParser) -> None:
    """What to say, where to write it, how to sample, who speaks."""
    src = p.add_mutually_exclusive_group()
    src.add_argument("--text", "-t", help="text to speak (long text is split into sentences); - reads stdin")
    src.add_argument("--text-file", help="UTF-8 file, one utterance per line -> numbered WAVs in --output-dir")
    p.add_argument("--output", "-o", default="out.wav",
                   help="output WAV for --text (default: out.wav), written as it is synthesized; - streams raw "
                        "16-bit mono PCM to stdout (e.g. | aplay -r 22050 -f S16_LE -c 1)")
    p.add_argument("--output-dir", default="out", help="output folder for --text-file (default: out/, created)")
    p.add_argument("--ssml", action="store_true",
                   help="the --text (or the whole --text-file) is one SSML document (docs/inference.md, SSML), "
                        "written to --output")
    p.add_argument("--alignments", metavar="JSON", help="with --text: write word and phoneme start/end seconds here")
    add_sampling_arguments(p)
    p.add_argument("--speaker", type=_speaker, default=None,
                   help="speaker name or id for multi-speaker voices, or a blend of them by weight: "
                        "'awb:0.7,slt_hts:0.3' (or 'awb(7)+slt_hts(3)')")
    p.add_argument("--list-speakers", action="store_true", help="print the voice's speakers and exit")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: the runtime's choice)")


def _speaker(value: str):
    """--speaker: an id (digits), a name or a blend (speaker_blend.py)."""
    return int(value) if value.isdigit() else value


def check_speech_args(args: argparse.Namespace) -> None:
    """ValueError for a bad combination of the flags of add_speech_arguments; reads stdin for --text -."""
    from_args(args)  # a bad sampling flag fails before anything is loaded
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be a positive integer, got {args.threads}")
    if args.text is None and args.text_file is None and not args.list_speakers:
        raise ValueError("nothing to say: pass --text \"...\" or --text-file FILE")
    if args.text == "-":
        args.text = read_stdin_text()
    if args.text is not None and not args.text.strip():
        raise ValueError("--text is empty; give some words to speak")
    if args.text is not None:
        check_is_text(args.text, "--text")
    if args.ssml and args.alignments is not None:
        raise ValueError("--alignments goes with plain --text, not --ssml")
    if args.output == "-" and args.text_file is not None and not args.ssml:
        raise ValueError("--output - (raw PCM on stdout) goes with --text, not --text-file")
    if args.alignments is not None and args.text_file is not None:
        raise ValueError("--alignments goes with --text, not --text-file")


def read_stdin_text() -> str:
    """--text -: stdin as UTF-8 text; ValueError for bytes that are not (random data would speak as babble)."""
    if not hasattr(sys.stdin, "buffer"):  # replaced by a text stream (tests, embedding): already decoded
        return sys.stdin.read()
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"--text - (stdin) does not look like text: it is not UTF-8 (byte 0x{data[e.start]:02x} at "
                         f"offset {e.start}); pipe UTF-8 text") from None


def plan_jobs(args: argparse.Namespace) -> List[Job]:
    """The utterances and their output paths, each checked to hold something speakable; creates --output-dir."""
    if args.ssml:
        return [(_ssml_document(args), Path(args.output), None)]
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
    return jobs


def _ssml_document(args: argparse.Namespace) -> str:
    """--ssml: the document (--text, or the whole --text-file), parsed once here so that a malformed one fails
    before the voice is loaded (ValueError with its line and column)."""
    if args.text_file is None:
        document = args.text
    else:
        try:
            document = Path(args.text_file).read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"SSML file {args.text_file} is not UTF-8: {e}") from None
        check_is_text(document, args.text_file)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its warnings come once, when it is spoken
        parse_ssml(document)
    return document


def check_outputs(args: argparse.Namespace, jobs: Sequence[Job], inputs: Sequence) -> None:
    """Every output path is writable and none is an input or another output (atomic.check_output_path)."""
    flag = "--output-dir" if args.text_file is not None and not args.ssml else "--output"
    outputs = [] if args.output == "-" else [(path, flag) for _, path, _ in jobs]
    if args.alignments:
        outputs.append((args.alignments, "--alignments"))
    for i, (path, flag) in enumerate(outputs):
        check_output_path(path, inputs=(*inputs, *(p for p, _ in outputs[:i])), flag=flag,
                          example="alignments.json" if flag == "--alignments" else "out.wav")


def _read_text_file(path: str) -> List[Tuple[int, str]]:
    """(line number, text) for every non-blank line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"text file {path} is not UTF-8: {e}") from None
    items = [(n, line.strip()) for n, line in enumerate(lines, 1) if line.strip()]
    if not items:
        raise ValueError(f"text file {path} has no non-blank lines")
    for n, line in items:
        check_is_text(line, f"line {n} of {path}")
    return items


def list_speakers(tts) -> int:
    names = tts.speaker_names or [str(i) for i in range(tts.n_speakers)]
    default = tts.validate_speaker(None)
    print("\n".join(f"{i}\t{name}" + ("\t(default)" if i == default else "") for i, name in enumerate(names))
          if tts.n_speakers > 1 else "single speaker (no --speaker needed)")
    return 0


def speak(tts, args: argparse.Namespace, jobs: Sequence[Job], runtime: str) -> int:
    """Synthesize every job with `tts` (a pipeline.SpeechPipeline) at the voice's default sampling settings, changed
    by the command line's sampling flags; `runtime` is a line describing where it ran."""
    from tqdm import tqdm

    sampling = from_args(args, tts.default_sampling)
    if args.ssml:
        return _speak_ssml(tts, args, jobs[0][0], sampling, runtime)
    if args.text_file is None:
        return _speak_text(tts, args, sampling, runtime)
    prepared = []
    for text, path, label in jobs:  # clean every utterance first: a bad line fails before any file is written
        try:
            prepared.append((tts.prepare(text), path))
        except ValueError as e:
            raise ValueError(f"{label} of {args.text_file}: {e}" if label else str(e)) from None
    tts.speaker_weights(args.speaker)
    progress = tqdm(prepared, desc="synthesizing", unit="file", disable=len(prepared) < 2, file=sys.stderr)
    for sequences, path in progress:
        audio, sample_rate, info = tts.synthesize_sequences(sequences, sampling, args.speaker, args.seed)
        save_wav(path, audio, sample_rate)
        tqdm.write(_summary(str(path), info, sampling))
    print(runtime)
    return 0


def _summary(name: str, info: dict, sampling: SamplingConfig) -> str:
    audio_s = max(info["audio_seconds"], 1e-9)
    return (f"{name}: {info['audio_seconds']:.2f} s audio, {info['sentences']} sentence(s), "
            f"NFE {info['nfe']} per sentence ({sampling.steps} {sampling.method} steps)\n"
            f"  RTF {info['rtf']:.3f} = acoustic {info['acoustic_seconds'] / audio_s:.3f}"
            f" + vocoder {info['vocoder_seconds'] / audio_s:.3f}"
            f" (acoustic {info['acoustic_seconds']:.2f} s, vocoder {info['vocoder_seconds']:.2f} s)")


def _speak_text(tts, args: argparse.Namespace, sampling: SamplingConfig, runtime: str) -> int:
    """--text: stream the audio into the WAV (or raw PCM to stdout) as it is made; memory stays flat."""
    from tqdm import tqdm

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


def _speak_ssml(tts, args: argparse.Namespace, document: str, sampling: SamplingConfig, runtime: str) -> int:
    """--ssml: the whole document at once (pipeline.SpeechPipeline.synthesize_ssml), then the WAV or raw PCM."""
    audio, sample_rate, info = tts.synthesize_ssml(document, sampling, args.speaker, args.seed)
    if args.output == "-":
        sys.stdout.buffer.write(to_pcm16(audio))
        sys.stdout.buffer.flush()
        print(_summary("stdout", info, sampling), file=sys.stderr)
        return 0
    save_wav(args.output, audio, sample_rate)
    print(f"{_summary(args.output, info, sampling)}\n{runtime}")
    return 0


def _with_rtf(stats: dict) -> dict:
    return {**stats, "rtf": (stats["acoustic_seconds"] + stats["vocoder_seconds"]) / max(stats["audio_seconds"], 1e-9)}


class WarningLines:
    """Warnings as `warning: ...` lines on stderr. Dropped or replaced characters (UnknownSymbolWarning) come
    once per sentence, so a text full of them would flood the terminal: they are kept and summed up in one line
    by `flush`."""

    def __init__(self):
        self.unknown: List[str] = []

    def show(self, message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, UnknownSymbolWarning):
            self.unknown.append(str(message))
        else:
            print(f"warning: {message}", file=sys.stderr)

    def flush(self) -> None:
        """Print the dropped-character warnings: the one as it is, or several as one line."""
        if len(self.unknown) == 1:
            print(f"warning: {self.unknown[0]}", file=sys.stderr)
        elif self.unknown:
            codes = sorted(set(re.findall(r"U\+[0-9A-F]{4,6}", " ".join(self.unknown))))
            shown = ", ".join(codes[:20]) + (f" and {len(codes) - 20} more" if len(codes) > 20 else "")
            print(f"warning: characters with no spoken form were dropped or replaced ({shown}), "
                  f"{len(self.unknown)} times; the first: {self.unknown[0]}", file=sys.stderr)
        self.unknown = []


def run_reporting_errors(run, args: argparse.Namespace, errors: Tuple[type, ...] = ()) -> int:
    """run(args) with warnings as `warning: ...` lines (WarningLines) and a user error (ValueError, OSError or one
    of `errors`) as one `error: ...` line and exit status USER_ERROR; 130 on Ctrl-C."""
    lines = WarningLines()
    with warnings.catch_warnings():
        warnings.showwarning = lines.show
        try:
            return run(args)
        except (ValueError, OSError, *errors) as e:
            print(f"error: {e}", file=sys.stderr)
            return USER_ERROR
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            return 130
        finally:
            lines.flush()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flowtts", description="Speak with an exported flow-matching TTS voice "
                                "(onnxruntime and numpy, no torch).")
    p.add_argument("--voice", required=True, metavar="DIR",
                   help="voice folder written by `python -m inference.export_onnx` (graphs + voice.json)")
    p.add_argument("--int8", action="store_true", help="the int8-quantized velocity net and vocoder (export --int8)")
    add_speech_arguments(p)
    return p


def _run(args: argparse.Namespace) -> int:
    from .onnx_synthesizer import OnnxSynthesizer

    check_speech_args(args)
    jobs = [] if args.list_speakers else plan_jobs(args)
    voice = Path(args.voice)
    if not args.list_speakers:
        check_outputs(args, jobs, inputs=(voice, args.text_file, *voice.glob("*")))
    tts = OnnxSynthesizer(voice, threads=args.threads, int8=args.int8)
    if args.list_speakers:
        return list_speakers(tts)
    threads = args.threads if args.threads is not None else "onnxruntime's default"
    return speak(tts, args, jobs, f"onnxruntime {'int8' if args.int8 else 'fp32'}, threads {threads}, graphs from {voice}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_reporting_errors(_run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
