"""Many voices, measured: guidance scales on the trained voices, and cloning a held-out voice.

    python benchmarks/bench_voices.py guidance --voice logs/multispeaker/G_4000.pth --scales 0 1 2 3 \
        --limit 10 --output benchmarks/results/guidance.json
    python benchmarks/bench_voices.py clone --voice logs/multispeaker/G_4000.pth --minutes 1 5 \
        --adapt-steps 200 --limit 10 --output benchmarks/results/cloning.json
    python benchmarks/bench_voices.py clone --voice pretrained/multispeaker.pth --defaults --prompt-seconds \
        --limit 10 --output benchmarks/results/cloning_defaults.json      # clone_voice.py --dataset D -m R only
    python benchmarks/bench_voices.py blend --voice pretrained/multispeaker.pth --pairs awb:slt_hts rms:kal \
        --sentences datasets/heldout/slt_hts/metadata.csv --limit 20 --output benchmarks/results/blending.json

The corpus is build_voices.py's (datasets/multivoice): speakers.json names the trained voices and the
held-out one, test_<voice>.txt holds each voice's held-out sentences (never trained on by any voice),
unseen_<voice>.txt every clip of the held-out voice.

Every row reports pocketsphinx WER (corpus level; beside it the recordings' own WER, the ceiling), DNSMOS
P.808 and OVRL (beside the recordings' own), MCD
against the recording (dB, DTW) and speaker similarity: the cosine between an utterance's resemblyzer
embedding and the centroid of the voice's real clips. The similarity scale is set by the recordings
themselves: `same` (a held-out recording against its own voice's centroid) and `different` (against
the other voices' centroids); `progress` places a result on it (0 = different voice, 1 = same).
guidance: every trained voice at every --scales value (--cfg-scale). clone: the held-out voice by
adaptation (clone_voice.py on the first --minutes of its non-test clips, timed) and by prompting (a
reference clip of about --prompt-seconds and its transcript, no training). blend: for each of --pairs A:B,
A, B and their 50/50 blend A(1)+B(1) read A's held-out sentences; each is scored against the centroids of A's
and B's recordings and of the model's own A and B (the blend should sit closer to each parent than the other
parent does).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluation import evaluate as evaluation  # noqa: E402
from evaluation.asr import Transcriber  # noqa: E402
from atomic import write_text_atomic  # noqa: E402
from data_utils import Utterance, read_filelist  # noqa: E402
from sampling import SamplingConfig  # noqa: E402
from evaluation.speaker_similarity import SpeakerEncoder, progress  # noqa: E402

CENTROID_CLIPS = 12  # real clips per voice for its centroid


class Corpus:
    """datasets/multivoice: trained voices, the held-out voice, their clips."""

    def __init__(self, folder: Path):
        self.folder = folder
        info = json.loads((folder / "speakers.json").read_text())
        self.names: List[str] = info["names"]
        self.held_out: str = info["held_out"]
        self.train = read_filelist(folder / "train.txt")

    def test(self, voice: str, limit: Optional[int]) -> List[Utterance]:
        return evaluation.load_utterances(self.folder / f"test_{voice}.txt", limit)

    def train_clips(self, voice: str) -> List[str]:
        speaker = self.names.index(voice)
        return [u.wav_path for u in self.train if u.speaker == speaker]

    def held_out_split(self, limit: Optional[int]):
        """(test utterances: the sentences held out of all training, the rest: material to clone from)."""
        test_ids = set((ROOT / "voices" / "corpus" / "test_ids.txt").read_text(encoding="utf-8").split())
        clips = evaluation.load_utterances(self.folder / f"unseen_{self.held_out}.txt")
        test = [u for u in clips if Path(u.wav_path).stem in test_ids][:limit]
        return test, [u for u in clips if Path(u.wav_path).stem not in test_ids]


SUMMARY_KEYS = ("wer_ref", "wer_synth", "mcd_mean", "rtf", "nfe", "scored", "p808_mean", "p808_ref_mean", "ovrl_mean",
                "ovrl_ref_mean")


def synthesize_and_embed(utts, transcriber, tts, sampling, encoder, speaker=None):
    """(evaluate.evaluate's summary, resemblyzer embeddings of the synthesized clips); speaker (an id, a name or
    a blend) replaces each utterance's own."""
    if speaker is not None:
        utts = [dataclasses.replace(u, speaker=speaker) for u in utts]
    with tempfile.TemporaryDirectory() as tmp:
        report = evaluation.evaluate(utts, transcriber, tts, sampling, save_audio=Path(tmp), log=lambda *_: None)
        embeddings = [encoder.embed_file(p) for p in sorted(Path(tmp).glob("*.wav"))]
    return {k: report["summary"].get(k) for k in SUMMARY_KEYS}, embeddings


