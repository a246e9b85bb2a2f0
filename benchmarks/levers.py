"""Training levers for a new voice at a fixed CPU budget: which recipe learns fastest on 2 cores?

Each lever is a set of config changes to the base config (a new voice's config.json from preprocess.py).
All runs train at the same time, one thread each, for the same training wall time (`train.max_minutes`),
so each gets the same share of the CPU; then each run's last checkpoint is scored with evaluate.py on
held-out sentences (end to end, through the run's vocoder) and one table compares them:

    python benchmarks/levers.py --base filelists/festival_slt/config.json --out-dir logs/levers \
        --minutes 40 --test datasets/festival_slt/metadata_test.csv

Rerunning the same command resumes unfinished runs and skips finished evaluations. The winner goes into
configs/small.json; confirm it alone on both threads (`train_flow_matching.py --max-minutes 30`).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.checkpoint import checkpoint_step, latest_checkpoint  # noqa: E402


def _recipe(learning_rate: float, max_frames_per_batch: int, flow_dropout: float) -> Dict[str, Dict]:
    """The three studied keys as changes to a config (train / model sections)."""
    return {"train": {"learning_rate": learning_rate, "max_frames_per_batch": max_frames_per_batch},
            "model": {"flow_dropout": flow_dropout}}


# name -> changes to the base config. Each lever sets all three studied keys, so the study does not depend
# on what the base config holds: "baseline" is the recipe before the study, "recipe" the one
# configs/small.json took from it.
LEVERS: Dict[str, Dict[str, Dict]] = {
    "baseline": _recipe(5e-4, 3000, 0.1),
    "lr_1e-3": _recipe(1e-3, 3000, 0.1),
    "lr_1e-3_frames_1500": _recipe(1e-3, 1500, 0.1),
    "lr_1e-3_no_dropout": _recipe(1e-3, 3000, 0.0),
    "recipe": _recipe(1e-3, 1500, 0.0),
}


def lever_config(base: dict, changes: Dict[str, Dict], minutes: float) -> dict:
    """A copy of `base` with `changes` applied, a time budget, and every 250-step checkpoint kept."""
    cfg = json.loads(json.dumps(base))
    for section, values in changes.items():
        cfg[section].update(values)
    cfg["train"].update(max_minutes=minutes, max_steps=None, eval_interval=250, keep_ckpts=1000)
    return cfg


def last_checkpoint(run: Path) -> Path:
    ckpt = latest_checkpoint(run)
    if ckpt is None:
        raise FileNotFoundError(f"{run} has no G_<step>.pth: its training failed (see {run / 'train.log'})")
    return ckpt


def train_all(runs: Dict[str, Path]) -> None:
    """Train every run at once, one thread each; raise if one fails."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    procs = {}
    for name, run in runs.items():
        with open(run / "stdout.txt", "a", encoding="utf-8") as out:  # the child keeps its own handle
            procs[name] = subprocess.Popen([sys.executable, str(ROOT / "train_flow_matching.py"), "-c",
                                            str(run / "lever.json"), "-m", str(run)], stdout=out, stderr=out, env=env)
    failed = [name for name, p in procs.items() if p.wait() != 0]
    if failed:
        raise RuntimeError(f"training failed for {failed}: see stdout.txt in their run folders")


def evaluate(run: Path, test: str, ode_steps: int, threads: int) -> dict:
    """evaluate.py on the run's last checkpoint (report cached in run/eval/)."""
    ckpt = last_checkpoint(run)
    out = run / "eval" / f"{ckpt.stem}_s{ode_steps}.json"
    if not out.is_file():
        out.parent.mkdir(exist_ok=True)
        subprocess.run([sys.executable, "-m", "evaluation.evaluate", "-m", str(ckpt), "--filelist", test,
                        "--steps", str(ode_steps), "--method", "euler", "--threads", str(threads),
                        "--output", str(out)], check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return json.loads(out.read_text(encoding="utf-8"))


def _describe(changes: Dict[str, Dict]) -> str:
    return ", ".join(f"{k} {v}" for values in changes.values() for k, v in values.items())


def table(rows: List[dict]) -> str:
    lines = ["| lever | changes | steps | WER (recordings) | MCD dB | abs log dur |", "|---|---|---:|---|---:|---:|"]
    for r in rows:
        s = r["summary"]
        lines.append(f"| {r['lever']} | {r['changes']} | {r['step']} | {s['wer_synth']:.3f} "
                     f"({s['wer_ref']:.3f}) | {s['mcd_mean']:.2f} | {s['abs_log_dur_ratio_mean']:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", required=True, help="the new voice's config.json (from preprocess.py)")
    p.add_argument("--out-dir", required=True, type=Path, help="one run folder per lever is made here")
    p.add_argument("--test", required=True, help="held-out sentences for evaluate.py (metadata.csv or filelist)")
    p.add_argument("--minutes", type=float, default=40.0, help="training wall time of every run")
    p.add_argument("--levers", nargs="+", choices=sorted(LEVERS),
                   default=["baseline", "lr_1e-3", "lr_1e-3_frames_1500", "lr_1e-3_no_dropout"])
    p.add_argument("--ode-steps", type=int, default=4, help="Euler steps of the evaluation")
    p.add_argument("--threads", type=int, default=2, help="torch threads of each evaluation (run one at a time)")
    args = p.parse_args(argv)

    base = json.loads(Path(args.base).read_text(encoding="utf-8"))
    runs = {}
    for name in args.levers:
        run = args.out_dir / name
        run.mkdir(parents=True, exist_ok=True)
        (run / "lever.json").write_text(json.dumps(lever_config(base, LEVERS[name], args.minutes), indent=2))
        runs[name] = run
    train_all(runs)
    rows = []
    for name, run in runs.items():
        report = evaluate(run, args.test, args.ode_steps, args.threads)
        rows.append(dict(lever=name, changes=_describe(LEVERS[name]), step=checkpoint_step(last_checkpoint(run)),
                         summary=report["summary"]))
    (args.out_dir / "levers.json").write_text(json.dumps(dict(minutes=args.minutes, rows=rows), indent=2))
    print(f"{args.minutes:g} minutes of training each, all runs at once with one thread each; "
          f"{args.ode_steps} Euler steps, sway -1\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
