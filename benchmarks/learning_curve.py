"""Learning curve of a run: evaluate.py reports against training steps and training wall time.

    python -m evaluation.evaluate -m logs/NAME/G_1000.pth --filelist datasets/festival_slt/metadata_test.csv --limit 20 \
        --output logs/NAME/eval/G_1000.json          # one report per checkpoint
    python benchmarks/learning_curve.py logs/NAME    # -> markdown table

Speed is left out: checkpoints are often evaluated while training runs, which skews timings.
Training wall time counts only the time the trainer ran: train.log is read run by run (a resumed run
starts with a `run folder` line), so the gaps between runs are not counted.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Dict, List

_STAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)"
_RUN_START = re.compile(_STAMP + r" INFO run folder ")
_EVENT = re.compile(_STAMP + r" \w+ (?:step (\d+) |saved \S*G_(\d+)\.pth|stopped at step (\d+))")


def wall_seconds_at_steps(log_text: str) -> Dict[int, float]:
    """step -> training wall seconds when the trainer logged or saved that step, summed over runs."""
    done, run_start, last, at = 0.0, None, None, {}
    for line in log_text.splitlines():
        start = _RUN_START.match(line)
        if start:
            if run_start is not None:
                done += (last - run_start).total_seconds()
            run_start = last = datetime.fromisoformat(start.group(1))
            continue
        event = _EVENT.match(line)
        if event and run_start is not None:
            last = datetime.fromisoformat(event.group(1))
            step = int(next(g for g in event.groups()[1:] if g))
            at[step] = done + (last - run_start).total_seconds()
    return at


def curve_rows(run_dir: Path) -> List[dict]:
    at = wall_seconds_at_steps((run_dir / "train.log").read_text(encoding="utf-8"))
    rows = []
    for path in sorted((run_dir / "eval").glob("*.json")):
        report = json.loads(path.read_text(encoding="utf-8"))
        s, settings = report["summary"], report["settings"]
        step = int(re.search(r"G_(\d+)", settings["checkpoint"]).group(1))
        rows.append({"step": step, "minutes": at.get(step, float("nan")) / 60, "steps": settings["steps"],
                     "method": settings["method"], "wer": s["wer_synth"],
                     "wer_ref": s["wer_ref"], "mcd": s["mcd_mean"], "log_dur": s["abs_log_dur_ratio_mean"]})
    return sorted(rows, key=lambda r: (r["step"], r["steps"]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir", type=Path, help="logs/NAME with train.log and eval/*.json")
    args = p.parse_args(argv)
    rows = curve_rows(args.run_dir)
    if not rows:
        print(f"error: no evaluate.py reports in {args.run_dir / 'eval'}", file=sys.stderr)
        return 2
    print("| step | training wall time | ODE | WER (ground truth) | MCD dB | abs log dur |")
    print("|---:|---:|---|---|---:|---:|")
    for r in rows:
        print(f"| {r['step']} | {r['minutes']:.0f} min | {r['steps']} {r['method']} | {r['wer']:.3f} "
              f"({r['wer_ref']:.3f}) | {r['mcd']:.2f} | {r['log_dur']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
