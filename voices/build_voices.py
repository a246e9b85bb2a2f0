"""Assemble the multi-voice corpus: one multi-speaker filelist from several single-voice corpora.

    for v in slt_hts kal ked awb flite_slt kal16 rms; do
        python -m voices.build_corpus --voice $v --limit 600 --out-dir datasets/voices/$v
    done
    python -m voices.build_voices --voices-dir datasets/voices --ljspeech ../shared/data/ljspeech_mini \
        --held-out ked --out-dir datasets/multivoice

A folder named NAME@VARIANT (the same voice read another way, e.g. build_corpus.py --setf at a higher pitch)
adds its clips to speaker NAME: the model learns one speaker that can speak several ways.
Several --voices-dir folders join in the order given: the shared vocoder's corpus adds the other-language
voices of datasets/voices_extra (build_corpus.py EXTRA_VOICES) after the English ones.

Each voice folder is what build_corpus.py writes (metadata_train.csv / metadata_test.csv + wavs/). The
held-out voice is left out of every training list: it is the unseen-voice test. Writes to --out-dir:
    train.txt            `/abs/clip.wav|speaker id|text` for the training voices (raw text: run
                         preprocess.py --filelists on it)
    test_<voice>.txt     the held-out sentences of each training voice, same format
    unseen_<voice>.txt   every clip of the held-out voice
    speakers.json        {"names": [...]} in speaker-id order, and which voice is held out
The LJ Speech clips (real speech) are one more voice, "ljspeech"; its last --ljspeech-test clips are
its test set.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from atomic import write_text_atomic

Row = Tuple[str, str]  # (absolute wav path, text)
VARIANT_MARK = "@"  # a voice folder NAME@VARIANT adds clips to speaker NAME


def read_metadata(csv: Path) -> List[Row]:
    """LJSpeech `id|text|normalized` rows -> [(abs wav path, normalized text)] (what the audio says)."""
    rows = []
    for line in csv.read_text(encoding="utf-8").splitlines():
        if line.strip():
            fields = line.split("|")
            rows.append((str((csv.parent / "wavs" / f"{fields[0]}.wav").resolve()), fields[-1].strip()))
    return rows


Split = Tuple[List[Row], List[Row]]  # (train rows, test rows)


def voice_splits(voices_dirs: Sequence[Path], ljspeech: Optional[Path], ljspeech_test: int) -> Dict[str, Split]:
    """{voice name: (train rows, test rows)} for every built voice folder (and LJ Speech if given), the folders
    of each of `voices_dirs` in name order, one after the other (so voices added in a later one keep the
    earlier voices' speaker ids)."""
    splits, variants = {}, []
    for voices_dir in voices_dirs:
        for folder in sorted(p for p in voices_dir.iterdir() if (p / "metadata_train.csv").is_file()):
            rows = (read_metadata(folder / "metadata_train.csv"), read_metadata(folder / "metadata_test.csv"))
            if VARIANT_MARK in folder.name:
                variants.append((folder, rows))
            elif folder.name in splits:
                raise ValueError(f"two voices are named {folder.name!r} ({folder}); rename one folder")
            else:
                splits[folder.name] = rows
    for folder, (train, test) in variants:  # NAME@VARIANT: more training clips of speaker NAME
        name = folder.name.split(VARIANT_MARK)[0]
        if name not in splits:
            raise ValueError(f"{folder} reads voice {name!r} another way, but no folder {name!r} was given")
        splits[name] = (splits[name][0] + train, splits[name][1])
    if ljspeech is not None:
        if ljspeech_test < 1:
            raise ValueError(f"--ljspeech-test must be a positive number of clips, got {ljspeech_test}")
        rows = read_metadata(ljspeech / "metadata.csv")
        if len(rows) <= ljspeech_test:
            raise ValueError(f"{ljspeech} has {len(rows)} clips; need more than --ljspeech-test {ljspeech_test}")
        splits["ljspeech"] = (rows[:-ljspeech_test], rows[-ljspeech_test:])
    return splits


def write_list(path: Path, rows: Sequence[Row], speaker: int) -> None:
    write_text_atomic(path, "".join(f"{wav}|{speaker}|{text}\n" for wav, text in rows))


def assemble(voices_dirs: Sequence[Path], out_dir: Path, held_out: str, ljspeech: Optional[Path] = None,
             ljspeech_test: int = 4, repeat: Optional[Dict[str, int]] = None) -> Dict:
    """Write the filelists (see the module docstring); returns speakers.json's content. repeat: voice name ->
    how many times its training clips are listed (to balance voices that have NAME@VARIANT readings)."""
    splits = voice_splits(voices_dirs, ljspeech, ljspeech_test)
    unknown = sorted(set(repeat or {}) - set(splits))
    if unknown:
        raise ValueError(f"--repeat names voice(s) {', '.join(unknown)} that were not built; built: {', '.join(splits)}")
    for name, times in (repeat or {}).items():
        splits[name] = (splits[name][0] * times, splits[name][1])
    if held_out not in splits:
        raise ValueError(f"held-out voice {held_out!r} not found; built voices: {', '.join(splits) or 'none'}")
    names = [name for name in splits if name != held_out]
    if not names:
        raise ValueError(f"no training voice besides the held-out {held_out!r} in {', '.join(map(str, voices_dirs))}")
    out_dir.mkdir(parents=True, exist_ok=True)
    train: List[str] = []
    for speaker, name in enumerate(names):
        rows, test = splits[name]
        train += [f"{wav}|{speaker}|{text}\n" for wav, text in rows]
        write_list(out_dir / f"test_{name}.txt", test, speaker)
    write_text_atomic(out_dir / "train.txt", "".join(train))
    unseen_train, unseen_test = splits[held_out]
    write_list(out_dir / f"unseen_{held_out}.txt", unseen_train + unseen_test, 0)
    info = {"names": names, "held_out": held_out,
            "train_clips": {name: len(splits[name][0]) for name in names}}
    write_text_atomic(out_dir / "speakers.json", json.dumps(info, indent=2) + "\n")
    return info


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voices-dir", type=Path, nargs="+", required=True,
                    help="folder(s) of build_corpus.py outputs, one subfolder per voice")
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--held-out", required=True, help="voice left out of all training (the unseen-voice test)")
    ap.add_argument("--ljspeech", type=Path, default=None, help="LJSpeech-style folder added as voice 'ljspeech'")
    ap.add_argument("--ljspeech-test", type=int, default=4, help="last N LJ Speech clips held out (default 4)")
    ap.add_argument("--repeat", nargs="+", default=[], metavar="VOICE=N",
                    help="list VOICE's training clips N times (balances voices that have @VARIANT readings)")
    args = ap.parse_args(argv)
    try:
        repeat = {name: int(times) for name, times in (item.split("=", 1) for item in args.repeat)}
        if any(times < 1 for times in repeat.values()):
            raise ValueError
    except ValueError:
        print(f"error: --repeat takes VOICE=N with N a positive whole number, got {' '.join(args.repeat)}",
              file=sys.stderr)
        return 2
    if args.ljspeech_test < 1:  # rows[:-0] would be empty and rows[-0:] all of them: the split swapped
        print(f"error: --ljspeech-test must be a positive number of clips, got {args.ljspeech_test}", file=sys.stderr)
        return 2
    for folder in args.voices_dir:
        if not folder.is_dir():
            print(f"error: --voices-dir {folder} is not a folder (build voices with build_corpus.py)", file=sys.stderr)
            return 2
    try:
        info = assemble(args.voices_dir, args.out_dir, args.held_out, args.ljspeech, args.ljspeech_test, repeat)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{sum(info['train_clips'].values())} training clips from {len(info['names'])} voices "
          f"({', '.join(f'{k} {v}' for k, v in info['train_clips'].items())}); "
          f"held out: {info['held_out']}; written to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
