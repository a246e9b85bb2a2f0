"""Teacher-forced mels: what an acoustic model says for each training clip, frame-aligned with the recording.

    python -m training.teacher_forced_mels --checkpoint logs/NAME/G_4000.pth --out-dir filelists/NAME/tf_mels --steps 4
    python train_flow_matching.py -c filelists/NAME/tf_mels/vocoder_finetune.json -m logs/NAME_vocoder
    python -m inference.export_voice logs/NAME/G_4000.pth voice.pth --half --vocoder logs/NAME_vocoder/G_800.pth

Each clip's transcript is aligned to its recording by monotonic alignment search (as in training), and the
model generates a mel with exactly those durations (FlowMatchingTTS.infer(durations=...)), so generated
frame i lines up with recorded sample i * hop. A vocoder trained on (generated mel, recorded audio) pairs
learns to undo the acoustic model's blur (HiFi-GAN's fine-tuning for Tacotron 2). Writes
<out-dir>/<wav stem>.npy, float32 (n_mels, T_mel) log-mel; existing files are kept, so a stopped run resumes.
<out-dir>/source.json records the model that wrote them (its SHA-256): another model's folder is refused, so
mels of two models never mix. A clip whose transcript has more symbols than the clip has mel frames cannot be
what the clip says (alignment gives every symbol a frame): it is skipped and named.
Also writes <out-dir>/vocoder_finetune.json: the model's config set to fine-tune its own vocoder on these
mels (FINETUNE below: the vocoder alone, mel + multi-resolution STFT losses, no discriminator).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

import config as config_lib
import sampling as sampling_lib
from atomic import file_sha256, write_text_atomic
from training.checkpoint import CheckpointError
from data_utils import TextMelCollate, TextMelLoader, clip_file, save_npy_atomic
from training.voice_file import load_voice


# What vocoder_finetune.json changes in the model's config (measured in README "A new voice").
FINETUNE = dict(train_acoustic=False, train_vocoder=True, init_parts=["vocoder"], vocoder_learning_rate=1e-4,
                warmup_steps=50, betas=[0.8, 0.99], max_steps=800, batch_size=16, max_frames_per_batch=None,
                use_discriminator=False)


def finetune_config(hps, checkpoint: Path, mel_dir: Path):
    """The model's config set to fine-tune its vocoder (taken from `checkpoint`) on the mels in mel_dir."""
    return hps.replace(**FINETUNE, init_checkpoint=str(checkpoint), vocoder_mel_dir=str(mel_dir))


def output_paths(dataset: TextMelLoader, out_dir: Path) -> list:
    """<out_dir>/<wav stem>.npy for each item; two clips with the same stem would overwrite each other."""
    paths = [clip_file(out_dir, p) for p in dataset.paths]
    if len(set(paths)) != len(paths):
        seen, twins = set(), []
        for wav, path in zip(dataset.paths, paths):
            if path in seen:
                twins.append(wav)
            seen.add(path)
        raise ValueError(f"{len(twins)} clips share a file name with another clip (e.g. {twins[0]}); "
                         f"data.vocoder_mel_dir is keyed by file name: rename them or use one list per folder")
    return paths


SOURCE = "source.json"  # in the out-dir: which model wrote its mels