def score(utts, transcriber, tts, sampling, encoder, centroid, speaker=None) -> Dict:
    """evaluate.evaluate's summary plus the mean similarity of the synthesized clips to `centroid`."""
    summary, embeddings = synthesize_and_embed(utts, transcriber, tts, sampling, encoder, speaker)
    return summary | {"similarity": mean_similarity(encoder, embeddings, centroid)}


def mean_similarity(encoder, embeddings, centroid) -> Optional[float]:
    return statistics.fmean(encoder.similarity(e, centroid) for e in embeddings) if embeddings else None


def voice_centroids(encoder, corpus: Corpus, voices: List[str]) -> Dict:
    """{voice: unit centroid of its first CENTROID_CLIPS training clips}."""
    return {v: encoder.centroid(corpus.train_clips(v)[:CENTROID_CLIPS]) for v in voices}


def levels(encoder, embeddings, own, others) -> Dict:
    """`same`: mean similarity of a voice's recordings to its own centroid; `different`: to other voices'."""
    return {"same": statistics.fmean(encoder.similarity(e, own) for e in embeddings),
            "different": statistics.fmean(encoder.similarity(e, o) for e in embeddings for o in others)}


def similarity_levels(encoder, corpus: Corpus, voices: List[str], limit: int) -> Dict:
    """Per voice: its centroid and its levels (its held-out recordings against the centroids)."""
    centroids = voice_centroids(encoder, corpus, voices)
    result = {}
    for v in voices:
        embs = [encoder.embed_file(u.wav_path) for u in corpus.test(v, limit)]
        result[v] = levels(encoder, embs, centroids[v], [c for o, c in centroids.items() if o != v])
    return {"centroids": centroids, "levels": result}


def guidance(args) -> Dict:
    from inference.synthesizer import TorchSynthesizer

    corpus, encoder, transcriber = Corpus(Path(args.corpus)), SpeakerEncoder(), Transcriber()
    voices = args.voices or [v for v in corpus.names if len(corpus.test(v, None)) >= args.limit]
    tts = TorchSynthesizer.from_checkpoint(args.voice)
    ref = similarity_levels(encoder, corpus, voices, args.limit)
    rows = []
    for scale in args.scales:
        sampling = tts.default_sampling.replace(cfg_scale=scale, **({"steps": args.steps} if args.steps else {}))
        for v in voices:
            row = {"scale": scale, "voice": v, **score(corpus.test(v, args.limit), transcriber, tts, sampling,
                                                      encoder, ref["centroids"][v])}
            row["progress"] = progress(row["similarity"], **ref["levels"][v])
            rows.append(row)
            print(_line(row), flush=True)
    return {"rows": rows, "levels": ref["levels"]}


