"""Make a new voice from a few minutes of someone's recordings by adapting a multi-speaker base model.

    python -m voices.clone_voice --dataset /data/my_voice -m logs/my_voice

Only clone a voice with its owner's consent. The voice file records the source dataset's name and the
date it was made (metadata.cloned_from).

--dataset is an LJSpeech-style folder (metadata.csv `id|text|normalized` + wavs/). Its clips are checked
and phonemized (preprocess.py) into RUN/data; --minutes keeps only the first minutes of them (default 5).
The new speaker is appended to the base model's speakers (its embedding starts at the mean of theirs); the
base is the shipped multi-speaker voice unless --base names another. The defaults are the recipe that meets
the cloning bar in docs/voices.md (5 minutes of audio: 81% of the way from other voices to the same voice,
WER 1.14x the recordings', 13.9 minutes on 2 cores): the whole acoustic model adapts for 600 steps
(`--adapt conditioning` trains only ADAPTED, the new speaker's embedding and the layers that map a speaker
embedding into the text encoder, the duration predictor and the velocity network: weaker), then the vocoder
fine-tunes on the same clips for 1800 steps (ground-truth mels, in RUN/vocoder; --vocoder-steps 0 keeps the
base's): the shared vocoder, never trained on this voice, is what caps a clone's speaker similarity. The
vocoder trains in bfloat16 mixed precision where the CPU does bfloat16 in hardware (AMX or AVX-512 BF16),
1.3x faster there; --vocoder-bf16 / --no-vocoder-bf16 decide instead. Training runs train_flow_matching.py
on RUN (a progress bar with an ETA; stop with Ctrl-C and run the same command to resume: RUN/clone.json
records the dataset, name and base, and a run folder that holds another run is refused before anything is
written) and the result is exported as RUN/voice.pth, which the CLI and API load like any voice
(`--speaker NAME`).
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import shutil
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import soundfile as sf
import torch

from atomic import write_text_atomic
from training.checkpoint import CheckpointError, save_checkpoint
from config import ConfigError, HParams
from inference.synthesizer import fast_bf16_cpu
from training.teacher_forced_mels import FINETUNE
from training.voice_file import DEFAULT_VOICE

ADAPTED = ["acoustic.emb_g", "acoustic.encoder.cond", "acoustic.duration_predictor.cond", "acoustic.cfm.estimator.spk"]
WHAT_TRAINS = {"conditioning": ADAPTED, "acoustic": ["acoustic."]}  # --adapt: speaker layers, or all (the default)
# --vocoder-steps: teacher_forced_mels.FINETUNE on ground-truth mels, with the batch and rate measured for
# cloning (docs/voices.md: 600, 1200 and 1800 steps on 5 minutes of audio)
VOCODER_FINETUNE = dict(FINETUNE, batch_size=8, vocoder_learning_rate=2e-4, trainable=[])
# the acoustic adaptation's batches, as measured (docs/voices.md), whatever batches trained the base
ADAPT_BATCH = dict(batch_size=16, max_frames_per_batch=1500)


RECORD = "clone.json"  # in the run folder: what it clones (dataset, speaker name, base), checked on resume


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The command line; values are checked by check_args."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="LJSpeech-style folder (metadata.csv + wavs/) of the new voice")
    p.add_argument("-m", "--model", required=True, help="run folder (a bare name goes under logs/)")
    p.add_argument("--base", default=str(DEFAULT_VOICE),
                   help="multi-speaker voice file or G_<step>.pth to adapt (default: the shipped multi-speaker "
                        "voice pretrained/multispeaker.pth)")
    p.add_argument("--name", help="speaker name of the new voice (default: the dataset folder's name)")
    p.add_argument("--minutes", type=float, default=5.0,
                   help="use only the first N minutes of the dataset (default 5, as measured)")
    p.add_argument("--steps", type=int, default=600, help="adaptation steps (default 600)")
    p.add_argument("--adapt", choices=sorted(WHAT_TRAINS), default="acoustic",
                   help="acoustic (default): the whole acoustic model (the voice file then serves this speaker "
                        "best); conditioning: the new speaker's embedding and the speaker layers only (weaker)")
    p.add_argument("--vocoder-steps", type=int, default=1800,
                   help="then fine-tune the vocoder on the same clips for N steps (default 1800; 0 keeps the base's)")
    p.add_argument("--learning-rate", type=float, default=None,
                   help="learning rate (default 2e-3 for --adapt conditioning, 2e-4 for acoustic)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--vocoder-bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="fine-tune the vocoder in bfloat16 mixed precision (train.bf16_run): 1.3x faster on CPUs "
                        "with AMX (default: on where the CPU does bfloat16 in hardware, AMX or AVX-512 BF16; "
                        "the acoustic adaptation stays fp32: bf16 made it 1.4x slower there)")
    return p.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """ValueError for a flag value that cannot work (before anything is read or written)."""
    if args.steps < 1:
        raise ValueError(f"--steps must be a positive integer, got {args.steps}")
    if args.vocoder_steps < 0:
        raise ValueError(f"--vocoder-steps must be 0 or more, got {args.vocoder_steps}")
    if not math.isfinite(args.minutes) or args.minutes <= 0:  # nan would compare false and keep every clip
        raise ValueError(f"--minutes must be a positive number of minutes, got {args.minutes}")
    if args.learning_rate is not None and not (math.isfinite(args.learning_rate) and args.learning_rate > 0):
        raise ValueError(f"--learning-rate must be a positive number, got {args.learning_rate}")


def vocoder_bf16(args: argparse.Namespace) -> bool:
    """--vocoder-bf16 as given, else on for a CPU run on a CPU with bfloat16 hardware."""
    if args.vocoder_bf16 is not None:
        return args.vocoder_bf16
    import torch

    on_cpu = args.device == "cpu" or (args.device is None and not torch.cuda.is_available())
    return on_cpu and fast_bf16_cpu()


def run_record(dataset: Path, name: str, base: Path) -> dict:
    """What a run folder clones: resumed only when all of it is the same."""
    return {"dataset": str(dataset.resolve()), "speaker": name, "base": str(base.resolve())}


def check_run_dir(run_dir: Path, record: dict) -> bool:
    """ValueError unless run_dir is free (missing or empty: returns False) or holds this very clone run (the
    same dataset, name and base in clone.json: returns True, to resume). Checked before anything is written,
    so another run's folder is never touched."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"{run_dir} is a file, not a run folder; choose another -m")
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return False
    try:
        held = json.loads((run_dir / RECORD).read_text(encoding="utf-8"))
    except FileNotFoundError:
        names = sorted(p.name for p in run_dir.iterdir())
        files = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        raise ValueError(f"{run_dir} holds another run ({files}), not a clone run; choose another -m") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"{run_dir / RECORD} cannot be read ({e}); choose another -m") from None
    if not isinstance(held, dict) or any(held.get(k) != v for k, v in record.items()):
        held = held if isinstance(held, dict) else {}
        raise ValueError(f"{run_dir} holds the clone run of {held.get('dataset', 'another dataset')} as speaker "
                         f"{held.get('speaker', '?')!r}, not of {record['dataset']} as {record['speaker']!r}; "
                         f"choose another -m (or remove that folder)")
    return True


