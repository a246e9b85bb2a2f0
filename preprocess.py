"""Validate a dataset, phonemize its text, split train/val and compute mel statistics.

    python preprocess.py --dataset /data/LJSpeech-1.1 --out-dir filelists/ljs --config configs/ljs.json
    python preprocess.py --filelists a.txt b.txt --out-dir filelists/mine --val-size 50

Inputs hold raw text: an LJSpeech-style folder (metadata.csv `id|text|normalized` + wavs/) and/or
filelists (`wav|text` or `wav|speaker|text`). Every clip is checked (missing, unreadable, empty,
silent, too short / too long for data.min/max_audio_seconds, wrong sample rate when data.resample
is false; stereo is mixed down and noted) and every text cleaned; problems never stop the run: they
are collected and printed as one table at the end. Writes to --out-dir:
  train.txt, val.txt   `/absolute/path.wav|cleaned text` (`path|speaker|text` for multi-speaker input)
  mel_stats.json       mel_mean / mel_std (scalars over all training log-mel values)
  config.json          with --config: a copy with the filelists, statistics and text settings filled in
  durations/<id>.npy   with --textgrids DIR: frames per token from DIR/<id>.TextGrid, the word and phone tiers
                       Montreal Forced Aligner writes (textgrid_durations.py); config.json's
                       data.durations_dir then names this folder, so training uses them instead of its own
                       alignment. A clip without a usable TextGrid is excluded and listed in the table.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

import text as text_frontend
from atomic import write_text_atomic
from audio import AudioError, read_audio, resample_clip
from config import ConfigError, HParams, load_config, validate
from data_utils import (Utterance, clip_file, compute_mel, duration_sum_tolerance, mel_cache_path, read_filelist,
                        save_npy_atomic, trim_to_frames)
from textgrid_durations import phonemize_words, read_textgrid, token_durations

SILENCE_PEAK_DBFS = -60.0  # a clip whose loudest sample is below this is treated as silent
CLIPPED_FRACTION = 0.01  # a clip with more of its samples at full scale than this is noted as clipped
OUTPUT_NAMES = ("train.txt", "val.txt", "mel_stats.json", "config.json")
TEXT_CHUNK = 2048  # texts per phonemizer call: progress granularity vs worker start-up cost


@dataclass
class Entry:
    """One input line and what preprocessing found out about it."""
    utt: Utterance
    cleaned: str = ""
    problems: List[str] = field(default_factory=list)  # any problem excludes the clip
    notes: List[str] = field(default_factory=list)  # kept, but worth knowing
    mel_sum: float = 0.0
    mel_sq_sum: float = 0.0
    mel_count: int = 0


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", help="LJSpeech-style folder with metadata.csv and wavs/")
    p.add_argument("--filelists", nargs="+", default=[], help="filelists `wav|text` or `wav|speaker|text`")
    p.add_argument("--out-dir", required=True, help="where train.txt, val.txt, mel_stats.json are written")
    p.add_argument("--config", help="config JSON: audio/mel settings and limits; a filled copy is written")
    p.add_argument("--val-size", type=int, default=None,
                   help="validation clips (default: 100, at most 10%% of the usable clips)")
    p.add_argument("--language", default=None, help="espeak language (default: data.language of the config)")
    p.add_argument("--cleaners", nargs="+", default=None, help="text cleaners (default: data.text_cleaners)")
    p.add_argument("--njobs", type=int, default=os.cpu_count() or 1, help="phonemizer processes")
    p.add_argument("--seed", type=int, default=1234, help="seed of the train/val split")
    p.add_argument("--textgrids", metavar="DIR",
                   help="folder of Montreal Forced Aligner TextGrids (<wav id>.TextGrid): train on their durations")
    args = p.parse_args(argv)
    if args.textgrids and not Path(args.textgrids).is_dir():
        p.error(f"--textgrids {args.textgrids} is not a folder; give the folder MFA wrote its TextGrids to")
    if not args.dataset and not args.filelists:
        p.error("give --dataset and/or --filelists")
    inputs = [Path(f) for f in args.filelists] + ([Path(args.dataset) / "metadata.csv"] if args.dataset else [])
    inputs += [Path(args.config)] if args.config else []
    for name in OUTPUT_NAMES:
        out = Path(args.out_dir) / name
        if any(out.exists() and src.exists() and out.samefile(src) for src in inputs):
            p.error(f"--out-dir {args.out_dir} would overwrite the input {out}; choose another --out-dir")
    return args


def collect_entries(args: argparse.Namespace) -> Tuple[List[Entry], List[Tuple[str, str]]]:
    """All input lines as entries; malformed lines / missing inputs come back as (where, problem)."""
    sources = []
    if args.dataset:
        sources.append(Path(args.dataset) / "metadata.csv")
    sources += [Path(f) for f in args.filelists]
    entries, bad_lines, seen = [], [], set()
    for source in sources:
        if not source.is_file():
            bad_lines.append((str(source), "input not found (a --dataset folder needs metadata.csv)"))
            continue
        errors: List[Tuple[str, str]] = []
        for utt in read_filelist(source, errors=errors):
            if utt.wav_path in seen:
                bad_lines.append((utt.where, f"duplicate entry for {utt.wav_path} (first one kept)"))
                continue
            seen.add(utt.wav_path)
            entries.append(Entry(utt))
        bad_lines += [(where, msg.split(": ", 1)[-1]) for where, msg in errors]
    return entries, bad_lines


def clean_entry_texts(entries: List[Entry], cleaners: List[str], language: str, njobs: int) -> None:
    """Fill entry.cleaned; texts with nothing speakable get a problem, dropped characters a note."""
    for start in tqdm(range(0, len(entries), TEXT_CHUNK), desc="phonemizing", unit="chunk"):
        chunk = entries[start: start + TEXT_CHUNK]
        cleaned, notes = text_frontend.clean_texts([e.utt.text for e in chunk], cleaners, language,
                                                   njobs=njobs, return_warnings=True)
        for e, c, n in zip(chunk, cleaned, notes):
            e.cleaned = c
            e.notes += n
            with warnings.catch_warnings(record=True) as records:
                warnings.simplefilter("always", text_frontend.UnknownSymbolWarning)
                try:
                    text_frontend.cleaned_text_to_sequence(c)
                except ValueError:
                    e.problems.append(f"text {e.utt.text[:40]!r} has nothing to speak after cleaning")
            e.notes += [str(r.message) for r in records]


def check_audio(entry: Entry, d) -> Optional[torch.Tensor]:
    """Validate one clip; returns the mono waveform (T,) at data.sampling_rate, or None if excluded."""
    try:
        clip = read_audio(entry.utt.wav_path)
    except AudioError as e:
        if not os.path.exists(entry.utt.wav_path):
            entry.problems.append("file not found")
        else:  # libsndfile's reason ("Error opening '<path>': <reason>") without the path it repeats
            reason = str(e.__cause__ or e).rsplit("': ", 1)[-1]
            entry.problems.append(f"unreadable: {reason}")
        return None
    if clip.wav.size == 0:
        entry.problems.append("empty (no samples)")
        return None
    if not np.isfinite(clip.wav).all():
        entry.problems.append("contains NaN/Inf samples")
        return None
    if clip.source_channels > 1:
        entry.notes.append(f"{clip.source_channels} channels mixed down to mono")
    seconds = clip.seconds
    if seconds < d.min_audio_seconds:
        entry.problems.append(f"too short: {seconds:.2f} s < data.min_audio_seconds {d.min_audio_seconds}")
    if seconds > d.max_audio_seconds:
        entry.problems.append(f"too long: {seconds:.2f} s > data.max_audio_seconds {d.max_audio_seconds}")
    if clip.sampling_rate != d.sampling_rate:
        if not d.resample:
            entry.problems.append(f"sample rate {clip.sampling_rate} Hz != data.sampling_rate {d.sampling_rate} Hz "
                                  f"(data.resample is false)")
        else:
            entry.notes.append(f"resampled {clip.sampling_rate} -> {d.sampling_rate} Hz")
    peak = float(np.abs(clip.wav).max())
    clipped = float(np.mean(np.abs(clip.wav) >= 0.999))
    if clipped > CLIPPED_FRACTION:
        entry.notes.append(f"clipped: {100 * clipped:.0f}% of samples at full scale (distortion the model will learn)")
    if peak < 10 ** (SILENCE_PEAK_DBFS / 20):
        level = "-inf" if peak == 0 else f"{20 * math.log10(peak):.0f}"
        entry.problems.append(f"silent: peak {level} dBFS < {SILENCE_PEAK_DBFS:.0f} dBFS")
    if entry.problems:
        return None
    return torch.from_numpy(resample_clip(clip, d.sampling_rate, d.resample).wav)


def process_audio(entries: List[Entry], d) -> None:
    """Check every clip and accumulate its log-mel sums (for the statistics); cache mels if asked."""
    for e in tqdm(entries, desc="checking audio", unit="clip"):
        try:
            wav = check_audio(e, d)
            if wav is None:
                continue
            wav = trim_to_frames(wav, d.hop_length)
            mel = compute_mel(wav, d).double()
        except Exception as ex:  # never die halfway: anything unexpected is a problem of this clip
            e.problems.append(f"failed: {type(ex).__name__}: {ex}")
            continue
        e.mel_sum, e.mel_sq_sum, e.mel_count = float(mel.sum()), float((mel * mel).sum()), mel.numel()
        if d.cache_dir:
            save_npy_atomic(mel_cache_path(d.cache_dir, e.utt.wav_path, d), mel.float().numpy())


def durations_from_textgrids(entries: List[Entry], folder: Path, d, cleaners: List[str], language: str
                       ) -> Dict[str, np.ndarray]:
    """{wav path: durations (T_text,) int64} from folder/<wav stem>.TextGrid for every entry without problems;
    a clip whose TextGrid is missing, unreadable, of another text or of another length gets a problem."""
    grids = {}
    for e in entries:
        if e.problems:
            continue
        path = folder / f"{Path(e.utt.wav_path).stem}.TextGrid"
        if not path.is_file():
            e.problems.append(f"no TextGrid {path}")
            continue
        try:
            grids[e.utt.wav_path] = read_textgrid(path)
        except ValueError as ex:
            e.problems.append(str(ex))
    said = phonemize_words([w.label for words, _, _ in grids.values() for w in words], cleaners, language)
    out = {}
    for e in entries:
        if e.problems:
            continue
        words, phones, end = grids[e.utt.wav_path]
        try:
            dur = token_durations(e.cleaned, d.add_blank, words, phones, end, said, d.sampling_rate / d.hop_length)
        except ValueError as ex:
            e.problems.append(f"{Path(folder) / Path(e.utt.wav_path).stem}.TextGrid: {ex}")
            continue
        frames = e.mel_count // d.n_mel_channels
        if abs(int(dur.sum()) - frames) > duration_sum_tolerance(frames):
            e.problems.append(f"its TextGrid lasts {dur.sum()} frames but the clip {frames}: another clip's, or "
                              f"aligned at another sample rate")
            continue
        out[e.utt.wav_path] = dur
    return out


def split(kept: List[Entry], val_size: Optional[int], seed: int) -> Tuple[List[Entry], List[Entry]]:
    """Seeded random train/val split; the default val size is 100, at most 10% of the clips."""
    n = len(kept)
    if val_size is None:
        val_size = min(100, max(1, n // 10)) if n > 1 else 0
    val_size = max(0, min(val_size, n - 1))  # keep at least one training clip
    order = np.random.default_rng(seed).permutation(n)
    val_idx = set(order[:val_size].tolist())
    train = [e for i, e in enumerate(kept) if i not in val_idx]
    val = [e for i, e in enumerate(kept) if i in val_idx]
    return train, val


def mel_stats(train: List[Entry]) -> Tuple[float, float]:
    """Scalar mean / std over every log-mel value of the training clips."""
    count = sum(e.mel_count for e in train)
    mean = sum(e.mel_sum for e in train) / count
    var = sum(e.mel_sq_sum for e in train) / count - mean * mean
    return mean, math.sqrt(max(var, 1e-12))


def write_filelist(path: Path, entries: List[Entry], with_speaker: bool) -> None:
    lines = [f"{e.utt.wav_path}{f'|{e.utt.speaker}' if with_speaker else ''}|{e.cleaned}\n" for e in entries]
    write_text_atomic(path, "".join(lines))


def summary_table(rows: List[Tuple[str, str, str]]) -> str:
    """rows of (status, file, reason) -> aligned text table."""
    header = ("status", "file", "reason")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(2)]
    lines = [f"{header[0]:<{widths[0]}}  {header[1]:<{widths[1]}}  {header[2]}"]
    lines.append("-" * min(120, sum(widths) + 10))
    lines += [f"{s:<{widths[0]}}  {f:<{widths[1]}}  {r}" for s, f, r in rows]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        hps = load_config(args.config) if args.config else validate(HParams())
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    d = hps.data
    cleaners = args.cleaners or list(d.text_cleaners)
    language = args.language or d.language

    entries, bad_lines = collect_entries(args)
    print(f"{len(entries)} utterances from {args.dataset or ''} {' '.join(args.filelists)}".strip())
    clean_entry_texts(entries, cleaners, language, args.njobs)
    process_audio(entries, d)
    durations = durations_from_textgrids(entries, Path(args.textgrids), d, cleaners, language) if args.textgrids else {}

    kept = [e for e in entries if not e.problems]
    rows = [("excluded", where, why) for where, why in bad_lines]
    rows += [("excluded", e.utt.wav_path, "; ".join(e.problems)) for e in entries if e.problems]
    rows += [("kept", e.utt.wav_path, "; ".join(e.notes)) for e in kept if e.notes]
    n_excluded = len(bad_lines) + len(entries) - len(kept)
    if rows:
        print(f"\nSummary: {n_excluded} excluded, {sum(1 for r in rows if r[0] == 'kept')} kept with notes")
        print(summary_table(rows))
    if not kept:
        print("\nerror: no usable clip left; see the table above", file=sys.stderr)
        return 2

    train, val = split(kept, args.val_size, args.seed)
    mean, std = mel_stats(train)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with_speaker = any(e.utt.speaker for e in kept)
    write_filelist(out / "train.txt", train, with_speaker)
    write_filelist(out / "val.txt", val, with_speaker)
    stats = {"mel_mean": mean, "mel_std": std, "n_train_clips": len(train),
             "n_train_frames": sum(e.mel_count for e in train) // d.n_mel_channels}
    write_text_atomic(out / "mel_stats.json", json.dumps(stats, indent=2) + "\n")
    for wav_path, dur in durations.items():
        save_npy_atomic(clip_file(out / "durations", wav_path), dur)
    if args.config:
        hps.replace(training_files=str((out / "train.txt").resolve()),
                    validation_files=str((out / "val.txt").resolve()), mel_mean=mean, mel_std=std,
                    text_cleaners=cleaners, language=language, cleaned_text=True,
                    **({"durations_dir": str((out / "durations").resolve())} if args.textgrids else {})
                    ).save(out / "config.json")
    print(f"\n{len(kept)} of {len(entries) + len(bad_lines)} entries kept: {len(train)} train, {len(val)} val; "
          f"mel mean {mean:.4f} std {std:.4f}; written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
