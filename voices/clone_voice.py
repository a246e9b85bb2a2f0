"""Make a new voice from a few minutes of someone's recordings by adapting a multi-speaker base model.

    python -m voices.clone_voice --dataset /data/my_voice --base pretrained/multispeaker.pth -m logs/my_voice

Only clone a voice with its owner's consent. The voice file records the source dataset's name and the
date it was made (metadata.cloned_from).

--dataset is an LJSpeech-style folder (metadata.csv `id|text|normalized` + wavs/). Its clips are checked
and phonemized (preprocess.py) into RUN/data; --minutes keeps only the first minutes of them. The new
speaker is appended to the base model's speakers (its embedding starts at the mean of theirs) and only
a small set of conditioning parameters trains (ADAPTED: the new speaker's embedding, and the layers
that map a speaker embedding into the text encoder, the duration predictor and the velocity network;
`--adapt acoustic` trains the whole acoustic model instead). The vocoder stays as in the base unless
--vocoder-steps N fine-tunes it afterwards on the same clips (ground-truth mels, in RUN/vocoder): the
shared vocoder, never trained on this voice, is what caps a clone's speaker similarity. Training runs
train_flow_matching.py on RUN (a progress bar with an ETA; stop with Ctrl-C and run the same command to
resume) and the result is exported as RUN/voice.pth, which the CLI and API load like any voice
(`--speaker NAME`).
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import soundfile as sf
import torch

from atomic import write_text_atomic
from training.checkpoint import CheckpointError, save_checkpoint
from config import ConfigError, HParams
from training.teacher_forced_mels import FINETUNE

ADAPTED = ["acoustic.emb_g", "acoustic.encoder.cond", "acoustic.duration_predictor.cond", "acoustic.cfm.estimator.spk"]
WHAT_TRAINS = {"conditioning": ADAPTED, "acoustic": ["acoustic."]}  # --adapt: the default, or the whole acoustic model
# --vocoder-steps: teacher_forced_mels.FINETUNE on ground-truth mels, with the batch and rate measured for
# cloning (README "Many voices": 600 and 1200 steps on 5 minutes of audio)
VOCODER_FINETUNE = dict(FINETUNE, batch_size=8, vocoder_learning_rate=2e-4, trainable=[])


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="LJSpeech-style folder (metadata.csv + wavs/) of the new voice")
    p.add_argument("--base", required=True, help="multi-speaker voice file or G_<step>.pth to adapt")
    p.add_argument("-m", "--model", required=True, help="run folder (a bare name goes under logs/)")
    p.add_argument("--name", help="speaker name of the new voice (default: the dataset folder's name)")
    p.add_argument("--minutes", type=float, default=None, help="use only the first N minutes of the dataset")
    p.add_argument("--steps", type=int, default=300, help="adaptation steps (default 300)")
    p.add_argument("--adapt", choices=sorted(WHAT_TRAINS), default="conditioning",
                   help="conditioning (default): the new speaker's embedding and the speaker layers only; "
                        "acoustic: the whole acoustic model (more capacity, the voice file then serves this "
                        "speaker best)")
    p.add_argument("--vocoder-steps", type=int, default=0,
                   help="then fine-tune the vocoder on the same clips for N steps (default 0: keep the base's)")
    p.add_argument("--learning-rate", type=float, default=None,
                   help="learning rate (default 2e-3 for --adapt conditioning, 2e-4 for acoustic)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--vocoder-bf16", action="store_true",
                   help="fine-tune the vocoder in bfloat16 mixed precision (train.bf16_run): 1.3x faster on CPUs "
                        "with AMX (the acoustic adaptation stays fp32: bf16 made it 1.4x slower there)")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error(f"--steps must be a positive integer, got {args.steps}")
    if args.vocoder_steps < 0:
        p.error(f"--vocoder-steps must be 0 or more, got {args.vocoder_steps}")
    if args.minutes is not None and args.minutes <= 0:
        p.error(f"--minutes must be positive, got {args.minutes}")
    return args


def read_base(base: Path):
    """The base voice (voice.VoiceState: weights, config); ValueError unless it is a multi-speaker model."""
    from training.voice_file import read_voice

    state = read_voice(base, use_ema=True)
    if state.hps.data.n_speakers < 2:
        raise ValueError(f"{base} is a single-speaker voice; adaptation needs a multi-speaker base model "
                         f"(e.g. one trained with configs/multispeaker.json)")
    return state


def prepare_data(dataset: Path, data_dir: Path, hps: HParams, minutes: Optional[float]) -> float:
    """Check and phonemize the dataset (its first `minutes` of clips, in id order) into data_dir/train.txt
    and val.txt with the new speaker's id; returns the minutes of training audio kept."""
    import preprocess
    from data_utils import read_filelist

    metadata = dataset / "metadata.csv"
    if not metadata.is_file():
        raise FileNotFoundError(f"{dataset} has no metadata.csv; give an LJSpeech-style folder "
                                f"(metadata.csv with id|text|normalized lines, and wavs/<id>.wav)")
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
        init_parts=["acoustic", "vocoder"], trainable=list(trainable), max_steps=steps, learning_rate=lr,
        warmup_steps=min(20, steps), weight_decay=0.0,  # no decay: the other speakers' rows get no gradient
        eval_interval=steps, log_interval=max(1, min(20, steps)), keep_ckpts=1,
        cond_drop_rate=0.0, speaker_drop_rate=0.0)


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
    try:
        state = read_base(base)
        init = run_dir / "base_with_new_speaker.pth"
        lr = args.learning_rate or (2e-3 if args.adapt == "conditioning" else 2e-4)
        # The config first: a taken --name fails before the slow data preparation.
        cfg = adaptation_config(state.hps, name, run_dir / "data", init, args.steps, lr, WHAT_TRAINS[args.adapt])
        minutes = prepare_data(dataset, run_dir / "data", state.hps, args.minutes)
        expanded_base(state, init)
        cfg.save(run_dir / "adapt.json")
        write_text_atomic(run_dir / "clone.json", json.dumps({"minutes": minutes, "speaker": name}) + "\n")
    except (CheckpointError, ConfigError, FileNotFoundError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
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
                       args.vocoder_bf16).save(vocoder_dir / "finetune.json")
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