def blend(args) -> Dict:
    """Per pair A:B: A, B and A(1)+B(1) on A's held-out sentences, each against A's and B's recordings (centroids)
    and against the model's own A and B (the centroids of its A and B readings)."""
    from inference.synthesizer import TorchSynthesizer
    from evaluation.speaker_similarity import unit

    corpus, encoder, transcriber = Corpus(Path(args.corpus)), SpeakerEncoder(), Transcriber()
    tts = TorchSynthesizer.from_checkpoint(args.voice)
    sampling = tts.default_sampling.replace(**({"steps": args.steps} if args.steps else {}))
    pairs = [tuple(p.split(":")) for p in args.pairs]
    recorded = voice_centroids(encoder, corpus, sorted({v for p in pairs for v in p}))
    rows = []
    for a, b in pairs:
        utts = (evaluation.load_utterances(Path(args.sentences), args.limit) if args.sentences
                else corpus.test(a, args.limit))
        readings = {label: synthesize_and_embed(utts, transcriber, tts, sampling, encoder, speaker)
                    for label, speaker in (("A", a), ("B", b), ("blend", f"{a}(1)+{b}(1)"))}
        modelled = {"A": unit(sum(readings["A"][1])), "B": unit(sum(readings["B"][1]))}
        row = {"pair": f"{a}:{b}"}
        for label, (summary, embeddings) in readings.items():
            row[label] = {"wer_synth": summary["wer_synth"], "wer_ref": summary["wer_ref"],
                          "p808_mean": summary["p808_mean"], "rtf": summary["rtf"],
                          **{f"to_recorded_{p}": mean_similarity(encoder, embeddings, recorded[v])
                             for p, v in (("A", a), ("B", b))},
                          **{f"to_model_{p}": mean_similarity(encoder, embeddings, modelled[p]) for p in "AB"}}
        for ref in ("recorded", "model"):  # the bar: the blend closer to each parent than the other parent is
            row[f"blend_between_{ref}"] = (row["blend"][f"to_{ref}_A"] > row["B"][f"to_{ref}_A"]
                                           and row["blend"][f"to_{ref}_B"] > row["A"][f"to_{ref}_B"])
        rows.append(row)
        print(f"{a}:{b}: " + "; ".join(f"{k} to A {v['to_recorded_A']:.3f} (model {v['to_model_A']:.3f}) to B "
                                       f"{v['to_recorded_B']:.3f} (model {v['to_model_B']:.3f}) WER {v['wer_synth']:.3f}"
                                       for k, v in ((k, row[k]) for k in ("A", "B", "blend"))), flush=True)
    return {"rows": rows}


def clone(args) -> Dict:
    from voices import clone_voice
    from inference.synthesizer import TorchSynthesizer

    corpus, encoder, transcriber = Corpus(Path(args.corpus)), SpeakerEncoder(), Transcriber()
    test, pool = corpus.held_out_split(args.limit)
    others = [v for v in corpus.names if corpus.train_clips(v)]
    centroid = encoder.centroid([u.wav_path for u in pool[-CENTROID_CLIPS:]])
    embs = [encoder.embed_file(u.wav_path) for u in test]
    held_out = levels(encoder, embs, centroid, list(voice_centroids(encoder, corpus, others).values()))
    print(f"{corpus.held_out}: same-voice similarity {held_out['same']:.3f}, different voices "
          f"{held_out['different']:.3f}")
    sampling = SamplingConfig(steps=args.steps) if args.steps else None  # None: each voice's own default
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = TorchSynthesizer.from_checkpoint(args.voice)
        for seconds in args.prompt_seconds:
            wav, text = _reference(pool, seconds, tmp / f"ref_{seconds:g}.wav")
            base.set_reference(wav, text)
            row = {"method": "prompt", "minutes": seconds / 60,
                   **score(test, transcriber, base, sampling, encoder, centroid)}
            rows.append(row | {"progress": progress(row["similarity"], **held_out)})
            print(_line(row), flush=True)
        base.set_reference(None)
        dataset = _ljspeech_folder(pool, tmp / corpus.held_out)
        recipes = [("defaults", None)] if args.defaults else [(a, m) for a in args.adapt for m in args.minutes]
        for adapt, minutes in recipes:
            run = tmp / f"adapt_{adapt}_{minutes}"
            flags = ["--dataset", str(dataset), "-m", str(run)]
            if not args.defaults:
                flags += ["--base", args.voice, "--name", corpus.held_out, "--minutes", str(minutes), "--steps",
                          str(args.adapt_steps), "--vocoder-steps", str(args.vocoder_steps), "--adapt", adapt,
                          "--device", "cpu"] + (["--vocoder-bf16"] if args.vocoder_bf16 else [])
            t0 = time.perf_counter()
            code = clone_voice.main(flags)
            if code != 0:
                raise RuntimeError(f"clone_voice.py failed with exit code {code}")
            tts = TorchSynthesizer.from_checkpoint(run / "voice.pth")
            recipe = {"flags": flags[4:]} if args.defaults else {
                "minutes": minutes, "adapt_steps": args.adapt_steps, "vocoder_steps": args.vocoder_steps,
                "vocoder_bf16": args.vocoder_bf16}
            row = {"method": f"adapt {adapt}", **recipe, "adapt_cpu_minutes": (time.perf_counter() - t0) / 60,
                   **score(test, transcriber, tts, sampling, encoder, centroid, speaker=tts.n_speakers - 1)}
            rows.append(row | {"progress": progress(row["similarity"], **held_out)})
            print(_line(row), flush=True)
    return {"rows": rows, "levels": held_out, "held_out": corpus.held_out}


