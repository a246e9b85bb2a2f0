"""Does a vocoder follow the pitch of its mel? Copy synthesis of one voice read at several pitches.

    python benchmarks/vocoder_pitch.py --vocoder pretrained/multispeaker.pth \
        --folders datasets/voices/awb datasets/voices_prosody/awb@high datasets/voices_prosody/awb@low \
        --limit 8 --output benchmarks/results/vocoder_pitch.json

Each folder is a build_corpus.py voice (wavs/ + metadata_train.csv), e.g. the same sentences read by flite at
other pitches (`--setf int_f0_target_mean=...`). For each folder it reports the median over clips of the median F0
(semitones above 55 Hz, librosa's pyin: evaluation/prosody.py) of the recording, of the recording -> mel ->
vocoder and of recording -> mel -> Griffin-Lim (which puts each harmonic where the mel has it), and the vocoder's
frame-rate lock (evaluation/metrics.frame_rate_lock). A vocoder that follows pitch moves with the recordings; one
locked to the frame rate stays at a multiple of sample_rate / hop (86 Hz at 22050 / 256).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from atomic import write_text_atomic  # noqa: E402
from evaluation.evaluate import hardware_info  # noqa: E402
from evaluation.metrics import frame_rate_lock  # noqa: E402
from evaluation.prosody import measure  # noqa: E402
from mel_processing import mel_from_config  # noqa: E402
from training.voice_file import load_vocoder  # noqa: E402
from vocoder_copy_synthesis import griffin_lim  # noqa: E402


def folder_pitch(folder: Path, generator, d, limit: int) -> dict:
    """{recording, vocoder, griffin_lim: median F0 in semitones; lock: the vocoder's median lock} over the folder's
    first `limit` training clips."""
    ids = [line.split("|")[0] for line in (folder / "metadata_train.csv").read_text().splitlines()[:limit]]
    paths = {"recording": [], "vocoder": [], "griffin_lim": []}
    locks = []
    for utt in ids:
        wav, sr = sf.read(str(folder / "wavs" / f"{utt}.wav"), dtype="float32")
        wav = wav[: len(wav) // d.hop_length * d.hop_length]
        mel = mel_from_config(torch.from_numpy(wav)[None], d)
        with torch.no_grad():
            vocoded = generator(mel)[0][0, 0].numpy()
        for name, audio in (("recording", wav), ("vocoder", vocoded), ("griffin_lim", griffin_lim(mel[0].numpy(), d))):
            paths[name].append(measure(audio, sr).f0_median_st)
        locks.append(frame_rate_lock(vocoded, sr, d.hop_length))
    out = {name: float(np.nanmedian(values)) for name, values in paths.items()}
    out["lock"] = float(statistics.median(locks))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vocoder", default=str(ROOT / "pretrained" / "multispeaker.pth"),
                   help="voice file, vocoder file or checkpoint whose vocoder is measured")
    p.add_argument("--folders", nargs="+", type=Path, required=True, help="build_corpus.py voice folders")
    p.add_argument("--limit", type=int, default=8, help="clips per folder")
    p.add_argument("--output", help="JSON report")
    args = p.parse_args(argv)
    missing = [str(f) for f in args.folders if not (f / "metadata_train.csv").is_file()]
    if missing:
        print(f"error: not a build_corpus.py voice folder (no metadata_train.csv): {', '.join(missing)}", file=sys.stderr)
        return 2
    generator, hps = load_vocoder(args.vocoder)
    rows = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyin's note on short frames at 50 Hz
        for folder in args.folders:
            rows[folder.name] = folder_pitch(folder, generator, hps.data, args.limit)
            r = rows[folder.name]
            print(f"{folder.name}: F0 recording {r['recording']:.2f} st, vocoder {r['vocoder']:.2f}, "
                  f"Griffin-Lim {r['griffin_lim']:.2f}; lock {r['lock']:.2f}", flush=True)
    report = {"vocoder": args.vocoder, "clips_per_folder": args.limit, "threads": torch.get_num_threads(),
              "hardware": hardware_info("cpu"), "folders": rows}
    if args.output:
        write_text_atomic(args.output, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