def check_source(out_dir: Path, checkpoint: Path, sha256: str) -> None:
    """ValueError unless out_dir's mels (if any) were written by this very model file (source.json)."""
    record = out_dir / SOURCE
    if record.is_file():
        try:
            source = json.loads(record.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{record} is not valid JSON ({e}); remove the folder or choose another --out-dir") from None
        if isinstance(source, dict) and source.get("sha256") == sha256:
            return
        theirs = source.get("checkpoint") if isinstance(source, dict) else None
        raise ValueError(f"{out_dir} holds the mels of another model ({theirs or 'unknown'}), not of {checkpoint}; "
                         f"choose another --out-dir or remove it")
    if out_dir.is_dir() and any(out_dir.glob("*.npy")):
        raise ValueError(f"{out_dir} holds mels without a record ({SOURCE}) of the model that wrote them, perhaps "
                         f"another model's; choose another --out-dir or remove it")


def too_long(dataset: TextMelLoader) -> List[int]:
    """Items whose transcript has more symbols than the clip has mel frames: monotonic alignment gives every
    symbol at least one frame, so the transcript cannot be what the clip says."""
    return [i for i, ((_, ids), frames) in enumerate(zip(dataset.items, dataset.lengths)) if len(ids) > frames]


@torch.no_grad()
def write_teacher_forced_mels(model, dataset: TextMelLoader, out_dir: Path, sampling, batch_size: int = 8,
                              seed: int = 0, device: torch.device = torch.device("cpu")) -> Tuple[int, List[int]]:
    """Generate and write the mels of every item not written yet -> (how many were written now, the items
    skipped because their transcript is too long for the clip)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = output_paths(dataset, out_dir)
    skipped = too_long(dataset)
    for i in skipped:
        _, ids = dataset.items[i]
        print(f"warning: skipped {dataset.paths[i]}: its transcript has {len(ids)} symbols but the clip only "
              f"{dataset.lengths[i]} mel frames, so it cannot be what the clip says; fix its line in the filelist",
              file=sys.stderr)
    left_out = set(skipped)
    todo = sorted((i for i, p in enumerate(paths) if not p.is_file() and i not in left_out),
                  key=lambda i: dataset.lengths[i])
    collate, acoustic = TextMelCollate(), model.acoustic
    speakers_on = dataset.hps.data.n_speakers > 1
    for start in tqdm(range(0, len(todo), batch_size), desc="teacher-forced mels", unit="batch"):
        indices = todo[start:start + batch_size]
        batch = collate([dataset[i] for i in indices])
        text, text_lengths = batch["text"].to(device), batch["text_lengths"].to(device)
        mel, mel_lengths = batch["mel"].to(device), batch["mel_lengths"].to(device)
        speakers = batch["speakers"].to(device) if speakers_on else None
        durations = acoustic.align(text, text_lengths, mel, mel_lengths, speakers)
        rngs = [torch.Generator(device).manual_seed(seed + i) for i in indices]
        out = acoustic.infer(text, text_lengths, sampling, speakers, durations=durations, rng=rngs)
        for row, i in enumerate(indices):
            frames = int(mel_lengths[row])
            save_npy_atomic(paths[i], out["mel"][row, :, :frames].cpu().numpy().astype(np.float32))
    return len(todo), skipped


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--checkpoint", "-m", required=True, help="the acoustic model: G_<step>.pth or a voice file")
    p.add_argument("--out-dir", required=True, help="where <wav stem>.npy files are written")
    p.add_argument("--filelist", help="clips to generate (default: the model config's data.training_files)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0, help="noise seed (item i uses seed + i)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    sampling_lib.add_sampling_arguments(p)
    args = p.parse_args(argv)
    for flag, value in (("--batch-size", args.batch_size), ("--threads", args.threads)):
        if value is not None and value < 1:
            print(f"error: {flag} must be a positive integer, got {value}", file=sys.stderr)
            return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        sampling = sampling_lib.from_args(args)
        model, hps = load_voice(args.checkpoint, args.device)
        hps = hps.replace(durations_dir=None, vocoder_mel_dir=None)
        filelist = args.filelist or hps.data.training_files
        if not Path(filelist).is_file():
            raise FileNotFoundError(f"filelist {filelist} not found; pass --filelist (a `wav|text` list)")
        out_dir = Path(args.out_dir)
        sha256 = file_sha256(Path(args.checkpoint))
        check_source(out_dir, Path(args.checkpoint), sha256)
        dataset = TextMelLoader(filelist, hps)
        if len(too_long(dataset)) == len(dataset):
            raise ValueError(f"every transcript in {filelist} has more symbols than its clip has mel frames: the "
                             f"transcripts do not belong to these clips")
        device = next(model.parameters()).device
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out_dir / SOURCE, json.dumps({"checkpoint": str(Path(args.checkpoint).resolve()),
                                                             "sha256": sha256}) + "\n")
        written, skipped = write_teacher_forced_mels(model, dataset, out_dir, sampling, args.batch_size, args.seed,
                                                     device)
        finetune_config(hps, Path(args.checkpoint), out_dir).save(out_dir / "vocoder_finetune.json")
    except (CheckpointError, config_lib.ConfigError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{out_dir}: {written} mels written now, {len(dataset) - written - len(skipped)} were already there"
          f"{f', {len(skipped)} skipped (transcript too long for the clip)' if skipped else ''} "
          f"({sampling.steps} {sampling.method} steps)\nnext: python train_flow_matching.py -c "
          f"{out_dir / 'vocoder_finetune.json'} -m RUN_DIR, then python -m inference.export_voice {args.checkpoint} "
          f"VOICE.pth --half --vocoder RUN_DIR/G_{FINETUNE['max_steps']}.pth")
    return 0


if __name__ == "__main__":
    sys.exit(main())