def _reference(pool: List[Utterance], seconds: float, out: Path):
    """Join the first clips of the pool up to about `seconds` -> (wav path, transcript)."""
    import numpy as np

    waves, texts, total, rate = [], [], 0.0, None
    for u in pool:
        wav, rate = sf.read(u.wav_path, dtype="float32")
        waves.append(wav)
        texts.append(u.text)
        total += len(wav) / rate
        if total >= seconds:
            break
    sf.write(out, np.concatenate(waves), rate)
    return out, " ".join(texts)


def _ljspeech_folder(pool: List[Utterance], folder: Path) -> Path:
    """An LJSpeech-style folder (metadata.csv + wavs/ links) of the pool, for clone_voice.py."""
    (folder / "wavs").mkdir(parents=True)
    lines = []
    for u in pool:
        stem = Path(u.wav_path).stem
        (folder / "wavs" / f"{stem}.wav").symlink_to(Path(u.wav_path).resolve())
        lines.append(f"{stem}|{u.text}|{u.text}\n")
    (folder / "metadata.csv").write_text("".join(lines))
    return folder


def _line(row: Dict) -> str:
    head = " ".join(f"{k}={row[k]}" for k in ("scale", "voice", "method") if k in row)
    if "minutes" in row:
        head += f" minutes={row['minutes']:.2f}"
    return (f"{head}: WER {row['wer_synth']:.3f} (recordings {row['wer_ref']:.3f}), MCD {row['mcd_mean']:.2f}, "
            f"RTF {row['rtf']:.3f}, similarity {row['similarity']:.3f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("guidance", "clone", "blend"))
    p.add_argument("--voice", required=True, help="multi-speaker voice file or G_<step>.pth")
    p.add_argument("--corpus", default=str(ROOT / "datasets" / "multivoice"), help="build_voices.py output folder")
    p.add_argument("--voices", nargs="*", help="guidance: trained voices to score (default: all with test sets)")
    p.add_argument("--scales", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0])
    p.add_argument("--minutes", type=float, nargs="*", default=[1.0, 5.0], help="clone: minutes to adapt on")
    p.add_argument("--adapt-steps", type=int, default=200)
    p.add_argument("--vocoder-steps", type=int, default=0, help="clone: clone_voice.py --vocoder-steps")
    p.add_argument("--adapt", nargs="*", default=["conditioning"], choices=("conditioning", "acoustic"),
                   help="clone: what adaptation trains (clone_voice.py --adapt)")
    p.add_argument("--vocoder-bf16", action="store_true", help="clone: clone_voice.py --vocoder-bf16")
    p.add_argument("--prompt-seconds", type=float, nargs="*", default=[6.0, 20.0], help="clone: reference lengths")
    p.add_argument("--steps", type=int, default=None, help="ODE steps (euler, sway, no guidance; default: each "
                                                          "voice's own default sampling)")
    p.add_argument("--defaults", action="store_true",
                   help="clone: clone_voice.py with only --dataset and -m (its defaults: the shipped recipe)")
    p.add_argument("--pairs", nargs="+", default=["awb:slt_hts", "rms:kal", "flite_slt:awb"],
                   help="blend: speaker pairs A:B, each blended 50/50")
    p.add_argument("--sentences", help="blend: a filelist of held-out sentences to read (default: the first voice's "
                                       "held-out sentences in --corpus); its recordings' WER is reported as wer_ref")
    p.add_argument("--limit", type=int, default=10, help="held-out sentences per voice")
    p.add_argument("--output", help="JSON report")
    args = p.parse_args(argv)
    from training.voice_file import DEFAULT_VOICE

    if args.defaults and Path(args.voice).resolve() != DEFAULT_VOICE.resolve():
        p.error(f"--defaults runs clone_voice.py with no flags but --dataset and -m, so it clones from the shipped "
                f"voice ({DEFAULT_VOICE}); --voice {args.voice} would not be the base: drop --defaults or --voice")
    import torch

    report = {"what": args.what, "voice": args.voice, "steps": args.steps, "threads": torch.get_num_threads(),
              "hardware": evaluation.hardware_info("cpu"), **{"guidance": guidance, "clone": clone, "blend": blend}[args.what](args)}
    if args.output:
        write_text_atomic(args.output, json.dumps(report, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
