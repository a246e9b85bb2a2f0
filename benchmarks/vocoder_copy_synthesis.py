"""Copy synthesis per voice: recording -> mel -> vocoder, beside the recording itself and Griffin-Lim.

    python benchmarks/vocoder_copy_synthesis.py --vocoder pretrained/vocoder.pth \
        --vocoder pretrained/demo_voice.pth --lists datasets/multivoice/test_*.txt \
        datasets/multivoice/unseen_ked.txt --limit 20 --output vocoder_report.json

Each list is one voice (`wav|speaker|text` or `wav|text` lines with the spoken text, as build_voices.py
writes them). For every clip: the project's log-mel of the recording is turned back into audio by each
--vocoder (a voice file, a training checkpoint or a vocoder file: its MB-iSTFT generator, EMA weights)
and by Griffin-Lim (60 iterations on the mel's least-squares linear spectrum). Scores per voice and path:
  wer    pocketsphinx word error against the text (corpus level); the recording's own is the ceiling
  mcd    mel-cepstral distortion to the recording (dB, DTW)
  mrstft multi-resolution STFT distance to the recording (spectral convergence + log-magnitude L1, the
         vocoder training loss's full-band resolutions)
  sim    (--similarity) speaker similarity of the output to its recording (resemblyzer embeddings)
  p808, ovrl  DNSMOS naturalness (evaluation/naturalness.py), the recording's own as the ceiling
  lock   frame-rate lock (metrics.frame_rate_lock): how much of the output's power sits at multiples of the
         mel frame rate (sample rate / hop) instead of at the voice's pitch; recordings score near 0
  bands  signed log-mel error against the recording in the loud frames, per quarter of the mel channels, low
         to high (metrics.loud_band_log_mel_error): where a path loses or adds energy
Griffin-Lim is the bar: a vocoder should be no less intelligible on the same mels. Each vocoder's WER minus
Griffin-Lim's comes with a 95% paired bootstrap interval over the clips (from the per-clip word errors the
report keeps): with 20 clips one word is 0.004-0.005 of WER, and the interval says what such a gap is worth.

--references-from REPORT.json reuses the recording's and Griffin-Lim's scores of an earlier report made on the
same clips (checked by content hashes) instead of recomputing them: scoring a new snapshot then costs a third as much.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Dict, List

import librosa
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluation import metrics  # noqa: E402
from evaluation.asr import Transcriber  # noqa: E402
from evaluation.naturalness import dnsmos  # noqa: E402
from atomic import write_text_atomic  # noqa: E402
from audio import load_wav  # noqa: E402
from data_utils import read_filelist  # noqa: E402
from losses import MultiResolutionSTFTLoss  # noqa: E402
from mel_processing import mel_basis, mel_from_config  # noqa: E402
from evaluation.hardware import cpu_name  # noqa: E402
from training.voice_file import load_vocoder  # noqa: E402

GRIFFIN_LIM_ITERATIONS = 60


def griffin_lim(log_mel: np.ndarray, d) -> np.ndarray:
    """(n_mels, T) project log-mel -> waveform: non-negative least-squares linear magnitude, then Griffin-Lim."""
    basis = mel_basis(d.sampling_rate, d.filter_length, d.n_mel_channels, d.mel_fmin, d.mel_fmax,
                      torch.device("cpu"), torch.float64).numpy()
    magnitude = librosa.util.nnls(basis, np.exp(log_mel.astype(np.float64)))
    return librosa.griffinlim(magnitude, n_iter=GRIFFIN_LIM_ITERATIONS, hop_length=d.hop_length,
                              win_length=d.win_length, n_fft=d.filter_length, random_state=0).astype(np.float32)


def mrstft_distance(loss: MultiResolutionSTFTLoss, wav: np.ndarray, ref: np.ndarray) -> float:
    n = min(len(wav), len(ref))
    sc, mag = loss(torch.from_numpy(wav[:n]).unsqueeze(0), torch.from_numpy(ref[:n]).unsqueeze(0))
    return float(sc + mag)


REFERENCE_PATHS = ("recording", "griffin_lim")


def clip_id(wav_path: str) -> str:
    """The clip's content hash: the same recording wherever the corpus was built."""
    return hashlib.sha1(Path(wav_path).read_bytes()).hexdigest()[:16]