def read_base(base: Path):
    """The base voice (voice.VoiceState: weights, config); ValueError unless it is a multi-speaker model."""
    from training.voice_file import read_voice

    state = read_voice(base, use_ema=True)
    if state.hps.data.n_speakers < 2:
        raise ValueError(f"{base} is a single-speaker voice; adaptation needs a multi-speaker base model "
                         f"(e.g. one trained with configs/multispeaker.json)")
    return state


def check_dataset(dataset: Path) -> Path:
    """dataset/metadata.csv; FileNotFoundError unless the dataset is an LJSpeech-style folder."""
    metadata = dataset / "metadata.csv"
    if not metadata.is_file():
        raise FileNotFoundError(f"{dataset} has no metadata.csv; give an LJSpeech-style folder "
                                f"(metadata.csv with id|text|normalized lines, and wavs/<id>.wav)")
    return metadata


def prepare_data(dataset: Path, data_dir: Path, hps: HParams, minutes: Optional[float]) -> float:
    """Check and phonemize the dataset (its first `minutes` of clips, in id order) into data_dir/train.txt
    and val.txt with the new speaker's id; returns the minutes of training audio kept."""
    import preprocess
    from data_utils import read_filelist

    metadata = check_dataset(dataset)
    chosen, seconds = [], 0.0
    for utt in sorted(read_filelist(metadata), key=lambda u: u.wav_path):
        if minutes is not None and seconds >= minutes * 60:
            break
        if Path(utt.wav_path).is_file():  # a missing clip is left to preprocess's report
            seconds += sf.info(utt.wav_path).duration
        chosen.append(utt)
    data_dir.mkdir(parents=True, exist_ok=True)
    selection, cfg = data_dir / "selection.txt", data_dir / "base_config.json"
    write_text_atomic(selection, "".join(f"{u.wav_path}|{u.text}\n" for u in chosen))
    hps.replace(cache_dir=str(data_dir / "mel_cache")).save(cfg)  # not the base corpus's cache
    if preprocess.main(["--filelists", str(selection), "--out-dir", str(data_dir), "--config", str(cfg),
                        "--val-size", "1" if len(chosen) < 20 else "2"]) != 0:
        raise ValueError(f"no usable clip in {dataset}; see the table above")
    speaker = hps.data.n_speakers  # the new id
    kept = 0.0
    for name in ("train.txt", "val.txt"):
        lines = _lines(data_dir / name)
        write_text_atomic(data_dir / name, "".join(_with_speaker(line, speaker) + "\n" for line in lines))
        if name == "train.txt":
            kept = sum(sf.info(line.split("|", 1)[0]).duration for line in lines)
    return kept / 60


