"""Build a synthetic LJSpeech-format training corpus with an offline synthesiser (Festival or flite).

    python -m voices.build_corpus --sentences corpus/sentences.txt --out-dir datasets/festival_slt --jobs 2
    python -m voices.build_corpus --voice awb --limit 600 --out-dir datasets/voices/awb    # flite's awb voice
    python -m voices.build_corpus --voice awb --setf int_f0_target_mean=169 --out-dir datasets/voices_prosody/awb@high
                                  # the same voice higher (flite's intonation features; build_voices.py joins
                                  # a folder NAME@VARIANT to speaker NAME)

--voice takes a name from VOICES (slt_hts, kal, ked: Festival; awb, flite_slt, kal16, rms: flite) or
EXTRA_VOICES (other languages' Festival voices, for the vocoder only), a Festival voice name (without 'voice_'), or `flite:NAME` for any voice `flite -lv` lists.

Writes, under --out-dir:
    wavs/<id>.wav          22050 Hz mono 16-bit PCM, leading/trailing silence trimmed to ~0.1 s
    metadata.csv           id|text|spoken text (LJSpeech layout: column 3 is the normalised text
                           with numbers, money, dates and titles spelled out -- what Festival read)
    metadata_train.csv     the same rows without the held-out test ids (corpus/test_ids.txt)
    metadata_test.csv      the held-out rows
    build_info.json        voice, counts, hours of audio, wall time, failures

Festival runs in batch mode (`festival -b`, one process per chunk of sentences, equivalent to
text2wave -eval "(voice_cmu_us_slt_arctic_hts)" but loading the voice once per chunk); flite's voices
are compiled in, so it runs once per sentence.
Resumable: a clip whose wav already exists and reads back as valid 22050 Hz mono PCM is kept.
A clip that fails is reported at the end and left out of the metadata; the others are still written.
Needs Debian's festival and its voices, or flite:
    apt-get update && apt-get install -y festival festvox-us-slt-hts festvox-kallpc16k festvox-kdlpc16k flite
and, for EXTRA_VOICES (FESTIVAL_PACKAGES names each voice's package):
    apt-get install -y festvox-itapc16k festvox-italp16k festvox-czech-machac festvox-czech-ph festvox-suopuhe-mv festvox-ru
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
import soxr

from atomic import atomic_write, write_text_atomic
from evaluation.metrics import spell_out

FLITE_INSTALL_HINT = "apt-get update && apt-get install -y flite"
DEFAULT_VOICE = "cmu_us_slt_arctic_hts"
FLITE_PREFIX = "flite:"
# The English voices of the multi-voice corpus: short name -> what --voice resolves it to.
VOICES = {
    "slt_hts": "cmu_us_slt_arctic_hts",  # Festival, US female (festvox-us-slt-hts)
    "kal": "kal_diphone",                # Festival, US male diphone (festvox-kallpc16k)
    "ked": "ked_diphone",                # Festival, US male diphone (festvox-kdlpc16k)
    "awb": "flite:awb",                  # flite, Scottish male
    "flite_slt": "flite:slt",            # flite, US female
    "kal16": "flite:kal16",              # flite, US male diphone
    "rms": "flite:rms",                  # flite, US male
}
# More voices for the shared vocoder only (a vocoder does not care which language it hears): Festival's
# voices of other languages, reading the same English sentences with their own language's rules.
EXTRA_VOICES = {
    "ita_pc": "pc_diphone",              # Italian male diphone
    "ita_lp": "lp_diphone",              # Italian female diphone
    "cz_machac": "czech_machac",         # Czech male
    "cz_ph": "czech_ph",                 # Czech male
    "fi_mv": "hy_fi_mv_diphone",         # Finnish male diphone
    "ru_nsh": "msu_ru_nsh_clunits",      # Russian male
}
# The Debian package of each Festival voice (named in the error when one is missing).
FESTIVAL_PACKAGES = {
    "cmu_us_slt_arctic_hts": "festvox-us-slt-hts", "kal_diphone": "festvox-kallpc16k",
    "ked_diphone": "festvox-kdlpc16k", "pc_diphone": "festvox-itapc16k", "lp_diphone": "festvox-italp16k",
    "czech_machac": "festvox-czech-machac", "czech_ph": "festvox-czech-ph", "hy_fi_mv_diphone": "festvox-suopuhe-mv",
    "msu_ru_nsh_clunits": "festvox-ru",
}
ALL_VOICES = {**VOICES, **EXTRA_VOICES}
SAMPLE_RATE = 22050
SYNTH_TIMEOUT_S = 120  # per sentence


@dataclass
class Job:
    utt_id: str
    text: str
    spoken: str
    wav_path: str
    voice: str
    trim_db: float
    pad_s: float
    setf: Tuple[str, ...] = ()  # flite feature settings KEY=VALUE (--setf)


@dataclass
class Result:
    utt_id: str
    seconds: float = 0.0
    skipped: bool = False
    error: Optional[str] = None


# ----------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------

def read_sentences(path: Path) -> List[Tuple[str, str]]:
    """`id|text` lines -> [(id, text)]; ValueError naming the line for a malformed or duplicate id."""
    rows, seen = [], set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        utt_id, sep, text = line.partition("|")
        utt_id, text = utt_id.strip(), text.strip()
        if not sep or not utt_id or not text or "|" in text:
            raise ValueError(f"{path}:{n}: expected 'id|text', got {line!r}")
        if utt_id in seen:
            raise ValueError(f"{path}:{n}: duplicate id {utt_id!r}")
        seen.add(utt_id)
        rows.append((utt_id, text))
    if not rows:
        raise ValueError(f"{path} holds no sentences")
    return rows


def read_ids(path: Optional[Path]) -> set:
    if path is None or not path.is_file():
        return set()
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


# ----------------------------------------------------------------------------------------------------
# Festival
# ----------------------------------------------------------------------------------------------------
# One `festival -b` process synthesizes a whole chunk of sentences: loading the voice costs about as
# much CPU as synthesizing a sentence, so per-sentence `text2wave` calls would double the build time.
# Festival stops at the first error in a script, so sentences missing afterwards are retried alone.

def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def festival_script(voice: str, items: Sequence[Tuple[str, Path]]) -> str:
    """Scheme that loads `voice` and writes one RIFF wav per (text, path)."""
    lines = [f"(voice_{voice})"]
    for text, path in items:
        lines.append(f"(utt.save.wave (utt.synth (Utterance Text {_scheme_string(text)})) "
                     f"{_scheme_string(str(path))} 'riff)")
    return "\n".join(lines) + "\n"


def run_festival(voice: str, items: Sequence[Tuple[str, Path]], workdir: Path) -> str:
    """Synthesize (text, out_path) items in one festival process; returns its error text ('' if none)."""
    script = workdir / "batch.scm"
    script.write_text(festival_script(voice, items), encoding="utf-8")
    timeout = SYNTH_TIMEOUT_S * max(1, len(items))
    try:
        proc = subprocess.run(["festival", "-b", str(script)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"festival timed out after {timeout} s"
    err = "\n".join(line for line in (proc.stderr + proc.stdout).splitlines()
                    if "ERROR" in line or "rror" in line)
    if proc.returncode != 0 and not err:
        err = f"festival exited with status {proc.returncode}"
    return err


def run_flite(voice: str, items: Sequence[Tuple[str, Path]], workdir: Path, setf: Sequence[str] = ()) -> str:
    """Synthesize (text, out_path) items with flite's built-in `voice` and its features `setf` (KEY=VALUE, e.g.
    int_f0_target_mean=150, int_f0_target_stddev=30, duration_stretch=1.2); returns the first error ('' if none)."""
    features = [arg for setting in setf for arg in ("--setf", setting)]
    text_file = workdir / "sentence.txt"
    errors = []
    for text, path in items:
        text_file.write_text(text + "\n", encoding="utf-8")  # a file, so text starting with '-' is safe
        try:
            proc = subprocess.run(["flite", "-voice", voice, *features, "-f", str(text_file), "-o", str(path)],
                                  capture_output=True, text=True, timeout=SYNTH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            errors.append(f"flite timed out after {SYNTH_TIMEOUT_S} s")
            continue
        if proc.returncode != 0 or not path.is_file():
            errors.append((proc.stderr.strip() or f"flite exited with status {proc.returncode}").splitlines()[0])
    return errors[0] if errors else ""


def resolve_voice(voice: str) -> str:
    """A short name from VOICES or EXTRA_VOICES -> its engine voice; other names pass through unchanged."""
    return ALL_VOICES.get(voice, voice)


def synthesize(voice: str, items: Sequence[Tuple[str, Path]], workdir: Path, setf: Sequence[str] = ()) -> str:
    """Synthesize (text, out_path) items with `voice` (Festival name or flite:NAME, with flite features `setf`);
    returns error text."""
    if voice.startswith(FLITE_PREFIX):
        return run_flite(voice[len(FLITE_PREFIX):], items, workdir, setf)
    return run_festival(voice, items, workdir)


def flite_voices() -> List[str]:
    """Voices compiled into flite (`flite -lv`); an unknown -voice would silently fall back to the default."""
    out = subprocess.run(["flite", "-lv"], capture_output=True, text=True, timeout=30).stdout
    return out.partition(":")[2].split()


def festival_install_hint(voice: str) -> str:
    """The apt-get line that installs Festival with `voice` (its slt_hts voice for names it does not know)."""
    return f"apt-get update && apt-get install -y festival {FESTIVAL_PACKAGES.get(voice, 'festvox-us-slt-hts')}"


def check_voice(voice: str) -> Optional[str]:
    """None when the synthesiser can speak with `voice`, else a message saying how to fix it."""
    flite = voice.startswith(FLITE_PREFIX)
    program, hint = ("flite", FLITE_INSTALL_HINT) if flite else ("festival", festival_install_hint(voice))
    if shutil.which(program) is None:
        return f"{program.capitalize()} is not installed. Install it with:\n    {hint}"
    if flite and voice[len(FLITE_PREFIX):] not in flite_voices():
        return f"flite has no voice {voice[len(FLITE_PREFIX):]!r}; it has: {', '.join(flite_voices())}"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "probe.wav"
        err = synthesize(voice, [("Hello.", out)], Path(tmp))
        if not out.is_file():
            where = ("`flite -lv` lists its voices" if flite else
                     "installed voices live in /usr/share/festival/voices/*/; short names: " + ", ".join(ALL_VOICES))
            return (f"{program.capitalize()} cannot synthesize with voice {voice!r}: {err or 'no audio written'}\n"
                    f"Install it with:\n    {hint}\n({where})")
    return None


# ----------------------------------------------------------------------------------------------------
# Audio
# ----------------------------------------------------------------------------------------------------

def trim_light(wav: np.ndarray, sample_rate: int, top_db: float, pad_s: float) -> np.ndarray:
    """Cut leading/trailing silence (frames `top_db` below the peak frame), keeping `pad_s` of it."""
    frame = int(0.010 * sample_rate)
    n = len(wav) // frame
    if n == 0:
        return wav
    rms = np.sqrt(np.mean(wav[:n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(20 * np.log10(rms / rms.max()) > -top_db)
    pad = int(pad_s * sample_rate)
    start = max(0, loud[0] * frame - pad)
    end = min(len(wav), (loud[-1] + 1) * frame + pad)
    return wav[start:end]


def valid_wav(path: Path) -> Optional[float]:
    """Duration in seconds when `path` is a readable 22050 Hz mono 16-bit WAV with audio, else None."""
    try:
        info = sf.info(str(path))
    except Exception:  # missing, truncated, not audio: all mean "synthesize again"
        return None
    if info.samplerate != SAMPLE_RATE or info.channels != 1 or info.subtype != "PCM_16" or info.frames == 0:
        return None
    return info.frames / info.samplerate


def finish_clip(job: Job, raw: Path) -> Result:
    """Festival's wav -> 22050 Hz, lightly trimmed, 16-bit PCM at job.wav_path (atomic)."""
    audio, rate = sf.read(str(raw), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        audio = soxr.resample(audio, rate, SAMPLE_RATE, quality="HQ")
    audio = trim_light(np.clip(audio, -1.0, 1.0), SAMPLE_RATE, job.trim_db, job.pad_s)
    if len(audio) < 0.2 * SAMPLE_RATE or not np.any(audio):
        return Result(job.utt_id, error=f"synthesized audio is silent or too short ({len(audio)} samples)")
    with atomic_write(job.wav_path) as f:
        sf.write(f, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return Result(job.utt_id, len(audio) / SAMPLE_RATE)


def run_chunk(jobs: Sequence[Job]) -> List[Result]:
    """Synthesize a chunk of sentences (skipping valid existing wavs); never raises."""
    results: Dict[str, Result] = {}
    todo = []
    for job in jobs:
        seconds = valid_wav(Path(job.wav_path))
        if seconds is not None:
            results[job.utt_id] = Result(job.utt_id, seconds, skipped=True)
        else:
            todo.append(job)
    if todo:
        try:
            with tempfile.TemporaryDirectory(dir=Path(todo[0].wav_path).parent) as tmp:
                raws = {job.utt_id: Path(tmp) / f"{k}.wav" for k, job in enumerate(todo)}
                synthesize(todo[0].voice, [(job.spoken, raws[job.utt_id]) for job in todo], Path(tmp), todo[0].setf)
                for job in todo:
                    raw = raws[job.utt_id]
                    err = None
                    if not raw.is_file():  # festival stopped early: retry alone to isolate the failure
                        err = synthesize(job.voice, [(job.spoken, raw)], Path(tmp), job.setf)
                    try:
                        results[job.utt_id] = (finish_clip(job, raw) if raw.is_file() else
                                               Result(job.utt_id, error=err or "no audio written"))
                    except Exception as e:  # unreadable output etc.: report, keep going
                        results[job.utt_id] = Result(job.utt_id, error=f"{type(e).__name__}: {e}")
        except Exception as e:
            for job in todo:
                results.setdefault(job.utt_id, Result(job.utt_id, error=f"{type(e).__name__}: {e}"))
    return [results[job.utt_id] for job in jobs]


# ----------------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------------

def write_metadata(path: Path, rows: Sequence[Tuple[str, str, str]]) -> None:
    write_text_atomic(path, "".join(f"{i}|{t}|{s}\n" for i, t, s in rows))


def sentences_to_build(rows: Sequence[Tuple[str, str]], held_out: set, limit: Optional[int],
                       test_only: bool) -> List[Tuple[str, str]]:
    """The first `limit` (id, text) rows, of the held-out ones only if `test_only`."""
    return [r for r in rows if r[0] in held_out or not test_only][:limit]


def build(sentences: Path, out_dir: Path, jobs: int, limit: Optional[int] = None,
          test_ids: Optional[Path] = None, voice: str = DEFAULT_VOICE, trim_db: float = 40.0,
          pad_s: float = 0.1, chunk_size: int = 20, test_only: bool = False, log=print,
          setf: Sequence[str] = ()) -> Dict:
    """Synthesize every sentence (skipping valid existing wavs); returns the build summary.

    test_only: only the held-out sentences (`test_ids`), a test set larger than the few that fall within
    the training build's `limit`: none of them is in any training list.
    """
    t0 = time.perf_counter()
    held_out = read_ids(test_ids)
    rows = sentences_to_build(read_sentences(sentences), held_out, limit, test_only)
    wav_dir = out_dir / "wavs"
    wav_dir.mkdir(parents=True, exist_ok=True)
    spoken = {i: spell_out(t) for i, t in rows}
    work = [Job(i, t, spoken[i], str(wav_dir / f"{i}.wav"), voice, trim_db, pad_s, tuple(setf)) for i, t in rows]
    chunks = [work[i:i + chunk_size] for i in range(0, len(work), chunk_size)]
    results: Dict[str, Result] = {}
    with multiprocessing.get_context("spawn").Pool(max(1, jobs)) as pool:
        for chunk_results in pool.imap_unordered(run_chunk, chunks):
            for res in chunk_results:
                results[res.utt_id] = res
                if res.error:
                    log(f"FAILED {res.utt_id}: {res.error}")
            log(f"{len(results)}/{len(work)} done ({time.perf_counter() - t0:.0f} s)")
    ok = [(i, t, spoken[i]) for i, t in rows if not results[i].error]
    write_metadata(out_dir / "metadata.csv", ok)
    write_metadata(out_dir / "metadata_train.csv", [r for r in ok if r[0] not in held_out])
    write_metadata(out_dir / "metadata_test.csv", [r for r in ok if r[0] in held_out])
    failures = {i: r.error for i, r in results.items() if r.error}
    total_s = sum(r.seconds for r in results.values() if not r.error)
    summary = {
        "voice": voice, "setf": list(setf), "sample_rate": SAMPLE_RATE, "sentences": len(rows), "written": len(ok),
        "synthesized_now": sum(1 for r in results.values() if not r.error and not r.skipped),
        "skipped_existing": sum(1 for r in results.values() if r.skipped),
        "failed": len(failures), "failures": failures, "audio_hours": round(total_s / 3600, 4),
        "mean_clip_seconds": round(total_s / max(1, len(ok)), 3),
        "test_clips": sum(1 for r in ok if r[0] in held_out), "jobs": jobs,
        "wall_seconds": round(time.perf_counter() - t0, 1), "cpu_count": os.cpu_count(),
    }
    (out_dir / "build_info.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv=None) -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sentences", type=Path, default=here / "corpus" / "sentences.txt", help="id|text lines")
    ap.add_argument("--out-dir", type=Path, default=here / "datasets" / "festival_slt")
    ap.add_argument("--test-ids", type=Path, default=here / "corpus" / "test_ids.txt",
                    help="held-out ids, one per line (rows go to metadata_test.csv)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N sentences")
    ap.add_argument("--test-only", action="store_true",
                    help="only the held-out sentences (--test-ids) of the whole file: a larger test set")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel festival processes")
    ap.add_argument("--chunk-size", type=int, default=20, help="sentences per festival process")
    ap.add_argument("--voice", default=DEFAULT_VOICE,
                    help=f"{', '.join(ALL_VOICES)}, a festival voice name (without 'voice_') or flite:NAME")
    ap.add_argument("--trim-db", type=float, default=40.0, help="silence threshold below the peak, dB")
    ap.add_argument("--pad", type=float, default=0.1, help="silence kept at each end, seconds")
    ap.add_argument("--setf", action="append", default=[], metavar="KEY=VALUE",
                    help="a flite feature for every clip (repeatable), e.g. int_f0_target_mean=150, "
                         "int_f0_target_stddev=30, duration_stretch=1.2 (flite voices only)")
    args = ap.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        ap.error("--limit must be a positive number of sentences")
    if args.test_only and not read_ids(args.test_ids):
        ap.error(f"--test-only builds the held-out sentences, but --test-ids {args.test_ids} lists none")
    if not args.sentences.is_file():
        print(f"sentence file not found: {args.sentences} (make it with corpus/make_sentences.py)", file=sys.stderr)
        return 2
    voice = resolve_voice(args.voice)
    problem = check_voice(voice)
    if args.setf and not voice.startswith(FLITE_PREFIX):
        problem = f"--setf sets flite features; {args.voice} is a Festival voice (use a flite voice)"
    bad = [x for x in args.setf if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S+", x)]
    if bad:
        problem = f"--setf takes KEY=VALUE, e.g. int_f0_target_mean=150; got {bad[0]!r}"
    if problem:
        print(problem, file=sys.stderr)
        return 2
    summary = build(args.sentences, args.out_dir, args.jobs, args.limit, args.test_ids, voice,
                    args.trim_db, args.pad, args.chunk_size, args.test_only, setf=args.setf)
    print(f"\n{summary['written']}/{summary['sentences']} clips in {args.out_dir} "
          f"({summary['synthesized_now']} synthesized, {summary['skipped_existing']} already there), "
          f"{summary['audio_hours']:.2f} h of audio, {summary['test_clips']} held out, "
          f"{summary['wall_seconds']:.0f} s wall with {args.jobs} jobs")
    if summary["failed"]:
        print(f"{summary['failed']} sentence(s) failed:", file=sys.stderr)
        for utt_id, err in summary["failures"].items():
            print(f"  {utt_id}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