def clip_ids(list_path: Path, limit: int) -> List[str]:
    return [clip_id(u.wav_path) for u in read_filelist(list_path)[:limit]]


def reused_references(report: Dict, voice: str, ids: List[str], source: str) -> Dict:
    """The recording's and Griffin-Lim's scores for `voice` from an earlier report, if made on exactly these clips."""
    earlier = report.get("voices", {}).get(voice)
    if earlier is None or earlier.get("clip_ids") != ids:
        raise SystemExit(f"--references-from {source} has no scores for {voice} on these {len(ids)} clips "
                         f"(reports before clip ids were recorded cannot be reused): run once without it")
    return {name: earlier["paths"][name] for name in REFERENCE_PATHS}


def score_voice(list_path: Path, vocoders: Dict[str, tuple], transcriber: Transcriber, limit: int,
                encoder=None, references: bool = True) -> Dict:
    """{path name: {wer, lock, mcd, mrstft[, sim]}} for one voice's clips (path names: recording, griffin_lim
    (unless not `references`), vocoders). sim (with a speaker_similarity.SpeakerEncoder): cosine between the
    embeddings of the output and of its recording, how much of the voice survives the path."""
    utterances = read_filelist(list_path)[:limit]
    d = next(iter(vocoders.values()))[1].data
    loss = MultiResolutionSTFTLoss()
    refs, hyps = [], {}
    dist: Dict[str, Dict[str, List[float]]] = {}
    locks: Dict[str, List[float]] = {}
    natural: Dict[str, List[Dict[str, float]]] = {}
    for utt in utterances:
        ref = load_wav(utt.wav_path, d.sampling_rate, True)
        mel = mel_from_config(torch.from_numpy(ref).unsqueeze(0), d)
        outputs = {"recording": ref, "griffin_lim": griffin_lim(mel[0].numpy(), d)} if references else {}
        with torch.inference_mode():
            for name, (generator, _) in vocoders.items():
                outputs[name] = generator(mel)[0][0, 0].numpy()
        refs.append(utt.text)
        for name, wav in outputs.items():
            hyps.setdefault(name, []).append(transcriber.transcribe(wav, d.sampling_rate))
            locks.setdefault(name, []).append(metrics.frame_rate_lock(wav, d.sampling_rate, d.hop_length))
            natural.setdefault(name, []).append(dnsmos(wav, d.sampling_rate))
            if name != "recording":
                scores = dist.setdefault(name, {"mcd": [], "mrstft": [], "bands": [],
                                                **({"sim": []} if encoder else {})})
                scores["mcd"].append(metrics.mcd_dtw(ref, d.sampling_rate, wav, d.sampling_rate))
                scores["mrstft"].append(mrstft_distance(loss, wav, ref))
                out_mel = mel_from_config(torch.from_numpy(wav).unsqueeze(0), d)
                scores["bands"].append(metrics.loud_band_log_mel_error(mel[0].numpy(), out_mel[0].numpy()))
                if encoder is not None:
                    scores["sim"].append(encoder.similarity(encoder.embed(wav, d.sampling_rate),
                                                            encoder.embed(ref, d.sampling_rate)))
    result, words = {}, []
    for name, h in hyps.items():
        errors, words = metrics.clip_word_errors(refs, h)
        result[name] = {"wer": sum(errors) / sum(words), "lock": float(np.mean(locks[name])), "clip_errors": errors,
                        **{k: float(np.mean([n[k] for n in natural[name]])) for k in ("p808", "ovrl")}}
        for key, values in dist.get(name, {}).items():
            mean = np.mean(values, axis=0)  # per clip -> per path (bands: one mean per band)
            result[name][key] = mean.tolist() if key == "bands" else float(mean)
    return {"clips": len(utterances), "clip_words": words, "paths": result}


