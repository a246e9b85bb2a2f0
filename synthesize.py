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

import os
import re
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

import text as text_lib
from atomic import atomic_write
from config import HParams
from sampling import SamplingConfig

if TYPE_CHECKING:  # models pulls in the vocoder (scipy); imported when a checkpoint is loaded
    from models import FlowMatchingSynthesizer

SENTENCE_PAUSE_SECONDS = 0.2
MAX_SENTENCE_CHARS = 200  # longer sentences are split at commas, then at spaces
# Words whose trailing period does not end a sentence.
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "co", "inc", "ltd",
                  "mt", "capt", "col", "gen", "lt", "sgt", "rev", "hon", "gov", "sen", "rep", "e.g", "i.e"}


# ----------------------------------------------------------------------------------------------------
# Text splitting
# ----------------------------------------------------------------------------------------------------

def has_speakable(text: str) -> bool:
    """True when the text holds at least one letter or digit (punctuation and emoji are not speech)."""
    return any(ch.isalnum() for ch in text)


def _pack(words: Sequence[str], max_chars: int) -> List[str]:
    """Greedily join words with spaces into pieces of at most `max_chars` (a longer word stays whole)."""
    pieces: List[str] = []
    current = ""
    for word in words:
        if current and len(current) + 1 + len(word) > max_chars:
            pieces.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        pieces.append(current)
    return pieces


def _split_long(sentence: str, max_chars: int) -> List[str]:
    """Split a sentence longer than `max_chars` at commas, and a comma-free run at spaces."""
    if len(sentence) <= max_chars:
        return [sentence]
    parts = [part for clause in re.split(r"(?<=,)\s+", sentence) for part in _split_at_spaces(clause, max_chars)]
    return _pack(parts, max_chars)


def _split_at_spaces(clause: str, max_chars: int) -> List[str]:
    if len(clause) <= max_chars:
        return [clause]
    return _pack(clause.split(), max_chars)


def split_sentences(text: str, max_chars: int = MAX_SENTENCE_CHARS) -> List[str]:
    """Split text into speakable sentences, keeping their final punctuation.

    Breaks after . ! ? ; : followed by white space (a period after a common abbreviation such as "Mr."
    or a single initial does not end a sentence), and splits sentences longer than `max_chars` at commas.
    Fragments without a letter or digit (e.g. a stray "...") carry no speech and are dropped.
    """
    text = " ".join(text.split())
    sentences: List[str] = []
    start = 0
    for match in re.finditer(r"[.!?;:]+[\"')\]]*(?=\s)", text):
        end = match.end()
        word = text[start:match.start()].split()[-1:] or [""]
        last = word[0].lstrip("\"'([").lower()
        if match.group().startswith(".") and len(match.group().rstrip("\"')]")) == 1 and (
                last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha())):
            continue
        sentences.append(text[start:end].strip())
        start = end
    sentences.append(text[start:].strip())
    out: List[str] = []
    for sentence in sentences:
        out.extend(piece for piece in _split_long(sentence, max_chars) if has_speakable(piece))
    return out


# ----------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------

def check_output_path(path: Union[str, Path], inputs: Sequence[Union[None, str, Path]] = ()) -> Path:
    """Raise OSError with a clear message unless a file can be written at `path` (checked up front).

    inputs: files the run reads (checkpoint, config, text file): writing over one of them is refused
    with ValueError, since the output would destroy it."""
    path = Path(path)
    for source in inputs:
        if source is not None and Path(source).exists() and path.exists() and path.samefile(source):
            raise ValueError(f"output path {path} is one of the inputs ({source}); writing there would destroy "
                             f"it: choose another output path")
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise IsADirectoryError(f"output path {path} is a directory; give a file name such as {path / 'out.wav'}")
    if not parent.exists():
        raise FileNotFoundError(f"output directory {parent} does not exist; create it first or choose another --output")
    if not parent.is_dir():
        raise NotADirectoryError(f"output directory {parent} is not a directory")
    try:  # os.access is unreliable (root, ACLs, read-only mounts): really try to create a file
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".write-test-", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise PermissionError(f"cannot write to output directory {parent}: {e.strerror or e}") from None
    return path