def _lines(path: Path) -> List[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _with_speaker(line: str, speaker: int) -> str:
    wav, text = line.split("|", 1)
    return f"{wav}|{speaker}|{text}"


def expanded_base(state, out: Path) -> None:
    """Write the base weights (a voice.VoiceState) with one more speaker embedding row (the mean of the
    others) to `out`."""
    weights = {k: v.float() if v.is_floating_point() else v for k, v in state.weights.items()}
    table = weights["acoustic.emb_g.weight"]
    weights["acoustic.emb_g.weight"] = torch.cat([table, table.mean(0, keepdim=True)])
    save_checkpoint(out, {"ema": weights, "config": state.hps.to_dict()})


def adaptation_config(hps: HParams, name: str, data_dir: Path, init: Path, steps: int, lr: float,
                      trainable: Sequence[str] = tuple(ADAPTED)) -> HParams:
    d = hps.data
    if name in d.speaker_names:
        raise ValueError(f"the base model already has a speaker named {name!r}; choose another --name")
    names = list(d.speaker_names) or [str(i) for i in range(d.n_speakers)]
    return hps.replace(
        n_speakers=d.n_speakers + 1, speaker_names=names + [name],
        training_files=str((data_dir / "train.txt").resolve()), validation_files=str((data_dir / "val.txt").resolve()),
        cache_dir=str((data_dir / "mel_cache").resolve()), durations_dir=None,
        train_acoustic=True, train_vocoder=False, use_discriminator=False, init_checkpoint=str(init.resolve()),
        init_parts=["acoustic", "vocoder"], trainable=list(trainable), max_steps=steps, learning_rate=lr, **ADAPT_BATCH,
        warmup_steps=min(20, steps), weight_decay=0.0,  # no decay: the other speakers' rows get no gradient
        eval_interval=steps, log_interval=max(1, min(20, steps)), keep_ckpts=1,
        cond_drop_rate=0.0, speaker_drop_rate=0.0,
        guidance_distill_scale=0.0)  # a distilled base (guidance folded in) adapts with the plain flow loss


def vocoder_config(adapted: HParams, acoustic_checkpoint: Path, steps: int, bf16: bool = False) -> HParams:
    """The adaptation config set to fine-tune the vocoder alone, from `acoustic_checkpoint`'s, on the same clips
    (in bf16 mixed precision if `bf16`)."""
    if bf16:
        adapted = adapted.replace(bf16_run=True, fp16_run=False)
    return adapted.replace(**dict(VOCODER_FINETUNE, max_steps=steps), init_checkpoint=str(acoustic_checkpoint.resolve()),
                           vocoder_mel_dir=None,  # ground-truth mels
                           eval_interval=steps, log_interval=max(1, min(20, steps)), keep_ckpts=1)


def export(run_dir: Path, steps: int, dataset: Path, minutes: float, base: Path, name: str,
           vocoder: Optional[Path] = None) -> Path:
    from inference.export_voice import export_voice

    metadata = {"cloned_from": {"dataset": dataset.resolve().name, "date": datetime.date.today().isoformat(),
                                "minutes_of_audio": round(minutes, 2), "base": str(base), "speaker": name,
                                "consent": "only clone a voice with its owner's consent"}}
    out = run_dir / "voice.pth"
    export_voice(run_dir / f"G_{steps}.pth", out, half=True, metadata=metadata, vocoder=vocoder)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    import train_flow_matching as train
    from training.train_utils import resolve_run_dir

    dataset, base = Path(args.dataset), Path(args.base)
    run_dir = resolve_run_dir(args.model)
    name = args.name or dataset.resolve().name
    record = run_record(dataset, name, base)
    fresh = not run_dir.exists()  # then a failed preparation removes the folder again
    try:  # every check before the first write: a refused run leaves no trace
        check_args(args)
        resume = check_run_dir(run_dir, record)
        state = read_base(base)
        init = run_dir / "base_with_new_speaker.pth"
        lr = args.learning_rate or (2e-3 if args.adapt == "conditioning" else 2e-4)
        cfg = adaptation_config(state.hps, name, run_dir / "data", init, args.steps, lr, WHAT_TRAINS[args.adapt])
        check_dataset(dataset)
    except (CheckpointError, ConfigError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / RECORD, json.dumps(record) + "\n")  # first: a stopped run can resume
        minutes = prepare_data(dataset, run_dir / "data", state.hps, args.minutes)
        expanded_base(state, init)
        cfg.save(run_dir / "adapt.json")
        write_text_atomic(run_dir / RECORD, json.dumps({**record, "minutes": minutes}) + "\n")
    except (CheckpointError, ConfigError, ValueError, OSError) as e:
        if fresh:  # the folder is this run's own (it did not exist): leave nothing behind
            shutil.rmtree(run_dir, ignore_errors=True)
        print(f"error: {e}", file=sys.stderr)
        return 2
    if resume:
        print(f"resuming the clone run in {run_dir}")
    print(f"adapting {base} to {name!r} on {minutes:.1f} min of audio: {args.steps} steps, parameters "
          f"{', '.join(WHAT_TRAINS[args.adapt])}")
    train_args = ["-c", str(run_dir / "adapt.json"), "-m", str(run_dir)]
    device = ["--device", args.device] if args.device else []
    code = train.main(train_args + device)
    if code != 0:
        return code
    vocoder = None
    if args.vocoder_steps:
        print(f"fine-tuning the vocoder on the same clips: {args.vocoder_steps} steps")
        vocoder_dir = run_dir / "vocoder"
        vocoder_dir.mkdir(exist_ok=True)
        vocoder_config(cfg, run_dir / f"G_{args.steps}.pth", args.vocoder_steps,
                       vocoder_bf16(args)).save(vocoder_dir / "finetune.json")
        code = train.main(["-c", str(vocoder_dir / "finetune.json"), "-m", str(vocoder_dir)] + device)
        if code != 0:
            return code
        vocoder = vocoder_dir / f"G_{args.vocoder_steps}.pth"
    try:
        out = export(run_dir, args.steps, dataset, minutes, base, name, vocoder)
    except (CheckpointError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}: speak with `python inference_flow_matching.py --checkpoint {out} --speaker {name} "
          f"--text \"...\"`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
