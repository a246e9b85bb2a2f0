"""High-level text-to-speech API: load a checkpoint once, turn text into a waveform.

    from synthesize import Synthesizer, save_wav
    tts = Synthesizer.from_checkpoint("logs/ljs/G_100000.pth")
    audio, sample_rate, info = tts.synthesize("Hello world. How are you?")
    save_wav("hello.wav", audio, sample_rate)

Long text is split into sentences (at . ! ? ; : and, for long runs, at commas). The acoustic model runs
the sentences in padded batches (it is padding invariant; each sentence gets its own noise generator),
the vocoder runs each sentence at its own length, and the sentences are joined with short pauses, so a
batch sounds exactly like its sentences synthesized one by one. Nothing is silently truncated; text
with nothing speakable is a ValueError.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

import pipeline
import streaming
import text as text_lib
from atomic import check_output_path  # noqa: F401  (re-exported: part of the API)
from audio import SENTENCE_PAUSE_SECONDS, join_with_pauses, save_wav  # noqa: F401  (re-exported)
from config import HParams
from sampling import SamplingConfig
from text.sentences import MAX_SENTENCE_CHARS, has_speakable, split_sentences  # noqa: F401  (re-exported)

if TYPE_CHECKING:  # models pulls in the vocoder (scipy); imported when a checkpoint is loaded
    from models import FlowMatchingSynthesizer


# ----------------------------------------------------------------------------------------------------
# Synthesizer
# ----------------------------------------------------------------------------------------------------

class Synthesizer:
    """Text -> waveform with a loaded FlowMatchingSynthesizer (acoustic model + MB-iSTFT vocoder)."""

    def __init__(self, model: "FlowMatchingSynthesizer", hps: HParams, n_vocab: int,
                 device: Union[str, torch.device] = "cpu", batch_size: int = 8):
        self.model = model.eval()
        self.hps = hps
        self.n_vocab = n_vocab
        self.device = torch.device(device)
        self.batch_size = batch_size

    @property
    def sample_rate(self) -> int:
        return self.hps.data.sampling_rate

    @property
    def hop_length(self) -> int:
        return self.hps.data.hop_length

    @property
    def n_speakers(self) -> int:
        return self.hps.data.n_speakers

    @property
    def data(self):
        """The data config (text cleaners, language, add_blank) the text front end uses."""
        return self.hps.data

    @classmethod
    def from_checkpoint(cls, path: Union[str, Path], device: Union[str, torch.device] = "cpu",
                        use_ema: bool = True, config: Union[None, str, Path, dict, HParams] = None,
                        batch_size: int = 8) -> "Synthesizer":
        """Load a training checkpoint (G_<step>.pth) or an exported voice once (see voice.load_voice).

        use_ema: take the EMA weights (recommended for flow matching) when the checkpoint has them.
        config: optional HParams / dict / JSON path overriding the stored config; it must fit the
            checkpoint, else ConfigError naming the field.
        Raises CheckpointError for a missing/unreadable/incompatible file, ValueError for a bad device.
        """
        from voice import load_voice

        model, hps = load_voice(path, device, use_ema, config)
        return cls(model, hps, model.n_vocab, device=device, batch_size=batch_size)

    # -- text ----------------------------------------------------------------------------------------

    def text_to_ids(self, text: str) -> List[int]:
        """Clean one sentence and map it to the model's symbol ids (blanks when the config says so).

        Unknown characters are dropped with a warning; ValueError when nothing speakable is left.
        """
        if not text or not text.strip():
            raise ValueError("text is empty; give some words to speak")
        if not has_speakable(text):
            raise ValueError(f"text {text!r} has nothing speakable (no letters or digits)")
        return text_lib.text_to_ids(text, self.hps.data)

    def sentences(self, text: str) -> List[str]:
        """Split text into speakable sentences; ValueError for empty or unspeakable text."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text is empty; give some words to speak")
        sentences = split_sentences(text)
        if not sentences:
            raise ValueError(f"text {text!r} has nothing speakable (no letters or digits)")
        return sentences

    def prepare(self, text: str) -> List[List[int]]:
        """Split text into sentences and return their id sequences (raises ValueError up front)."""
        return [self.text_to_ids(s) for s in self.sentences(text)]

    # -- synthesis -----------------------------------------------------------------------------------

    @torch.inference_mode()
    def synthesize_ids(self, sequences: Sequence[Sequence[int]], sampling: SamplingConfig = SamplingConfig(),
                       speaker: Optional[int] = None, seed: int = 0) -> Tuple[List[np.ndarray], Dict[str, float]]:
        """Synthesize id sequences in padded batches; returns per-sequence waveforms and timing info."""
        speakers = self.check_speaker(speaker)
        # One generator per sentence, seeded from (seed, index): a sentence's noise does not depend on
        # the batch it lands in, so batching reproduces sentence-by-sentence synthesis.
        seeds = np.random.SeedSequence(int(seed)).generate_state(max(len(sequences), 1), dtype=np.uint64)
        order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))  # similar lengths share a batch
        waves: List[Optional[np.ndarray]] = [None] * len(sequences)
        token_durations: List[Optional[List[int]]] = [None] * len(sequences)
        info = {"nfe": sampling.nfe, "acoustic_seconds": 0.0, "vocoder_seconds": 0.0, "durations": token_durations}
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            lengths = torch.tensor([len(sequences[i]) for i in batch], dtype=torch.long)
            ids = torch.zeros(len(batch), int(lengths.max()), dtype=torch.long)
            for row, i in enumerate(batch):
                ids[row, :len(sequences[i])] = torch.tensor(sequences[i], dtype=torch.long)
            spk = None if speakers is None else speakers.expand(len(batch))
            audio, durations, _, extra = self.model.infer(
                ids.to(self.device), lengths.to(self.device), sampling, spk,
                generator=[torch.Generator().manual_seed(int(seeds[i])) for i in batch])
            for row, i in enumerate(batch):
                waves[i] = audio[row, 0, :int(extra["audio_lengths"][row])].float().cpu().numpy()
                token_durations[i] = durations[row, :len(sequences[i])].tolist()
            info["nfe"] = int(extra["nfe"])
            info["acoustic_seconds"] += extra["acoustic_seconds"]
            info["vocoder_seconds"] += extra["vocoder_seconds"]
        return waves, info

    def synthesize(self, text: str, sampling: SamplingConfig = SamplingConfig(), speaker: Optional[int] = None,
                   seed: int = 0, timings: bool = False) -> Tuple[np.ndarray, int, Dict[str, float]]:
        """Text -> (waveform float32 (T,), sample_rate, info).

        info: nfe (network evaluations per sentence), audio_seconds, acoustic_seconds, vocoder_seconds,
        rtf ((acoustic + vocoder) / audio), sentences, text_seconds (frontend time), durations (frames per
        input token, per sentence); with timings=True also timings = {"words": [{word, start, end}],
        "phonemes": [{phoneme, start, end}]} in seconds of the returned audio (timings.py).
        Raises ValueError for empty or unspeakable text and a bad speaker.
        """
        return pipeline.synthesize_text(self, text, sampling, speaker, seed, timings)

    def synthesize_sequences(self, sequences: Sequence[Sequence[int]], sampling: SamplingConfig = SamplingConfig(),
                             speaker: Optional[int] = None, seed: int = 0) -> Tuple[np.ndarray, int, Dict[str, float]]:
        """Sentences already turned into ids (see `prepare`) -> one waveform joined with pauses."""
        waves, info = self.synthesize_ids(sequences, sampling, speaker, seed)
        audio = join_with_pauses(waves, self.sample_rate)
        info["audio_seconds"] = len(audio) / self.sample_rate
        info["rtf"] = (info["acoustic_seconds"] + info["vocoder_seconds"]) / max(info["audio_seconds"], 1e-9)
        info["sentences"] = len(waves)
        return audio, self.sample_rate, info

    def stream(self, text: str, sampling: SamplingConfig = SamplingConfig(), speaker: Optional[int] = None,
               seed: int = 0, quick_start: bool = True, stats: Optional[Dict] = None) -> Iterator[np.ndarray]:
        """Yield float32 audio chunks in order, sentence by sentence and, within a sentence, vocoder chunk by
        chunk (streaming.py). quick_start: a first sentence longer than streaming.FIRST_CLAUSE_CHARS is split
        at its clauses, so the first audio comes sooner; without it (or with a short first sentence) the
        joined chunks equal synthesize(text) with the same seed. stats: see streaming.stream_sentences.
        ValueError up front for empty or unspeakable text and a bad speaker."""
        speakers = self.check_speaker(speaker)
        sentences = self.sentences(text)
        if quick_start:
            sentences = streaming.split_first_clause(sentences)

        @torch.inference_mode()
        def mel_of(ids, sentence_seed):
            out = self.model.acoustic.infer(torch.tensor([ids], device=self.device),
                                            torch.tensor([len(ids)], device=self.device), sampling, speakers,
                                            generator=[torch.Generator().manual_seed(sentence_seed)])
            return out["mel"], speakers, out["nfe"]

        @torch.inference_mode()
        def vocode(mel, spk):
            return self.model.vocode(mel, spk)[0][0, 0].float().cpu().numpy()

        return pipeline.stream_sentences(sentences, self.text_to_ids, mel_of, vocode, self.hop_length,
                                         self.sample_rate, seed, stats)

    def check_speaker(self, speaker: Optional[int]) -> Optional[torch.Tensor]:
        """Validate a speaker id; returns it as a (1,) tensor for multi-speaker models, else None."""
        n_speakers = self.hps.data.n_speakers
        if n_speakers <= 1:
            if speaker not in (None, 0):
                raise ValueError(f"this model has a single speaker; got speaker {speaker} (leave it out)")
            return None
        speaker = 0 if speaker is None else speaker
        if isinstance(speaker, bool) or not isinstance(speaker, int) or not 0 <= speaker < n_speakers:
            raise ValueError(f"speaker must be an integer id in [0, {n_speakers - 1}], got {speaker!r}")
        return torch.tensor([speaker], dtype=torch.long, device=self.device)