def save_wav(path: Union[str, Path], audio: np.ndarray, sample_rate: int) -> None:
    """Write 16-bit PCM WAV atomically: a crash or a full disk never leaves a half-written file at `path`."""
    import soundfile as sf

    audio = np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0)
    with atomic_write(path) as handle:
        sf.write(handle, audio, sample_rate, subtype="PCM_16", format="WAV")


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

    def prepare(self, text: str) -> List[List[int]]:
        """Split text into sentences and return their id sequences (raises ValueError up front)."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text is empty; give some words to speak")
        sentences = split_sentences(text)
        if not sentences:
            raise ValueError(f"text {text!r} has nothing speakable (no letters or digits)")
        return [self.text_to_ids(s) for s in sentences]

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
        info = {"nfe": sampling.nfe, "acoustic_seconds": 0.0, "vocoder_seconds": 0.0}
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            lengths = torch.tensor([len(sequences[i]) for i in batch], dtype=torch.long)
            ids = torch.zeros(len(batch), int(lengths.max()), dtype=torch.long)
            for row, i in enumerate(batch):
                ids[row, :len(sequences[i])] = torch.tensor(sequences[i], dtype=torch.long)
            spk = None if speakers is None else speakers.expand(len(batch))
            audio, _, _, extra = self.model.infer(
                ids.to(self.device), lengths.to(self.device), sampling, spk,
                generator=[torch.Generator().manual_seed(int(seeds[i])) for i in batch])
            for row, i in enumerate(batch):
                waves[i] = audio[row, 0, :int(extra["audio_lengths"][row])].float().cpu().numpy()
            info["nfe"] = int(extra["nfe"])
            info["acoustic_seconds"] += extra["acoustic_seconds"]
            info["vocoder_seconds"] += extra["vocoder_seconds"]
        return waves, info

    def synthesize(self, text: str, sampling: SamplingConfig = SamplingConfig(), speaker: Optional[int] = None,
                   seed: int = 0) -> Tuple[np.ndarray, int, Dict[str, float]]:
        """Text -> (waveform float32 (T,), sample_rate, info).

        info: nfe (network evaluations per sentence), audio_seconds, acoustic_seconds, vocoder_seconds,
        rtf ((acoustic + vocoder) / audio), sentences, text_seconds (frontend time).
        Raises ValueError for empty or unspeakable text and a bad speaker.
        """
        self.check_speaker(speaker)
        t0 = time.perf_counter()
        sequences = self.prepare(text)
        text_seconds = time.perf_counter() - t0
        audio, sample_rate, info = self.synthesize_sequences(sequences, sampling, speaker, seed)
        info["text_seconds"] = text_seconds
        return audio, sample_rate, info

    def synthesize_sequences(self, sequences: Sequence[Sequence[int]], sampling: SamplingConfig = SamplingConfig(),
                             speaker: Optional[int] = None, seed: int = 0) -> Tuple[np.ndarray, int, Dict[str, float]]:
        """Sentences already turned into ids (see `prepare`) -> one waveform joined with pauses."""
        waves, info = self.synthesize_ids(sequences, sampling, speaker, seed)
        audio = join_with_pauses(waves, self.sample_rate)
        info["audio_seconds"] = len(audio) / self.sample_rate
        info["rtf"] = (info["acoustic_seconds"] + info["vocoder_seconds"]) / max(info["audio_seconds"], 1e-9)
        info["sentences"] = len(waves)
        return audio, self.sample_rate, info

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


def join_with_pauses(waves: Sequence[np.ndarray], sample_rate: int,
                     pause_seconds: float = SENTENCE_PAUSE_SECONDS) -> np.ndarray:
    """Concatenate sentence waveforms with `pause_seconds` of silence between them."""
    pause = np.zeros(int(round(pause_seconds * sample_rate)), dtype=np.float32)
    pieces: List[np.ndarray] = []
    for i, wave in enumerate(waves):
        if i:
            pieces.append(pause)
        pieces.append(np.asarray(wave, dtype=np.float32))
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
