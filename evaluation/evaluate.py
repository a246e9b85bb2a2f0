"""Objective evaluation of a checkpoint on a filelist: intelligibility, spectral distance, timing, speed.

    python -m evaluation.evaluate --checkpoint logs/NAME/G_20000.pth --filelist datasets/festival_slt/metadata_test.csv \
        --steps 10 --method euler --sway-coef -1.0 --output report.json [--save-audio eval_wavs/]
    python -m evaluation.evaluate --filelist datasets/festival_slt/metadata_test.csv --ground-truth-only

For every line of the filelist (LJSpeech metadata.csv or VITS `wav|text` with raw, unphonemized text)
the text is synthesized with the high-level API (synthesize.Synthesizer, EMA weights by default) and
scored against the reference recording:

  wer_synth   pocketsphinx word error of the synthesized audio against the text
  wer_ref     the same recogniser on the reference audio: the ceiling this ASR allows
  mcd         mel-cepstral distortion (dB, 24 coefficients, DTW-aligned, silence trimmed)
  log_dur     log(synthesized / reference speech duration), silence trimmed; the mean of |log_dur| is reported
  p808, ovrl  DNSMOS naturalness (evaluation/naturalness.py) of the synthesized audio; p808_ref, ovrl_ref of
              the recording: its ceiling (--no-dnsmos skips them, about a second per clip)
  rtf         wall time of TorchSynthesizer.synthesize (text front end + acoustic model + vocoder) / audio seconds
  rtf_model   the same without the text front end (acoustic model + vocoder only)

Summary WERs are corpus-level (total errors / total reference words); per-utterance means are in the
JSON as well. One synthesis runs first as an untimed warm-up. --ground-truth-only needs no checkpoint
and only transcribes the references (the ASR ceiling for that data).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Union

from evaluation import metrics
from evaluation.asr import Transcriber
from evaluation.naturalness import dnsmos
from atomic import write_text_atomic
from audio import AudioError, read_audio
from data_utils import FilelistError, Utterance, read_filelist
from sampling import SamplingConfig, add_sampling_arguments, from_args
from inference.synthesizer import check_output_path
from evaluation.hardware import cpu_name, hardware_name

_PHONEME_CHARS = set("əɪʊʌɛæɑɔɒθðʃʒŋɹɾˈˌːɚɝ")


def load_utterances(path: Path, limit: Optional[int] = None) -> List[Utterance]:
    """Filelist lines with raw text; ValueError when the text is already phonemized."""
    utts = read_filelist(path)[:limit]
    if not utts:
        raise ValueError(f"filelist {path} holds no utterances")
    for u in utts:
        if _PHONEME_CHARS & set(u.text):
            raise ValueError(f"{u.where}: the text looks phonemized ({u.text[:60]!r}); evaluation needs the "
                             f"words. Pass the LJSpeech metadata.csv or a `wav|text` filelist with raw text.")
    return utts


def _finite(x) -> Optional[float]:
    """JSON-safe number: None for NaN / inf / missing."""
    return float(x) if x is not None and math.isfinite(float(x)) else None


def hardware_info(device: str) -> Dict:
    import torch
    info = {"device": device, "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "processor": cpu_name(), "torch": torch.__version__, "dtype": "float32"}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = hardware_name(device)
    return info


def evaluate(utterances: List[Utterance], transcriber: Transcriber, synthesizer=None,
             sampling: Optional[SamplingConfig] = None, seed: int = 0, save_audio: Optional[Path] = None,
             log=print, speaker: Union[None, int, str] = None, naturalness: bool = True) -> Dict:
    """Score every utterance; returns {"utterances": [...], "summary": {...}}.

    synthesizer: a synthesize.Synthesizer, or None to score the reference audio only. speaker: speak every
    utterance with this speaker (name or id) instead of the filelist's speaker column. naturalness: DNSMOS of
    the recordings and the synthesized audio.
    A failing utterance (unreadable audio, unspeakable text) is reported in its row and skipped.
    """
    # A multi-speaker voice speaks each utterance's speaker, unless a reference clip sets the voice.
    multi_speaker = (synthesizer is not None and synthesizer.n_speakers > 1
                     and getattr(synthesizer, "reference", None) is None)

    def speaker_of(utt: Utterance):
        return (utt.speaker if speaker is None else speaker) if multi_speaker else None
    settings = dict(sampling=sampling or getattr(synthesizer, "default_sampling", None), seed=seed)
    if synthesizer is not None:  # warm-up: first-call allocations and lazy init are not timed
        synthesizer.synthesize(utterances[0].text, speaker=speaker_of(utterances[0]), **settings)
    rows = []
    for k, utt in enumerate(utterances, start=1):
        row = {"id": Path(utt.wav_path).stem, "text": utt.text, "words": len(metrics.normalize_for_wer(utt.text).split())}
        try:
            ref = read_audio(utt.wav_path)
            t0 = time.perf_counter()
            row["ref_hyp"] = transcriber.transcribe(ref.wav, ref.sampling_rate)
            asr_seconds = time.perf_counter() - t0
            row["wer_ref"] = metrics.wer(utt.text, row["ref_hyp"])
            row["ref_seconds"] = ref.seconds
            if naturalness:
                row.update(_dnsmos(ref.wav, ref.sampling_rate, "_ref"))
            if synthesizer is not None:
                t0 = time.perf_counter()
                wav, sr, info = synthesizer.synthesize(utt.text, speaker=speaker_of(utt), **settings)
                compute = time.perf_counter() - t0
                row["synth_seconds"] = len(wav) / sr
                row["compute_seconds"] = compute
                row["rtf"] = compute / max(row["synth_seconds"], 1e-9)
                row["model_seconds"] = float(info.get("acoustic_seconds", 0.0)) + float(info.get("vocoder_seconds", 0.0))
                row["rtf_model"] = row["model_seconds"] / max(row["synth_seconds"], 1e-9)
                row["nfe"] = info.get("nfe")
                t0 = time.perf_counter()
                row["synth_hyp"] = transcriber.transcribe(wav, sr)
                asr_seconds += time.perf_counter() - t0
                row["wer_synth"] = metrics.wer(utt.text, row["synth_hyp"])
                row["mcd"] = metrics.mcd_dtw(ref.wav, ref.sampling_rate, wav, sr)
                row["log_dur"] = metrics.log_duration_ratio(metrics.speech_seconds(wav, sr),
                                                            metrics.speech_seconds(ref.wav, ref.sampling_rate))
                if naturalness:
                    row.update(_dnsmos(wav, sr))
                if save_audio is not None:
                    from inference.synthesizer import save_wav
                    save_wav(save_audio / f"{row['id']}.wav", wav, sr)
            row["asr_seconds"] = asr_seconds
        except (AudioError, ValueError, OSError) as e:
            row["error"] = f"{type(e).__name__}: {e}"
            log(f"[{k}/{len(utterances)}] {row['id']}: FAILED {row['error']}")
            rows.append(row)
            continue
        rows.append(row)
        log(f"[{k}/{len(utterances)}] {row['id']}  wer_ref={row['wer_ref']:.2f}" +
            (f"  wer_synth={row['wer_synth']:.2f}  mcd={row['mcd']:.2f}  rtf={row['rtf']:.3f}"
             if synthesizer is not None else ""))
    return {"utterances": [{k: (_finite(v) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
            "summary": summarize(rows, synthesizer is not None)}


def _dnsmos(wav, sample_rate: int, suffix: str = "") -> Dict[str, float]:
    """{"p808" + suffix, "ovrl" + suffix}: the two DNSMOS scores the reports carry."""
    scores = dnsmos(wav, sample_rate)
    return {f"p808{suffix}": scores["p808"], f"ovrl{suffix}": scores["ovrl"]}


def summarize(rows: List[Dict], with_synthesis: bool) -> Dict:
    ok = [r for r in rows if "error" not in r]
    s: Dict = {"utterances": len(rows), "scored": len(ok), "failed": len(rows) - len(ok)}
    if not ok:
        return s
    s["wer_ref"] = metrics.corpus_wer([r["text"] for r in ok], [r["ref_hyp"] for r in ok])
    s["wer_ref_mean"] = metrics.finite_mean([r["wer_ref"] for r in ok])
    s["ref_audio_seconds"] = float(sum(r["ref_seconds"] for r in ok))
    for key in ("p808_ref", "ovrl_ref") + (("p808", "ovrl") if with_synthesis else ()):
        if key in ok[0]:
            s[f"{key}_mean"] = metrics.finite_mean([r[key] for r in ok])
    if with_synthesis:
        s["wer_synth"] = metrics.corpus_wer([r["text"] for r in ok], [r["synth_hyp"] for r in ok])
        s["wer_synth_mean"] = metrics.finite_mean([r["wer_synth"] for r in ok])
        s["mcd_mean"] = metrics.finite_mean([r["mcd"] for r in ok])
        s["abs_log_dur_ratio_mean"] = metrics.finite_mean([abs(r["log_dur"]) for r in ok])
        s["log_dur_ratio_mean"] = metrics.finite_mean([r["log_dur"] for r in ok])
        s["synth_audio_seconds"] = float(sum(r["synth_seconds"] for r in ok))
        s["rtf"] = float(sum(r["compute_seconds"] for r in ok)) / max(s["synth_audio_seconds"], 1e-9)
        s["rtf_model"] = float(sum(r["model_seconds"] for r in ok)) / max(s["synth_audio_seconds"], 1e-9)
        s["nfe"] = ok[0].get("nfe")
    return {k: (_finite(v) if isinstance(v, float) else v) for k, v in s.items()}


def format_table(report: Dict) -> str:
    """Per-utterance rows and the summary as a fixed-width text table."""
    synth = "wer_synth" in report["summary"]
    cols = ["id", "words", "wer_ref"] + (["wer_synth", "mcd", "log_dur", "rtf"] if synth else [])
    cols += [c for c in ("p808_ref", "p808") if f"{c}_mean" in report["summary"]]

    def fmt(v):
        return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    lines = [" ".join(f"{c:>10}" if i else f"{c:<14}" for i, c in enumerate(cols))]
    for r in report["utterances"]:
        if "error" in r:
            lines.append(f"{r['id']:<14} {r['error']}")
            continue
        lines.append(" ".join(f"{fmt(r.get(c)):>10}" if i else f"{r['id']:<14}" for i, c in enumerate(cols)))
    s = report["summary"]
    total = {"id": "ALL", "words": sum(r["words"] for r in report["utterances"]), "wer_ref": s.get("wer_ref"),
             "wer_synth": s.get("wer_synth"), "mcd": s.get("mcd_mean"), "log_dur": s.get("abs_log_dur_ratio_mean"),
             "rtf": s.get("rtf"), "p808_ref": s.get("p808_ref_mean"), "p808": s.get("p808_mean")}
    lines.append(" ".join(f"{fmt(total[c]):>10}" if i else f"{'ALL':<14}" for i, c in enumerate(cols)))
    note = ("ALL: corpus WER (errors / words), mean MCD dB, mean |log duration ratio|, total compute / total audio"
            if synth else "ALL: corpus WER (errors / words) of the reference audio")
    return "\n".join(lines + [note])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", "-m", help="G_<step>.pth to evaluate (not needed with --ground-truth-only)")
    p.add_argument("--filelist", required=True, help="LJSpeech metadata.csv or `wav|text` filelist (raw text)")
    p.add_argument("--limit", type=int, default=None, help="only the first N utterances")
    add_sampling_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speaker", help="multi-speaker voices: speak every line with this speaker (name or id) "
                                     "instead of the filelist's speaker column")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA weights")
    p.add_argument("--output", "-o", default=None, help="write the JSON report here")
    p.add_argument("--save-audio", default=None, help="folder for the synthesized WAVs (<id>.wav)")
    p.add_argument("--ground-truth-only", action="store_true", help="only transcribe the reference audio")
    p.add_argument("--no-dnsmos", action="store_true", help="skip the DNSMOS naturalness scores")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not args.ground_truth_only and not args.checkpoint:
        print("error: --checkpoint is required (or pass --ground-truth-only to score the reference audio)",
              file=sys.stderr)
        return 2
    if args.limit is not None and args.limit < 1:
        print(f"error: --limit must be a positive number, got {args.limit}", file=sys.stderr)
        return 2
    try:
        from_args(args)  # a bad sampling flag fails before anything is loaded
        utterances = load_utterances(Path(args.filelist), args.limit)
    except (FileNotFoundError, FilelistError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    synthesizer = sampling = speaker = None
    try:
        # Outputs first: a report that cannot be written must fail now, not after the whole run.
        if args.output:
            Path(args.output).parent.mkdir(parents=True, exist_ok=True)
            check_output_path(args.output, inputs=(args.checkpoint, args.filelist))
        save_audio = Path(args.save_audio) if args.save_audio else None
        if save_audio is not None:
            save_audio.mkdir(parents=True, exist_ok=True)
            check_output_path(save_audio / "probe.wav")
        if not args.ground_truth_only:
            import torch
            from inference.synthesizer import TorchSynthesizer
            if args.threads is not None:
                torch.set_num_threads(args.threads)
            synthesizer = TorchSynthesizer.from_checkpoint(args.checkpoint, device=args.device, use_ema=not args.no_ema)
            sampling = from_args(args, synthesizer.default_sampling)
            speaker = int(args.speaker) if args.speaker is not None and args.speaker.isdigit() else args.speaker
            synthesizer.speaker_weights(speaker)  # a name, an id or a blend
    except Exception as e:  # OSError, CheckpointError, ConfigError, ValueError: one clear line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    report = evaluate(utterances, Transcriber(), synthesizer, sampling, args.seed, save_audio,
                      speaker=speaker if synthesizer is not None else None, naturalness=not args.no_dnsmos)
    report["settings"] = {
        "checkpoint": args.checkpoint, "filelist": str(args.filelist), "limit": args.limit,
        "ground_truth_only": args.ground_truth_only, "asr": "pocketsphinx en-us (bundled model)",
        "wall_seconds": time.perf_counter() - t0,
        **({} if synthesizer is None else {
            **dataclasses.asdict(sampling), "seed": args.seed, "speaker": args.speaker,
            "ema": not args.no_ema,
            "vocoder_included": True, "vocoder_bf16": synthesizer.model.vocoder_bf16, "warmup_syntheses": 1}),
        "hardware": hardware_info(args.device) if synthesizer is not None else
        {"cpu_count": os.cpu_count(), "processor": cpu_name()},
    }
    print(format_table(report))
    if args.output:
        write_text_atomic(args.output, json.dumps(report, indent=2) + "\n")
        print(f"report written to {args.output}")
    return 0 if report["summary"]["scored"] else 1


if __name__ == "__main__":
    sys.exit(main())
