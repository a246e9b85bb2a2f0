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
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

import pipeline
from atomic import check_output_path  # noqa: F401  (re-exported: part of the API)
from audio import SENTENCE_PAUSE_SECONDS, join_with_pauses, save_wav  # noqa: F401  (re-exported)
from config import HParams
from sampling import SamplingConfig
from text.sentences import split_sentences  # noqa: F401  (re-exported)

if TYPE_CHECKING:  # models pulls in the vocoder (scipy); imported when a checkpoint is loaded
    from models import FlowMatchingSynthesizer


# ----------------------------------------------------------------------------------------------------
# Synthesizer
# ----------------------------------------------------------------------------------------------------

class Synthesizer(pipeline.TextToSpeech):
    """Text -> waveform with a loaded FlowMatchingSynthesizer (acoustic model + MB-iSTFT vocoder).

    synthesize(text, sampling, speaker, seed, timings), stream(...), prepare / sentences / text_to_ids come
    from pipeline.TextToSpeech."""

    default_sampling = SamplingConfig()

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

    # -- the model steps (pipeline.TextToSpeech does the rest) ------------------------------------------

    @torch.inference_mode()
    def synthesize_ids(self, sequences: Sequence[Sequence[int]], sampling: SamplingConfig = SamplingConfig(),
                       speaker: Optional[int] = None, seed: int = 0) -> Tuple[List[np.ndarray], Dict[str, float]]:
        """Synthesize id sequences in padded batches; returns per-sequence waveforms and timing info."""
        speakers = self._speakers(speaker)
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

    def sentence_steps(self, sampling: SamplingConfig, speaker: Optional[int]):
        """(mel_of, vocode) for pipeline.stream_sentences: one sentence's mel, then vocoder windows."""
        speakers = self._speakers(speaker)

        @torch.inference_mode()
        def mel_of(ids, sentence_seed):
            out = self.model.acoustic.infer(torch.tensor([ids], device=self.device),
                                            torch.tensor([len(ids)], device=self.device), sampling, speakers,
                                            generator=[torch.Generator().manual_seed(sentence_seed)])
            return out["mel"], speakers, out["nfe"]

        @torch.inference_mode()
        def vocode(mel, spk):
            return self.model.vocode(mel, spk)[0][0, 0].float().cpu().numpy()

        return mel_of, vocode

    def _speakers(self, speaker: Optional[int]) -> Optional[torch.Tensor]:
        """A validated speaker id as a (1,) tensor for multi-speaker models, else None."""
        speaker = self.validate_speaker(speaker)
        return None if speaker is None else torch.tensor([speaker], dtype=torch.long, device=self.device)