def versus_griffin_lim(voice: Dict) -> Dict[str, Dict[str, float]]:
    """{vocoder path: WER minus Griffin-Lim's, with its 95% paired bootstrap interval over the clips}."""
    paths, words = voice["paths"], voice.get("clip_words")
    reference = paths.get("griffin_lim", {}).get("clip_errors")
    if words is None or reference is None:  # reports made before per-clip errors were kept
        return {}
    return {name: metrics.wer_difference_interval(s["clip_errors"], reference, words)
            for name, s in paths.items() if name not in REFERENCE_PATHS}


def format_table(report: Dict) -> str:
    names = list(next(iter(report["voices"].values()))["paths"])
    lines = ["| voice | clips | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for voice, v in report["voices"].items():
        cells = []
        for name in names:
            s = v["paths"][name]
            cells.append(f"{s['wer']:.3f}" + (f" / {s['mcd']:.2f} / {s['mrstft']:.2f}" if "mcd" in s else "")
                         + (f" / {s['sim']:.3f}" if "sim" in s else "")
                         + (f" / P.808 {s['p808']:.2f}" if "p808" in s else "")
                         + (f" / lock {s['lock']:.2f}" if "lock" in s else ""))
        lines.append(f"| {voice} | {v['clips']} | " + " | ".join(cells) + " |")
    lines += ["", "cells: WER / MCD dB / MR-STFT distance [/ speaker similarity to the recording] "
                  "/ DNSMOS P.808 / frame-rate lock (recording: WER, P.808 and lock only)"]
    for voice, v in report["voices"].items():
        for name, s in v["paths"].items():
            if "bands" in s:
                lines.append(f"{voice}, {name}: loud-frame log-mel error by mel quarter (low to high) "
                             + " / ".join(f"{e:+.2f}" for e in s["bands"]))
    for voice, v in report["voices"].items():
        for name, d in v.get("versus_griffin_lim", {}).items():
            lines.append(f"{voice}, {name}: WER {d['difference']:+.3f} against Griffin-Lim "
                         f"(95% paired bootstrap over clips: {d['low']:+.3f} to {d['high']:+.3f})")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vocoder", action="append", required=True, help="voice, checkpoint or vocoder file (repeat)")
    p.add_argument("--lists", nargs="+", required=True, help="one filelist per voice")
    p.add_argument("--limit", type=int, default=20, help="clips per voice (default 20)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--output", help="write the JSON report here")
    p.add_argument("--similarity", action="store_true",
                   help="also score speaker similarity to the recording (resemblyzer; speaker_similarity.py)")
    p.add_argument("--references-from", metavar="REPORT.json",
                   help="reuse the recording's and Griffin-Lim's scores of this earlier report (same clips)")
    args = p.parse_args(argv)
    if args.references_from and not Path(args.references_from).is_file():
        p.error(f"--references-from {args.references_from}: no such report")
    earlier = json.loads(Path(args.references_from).read_text()) if args.references_from else None
    torch.set_num_threads(args.threads)
    vocoders = {Path(v).stem: load_vocoder(v) for v in args.vocoder}
    t0 = time.perf_counter()
    transcriber = Transcriber()
    encoder = None
    if args.similarity:
        from evaluation.speaker_similarity import SpeakerEncoder
        encoder = SpeakerEncoder()
    report = {"voices": {}, "settings": {"vocoders": args.vocoder, "limit": args.limit, "threads": args.threads,
                                         "griffin_lim_iterations": GRIFFIN_LIM_ITERATIONS, "processor": cpu_name()}}
    for list_path in args.lists:
        voice = Path(list_path).stem
        ids = clip_ids(Path(list_path), args.limit)
        reused = reused_references(earlier, voice, ids, args.references_from) if earlier is not None else None
        scores = score_voice(Path(list_path), vocoders, transcriber, args.limit, encoder, references=reused is None)
        if reused is not None:
            scores["paths"] = {**reused, **scores["paths"]}
        scores["versus_griffin_lim"] = versus_griffin_lim(scores)
        report["voices"][voice] = {**scores, "clip_ids": ids}
        summary = {name: {k: x for k, x in path.items() if k != "clip_errors"} for name, path in scores["paths"].items()}
        print(f"{voice}: {json.dumps(summary)}", flush=True)
    report["settings"]["wall_seconds"] = round(time.perf_counter() - t0, 1)
    print(format_table(report))
    if args.output:
        write_text_atomic(args.output, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
