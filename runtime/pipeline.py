"""The synthesizer-independent steps of text -> speech, shared by synthesize.Synthesizer (torch) and
onnx_runtime.OnnxSynthesizer: one inference path (no torch here).

    class TorchSynthesizer(SpeechPipeline): ...     # provides the model steps; gets text, speakers, synthesize, stream
    chunks = stream_sentences(sentences, to_ids, mel_of, vocode, hop, sample_rate, seed)
"""
from __future__ import annotations

import time
import unicodedata
import warnings
from dataclasses import replace
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import streaming
import text as text_lib
from audio import SENTENCE_PAUSE_SECONDS, join_with_pauses
from sampling import NO_PROSODY, SamplingConfig
from text.sentences import has_speakable, split_sentences
from text.ssml import Segment, SsmlWarning, parse_ssml
from .speaker_blend import is_blend, parse_blend
from .word_timings import text_timings


NOT_TEXT = ("Cc", "Cs", "Co", "Cn")  # control codes, undecodable bytes (lone surrogates), private use, unassigned
PHONEMIZING_CLEANERS = ("english_cleaners2", "multilingual_cleaners")  # their output is IPA: <phoneme> fits in
# who speaks: a speaker id, a name, a blend of names (speaker_blend.py), or None for the voice's default
Speaker = Union[None, int, str]
MAX_NOT_TEXT_SHARE = 0.25  # a stray NUL or escape code is replaced with a warning; this much is not text


def check_is_text(text: str, what: str = "text") -> None:
    """ValueError unless `text` looks like text: bytes that were not UTF-8 (Python keeps them as lone surrogates)
    or a quarter of its characters being control codes, private-use or unassigned means data, not words, and
    would speak as minutes of babble."""
    if any(unicodedata.category(c) == "Cs" for c in text):
        raise ValueError(f"{what} does not look like text: it holds bytes that are not UTF-8; give UTF-8 text")
    visible = [c for c in text if not c.isspace()]
    odd = [c for c in visible if unicodedata.category(c) in NOT_TEXT]
    if visible and len(odd) > MAX_NOT_TEXT_SHARE * len(visible):
        raise ValueError(f"{what} does not look like text: {len(odd)} of its {len(visible)} characters are control "
                         f"codes or unassigned (e.g. U+{ord(odd[0]):04X}); give plain text")


class SpeechPipeline:
    """What the torch TorchSynthesizer and the ONNX runtime share: the text front end, speaker checks, joining
    sentences and the whole-text API. Subclasses provide data (cleaners, language, add_blank), n_speakers,
    sample_rate, hop_length, default_sampling, realises_prosody (model.prosody_conditioning) and
    synthesize_ids(sequences, sampling, speaker, seed) ->
    (waves, info with nfe, acoustic_seconds, vocoder_seconds and durations)."""

    def text_to_ids(self, text: str) -> List[int]:
        """Clean one sentence and map it to the model's symbol ids (blanks when the config says so).

        Unknown characters are dropped with a warning; ValueError when nothing speakable is left.
        """
        if not text or not text.strip():
            raise ValueError("text is empty; give some words to speak")
        if not has_speakable(text):
            raise ValueError(f"text {text!r} has nothing speakable (no letters or digits)")
        return text_lib.text_to_ids(text, self.data)

    def sentences(self, text: str) -> List[str]:
        """Split text into speakable sentences; ValueError for empty or unspeakable text."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text is empty; give some words to speak")
        check_is_text(text)
        sentences = split_sentences(text)
        if not sentences:
            raise ValueError(f"text {text!r} has nothing speakable (no letters or digits)")
        return sentences

    def prepare(self, text: str) -> List[List[int]]:
        """Split text into sentences and return their id sequences (raises ValueError up front)."""
        return [self.text_to_ids(s) for s in self.sentences(text)]

    @property
    def speaker_names(self) -> List[str]:
        """Names of speaker ids 0, 1, ... (data.speaker_names; empty when the voice has none)."""
        return list(getattr(self.data, "speaker_names", []) or [])

    def validate_speaker(self, speaker: Speaker) -> Optional[int]:
        """The speaker id to use (None for a single-speaker model): an id or a name from speaker_names, and
        for None data.default_speaker (id 0 when unset); ValueError naming the valid ids or names."""
        n = self.n_speakers
        if isinstance(speaker, str):
            names = self.speaker_names
            if speaker not in names:
                known = f"known speakers: {', '.join(names)}" if names else "this voice has no speaker names"
                raise ValueError(f"unknown speaker {speaker!r}; {known}")
            return names.index(speaker)
        if n <= 1:
            if speaker not in (None, 0):
                raise ValueError(f"this model has a single speaker; got speaker {speaker} (leave it out)")
            return None
        if speaker is None:
            default = getattr(self.data, "default_speaker", "")
            return self.speaker_names.index(default) if default else 0
        if isinstance(speaker, bool) or not isinstance(speaker, int) or not 0 <= speaker < n:
            raise ValueError(f"speaker must be an integer id in [0, {n - 1}], got {speaker!r}")
        return speaker

    def speaker_weights(self, speaker: Speaker) -> Optional[np.ndarray]:
        """What the model is conditioned on: (n_speakers,) float32 weights summing to 1, one-hot for one speaker
        (validate_speaker's) and the normalised mix for a blend ('awb:0.7,slt_hts:0.3', 'awb(7)+slt_hts(3)':
        speaker_blend.py); None for a single-speaker voice. ValueError naming the valid speakers."""
        if not is_blend(speaker):
            speaker = self.validate_speaker(speaker)
            return None if speaker is None else np.eye(self.n_speakers, dtype=np.float32)[speaker]
        if self.n_speakers <= 1:
            raise ValueError(f"this model has a single speaker; there is nothing to blend (got {speaker!r})")
        weights = np.zeros(self.n_speakers, dtype=np.float64)
        for name, weight in parse_blend(speaker):
            try:
                weights[self.validate_speaker(int(name) if name.isdigit() else name)] += weight
            except ValueError as e:
                raise ValueError(f"in the speaker blend {speaker!r}: {e}") from None
        return (weights / weights.sum()).astype(np.float32)

    def check_sampling(self, sampling: SamplingConfig) -> SamplingConfig:
        """sampling, or ValueError when it asks for what this voice cannot do (prosody edits from a voice
        without prosody conditioning)."""
        if sampling.edits_prosody and not self.realises_prosody:
            raise ValueError(NO_PROSODY)
        return sampling

    def synthesize_sequences(self, sequences: Sequence[Sequence[int]], sampling: Optional[SamplingConfig] = None,
                             speaker: Speaker = None, seed: int = 0) -> Tuple[np.ndarray, int, Dict]:
        """Sentences already turned into ids (see `prepare`) -> one waveform joined with pauses."""
        sampling = self.check_sampling(sampling or self.default_sampling)
        waves, info = self.synthesize_ids(sequences, sampling, speaker, seed)
        audio = join_with_pauses(waves, self.sample_rate)
        info["audio_seconds"] = len(audio) / self.sample_rate
        info["rtf"] = (info["acoustic_seconds"] + info["vocoder_seconds"]) / max(info["audio_seconds"], 1e-9)
        info["sentences"] = len(waves)
        return audio, self.sample_rate, info

    def synthesize(self, text: str, sampling: Optional[SamplingConfig] = None, speaker: Speaker = None,
                   seed: int = 0, timings: bool = False) -> Tuple[np.ndarray, int, Dict]:
        """Text -> (waveform float32 (T,), sample_rate, info).

        info: nfe (network evaluations per sentence), audio_seconds, acoustic_seconds, vocoder_seconds,
        rtf ((acoustic + vocoder) / audio), sentences, text_seconds (front-end time), durations (frames per
        input token, per sentence); with timings=True also timings = {"words": [{word, start, end}],
        "phonemes": [{phoneme, start, end}]} in seconds of the returned audio (timings.py).
        Raises ValueError for empty or unspeakable text and a bad speaker.
        """
        self.speaker_weights(speaker)
        t0 = time.perf_counter()
        sentences = self.sentences(text)
        sequences = [self.text_to_ids(s) for s in sentences]
        text_seconds = time.perf_counter() - t0
        audio, sample_rate, info = self.synthesize_sequences(sequences, sampling, speaker, seed)
        info["text_seconds"] = text_seconds
        if timings:
            info["timings"] = text_timings(sentences, info["durations"], self.data, self.hop_length, sample_rate)
        return audio, sample_rate, info

    def synthesize_ssml(self, document: str, sampling: Optional[SamplingConfig] = None,
                        speaker: Speaker = None, seed: int = 0) -> Tuple[np.ndarray, int, Dict]:
        """An SSML document (text/ssml.py) -> (waveform float32 (T,), sample_rate, info) like `synthesize`.

        Each text segment is spoken by `synthesize` with its speaker (a <voice>, else `speaker`), the sampling's
        duration_scale times the segment's, its pitch shift and range on top of the sampling's (a voice without
        prosody conditioning ignores them with one SsmlWarning), and seed + its index among the text segments;
        its gain_db scales its samples; pauses are silence of exactly round(seconds * sample_rate) samples. info: nfe,
        audio_seconds, acoustic_seconds, vocoder_seconds, rtf, sentences, segments.
        ValueError for a malformed document, a bad speaker or nested prosody that adds up past the limits (all
        checked before any synthesis)."""
        sampling = self.check_sampling(sampling or self.default_sampling)
        segments = self.ssml_segments(document, sampling)
        self.speaker_weights(speaker)
        if any(s.phonemes for s in segments) and not self._reads_ipa():
            warnings.warn("SSML: this voice reads letters, not phonemes; <phoneme> elements were read as their text",
                          SsmlWarning, stacklevel=2)
        totals = {"nfe": sampling.nfe, "acoustic_seconds": 0.0, "vocoder_seconds": 0.0, "sentences": 0}
        pieces: List[np.ndarray] = []
        spoken = 0
        for segment in segments:
            if segment.is_pause:
                pieces.append(np.zeros(int(round(segment.pause * self.sample_rate)), dtype=np.float32))
                continue
            audio, info = self._speak_segment(segment, sampling, speaker, seed + spoken)
            spoken += 1
            pieces.append(audio * np.float32(10.0 ** (segment.gain_db / 20.0)))
            totals["nfe"] = info["nfe"]
            for key in ("acoustic_seconds", "vocoder_seconds", "sentences"):
                totals[key] += info[key]
        audio = np.concatenate(pieces)
        totals["audio_seconds"] = len(audio) / self.sample_rate
        totals["rtf"] = (totals["acoustic_seconds"] + totals["vocoder_seconds"]) / max(totals["audio_seconds"], 1e-9)
        totals["segments"] = len(segments)
        return audio, self.sample_rate, totals

    def ssml_segments(self, document: str, sampling: Optional[SamplingConfig] = None) -> List[Segment]:
        """An SSML document's segments (text/ssml.py), checked for this voice: ValueError for a malformed
        document, a <voice name> that is not one of its speakers, nothing speakable, or (given the sampling it
        will be spoken with) nested prosody that adds up past the limits. A voice without prosody conditioning
        gets its segments without pitch and range, with one SsmlWarning."""
        segments = parse_ssml(document)
        if not self.realises_prosody and any(s.pitch_shift != 0 or s.pitch_range != 1 for s in segments):
            warnings.warn("SSML: this voice was not trained with prosody conditioning; the pitch and range of "
                          "<prosody> and <emphasis> were ignored", SsmlWarning, stacklevel=3)
            segments = [replace(s, pitch_shift=0.0, pitch_range=1.0) for s in segments]
        for segment in segments if sampling is not None else ():
            if not segment.is_pause:
                self.segment_sampling(segment, sampling)
        for name in {s.speaker for s in segments if s.speaker is not None}:
            try:
                self.speaker_weights(name)
            except ValueError as e:
                raise ValueError(f"SSML <voice name={name!r}>: {e}") from None
        if not any(not s.is_pause for s in segments):
            raise ValueError("the SSML document has nothing speakable (no letters or digits)")
        return segments

    def _reads_ipa(self) -> bool:
        """Whether the voice's ids are IPA symbols (a phonemizing cleaner), so <phoneme> IPA can be spoken."""
        return any(c in PHONEMIZING_CLEANERS for c in self.data.text_cleaners)

    @staticmethod
    def segment_sampling(segment: Segment, sampling: SamplingConfig) -> SamplingConfig:
        """The sampling of one text segment: its rate, pitch shift and range on top of `sampling`'s."""
        try:
            return sampling.replace(duration_scale=sampling.duration_scale * segment.duration_scale,
                                    pitch_shift=sampling.pitch_shift + segment.pitch_shift,
                                    pitch_range=sampling.pitch_range * segment.pitch_range)
        except ValueError as e:
            raise ValueError(f"SSML: the prosody around {segment.text[:40]!r} adds up to too much: {e}") from None

    def _speak_segment(self, segment: Segment, sampling: SamplingConfig, speaker: Speaker,
                       seed: int) -> Tuple[np.ndarray, Dict]:
        """One text segment of an SSML document -> (audio float32 (T,), synthesize's info)."""
        sampling = self.segment_sampling(segment, sampling)
        speaker = segment.speaker if segment.speaker is not None else speaker
        if segment.phonemes is not None:
            if self._reads_ipa():
                # The IPA goes straight to the symbol table, as the cleaners' espeak output would.
                ids = text_lib.text_to_ids(segment.phonemes, self.data, cleaned=True)
                audio, _, info = self.synthesize_sequences([ids], sampling, speaker, seed)
                return audio, info
            if not has_speakable(segment.text):
                return np.zeros(0, dtype=np.float32), {"nfe": sampling.nfe, "acoustic_seconds": 0.0,
                                                       "vocoder_seconds": 0.0, "sentences": 0}
        audio, _, info = self.synthesize(segment.text, sampling, speaker, seed)
        return audio, info

    def stream(self, text: str, sampling: Optional[SamplingConfig] = None, speaker: Speaker = None,
               seed: int = 0, quick_start: bool = True, stats: Optional[Dict] = None) -> Iterator[np.ndarray]:
        """Yield float32 audio chunks in order, sentence by sentence and, within a sentence, vocoder chunk by
        chunk (streaming.py). quick_start: a first sentence longer than streaming.FIRST_CLAUSE_CHARS is split
        at its clauses, so the first audio comes sooner; without it (or with a short first sentence) the
        joined chunks equal synthesize(text) with the same seed. stats: see stream_sentences.
        ValueError up front for empty or unspeakable text and a bad speaker."""
        self.speaker_weights(speaker)  # sentence_steps resolves it (None may mean a reference clip's voice)
        sampling = self.check_sampling(sampling or self.default_sampling)
        sentences = self.sentences(text)
        if quick_start:
            sentences = streaming.split_first_clause(sentences)
        mel_of, vocode = self.sentence_steps(sampling, speaker)
        return stream_sentences(sentences, self.text_to_ids, mel_of, vocode, self.hop_length, self.sample_rate,
                                seed, stats)


def stream_sentences(sentences: List[str], to_ids: Callable, mel_of: Callable, vocode: Callable, hop: int,
                     sample_rate: int, seed: int = 0, stats: Optional[Dict] = None) -> Iterator[np.ndarray]:
    """Yield float32 audio chunks for `sentences`, with SENTENCE_PAUSE_SECONDS of silence between them.

    to_ids(sentence) -> ids; mel_of(ids, sentence_seed) -> (mel (1, n_mels, T), vocoder conditioning, NFE);
    vocode(mel, conditioning, left, right) -> float32 ((right - left) * hop,): frames [left, right) of the mel.
    Sentence i draws its noise from seed SeedSequence(seed)[i], as the whole-text synthesizers do, so the joined
    stream equals their output.
    stats (optional dict) is filled as the stream goes: nfe, acoustic_seconds, vocoder_seconds,
    audio_seconds, sentences.
    """
    stats = {} if stats is None else stats
    stats.update(nfe=0, acoustic_seconds=0.0, vocoder_seconds=0.0, audio_seconds=0.0, sentences=0)
    seeds = np.random.SeedSequence(int(seed)).generate_state(max(len(sentences), 1), dtype=np.uint64)
    pause = np.zeros(int(round(SENTENCE_PAUSE_SECONDS * sample_rate)), dtype=np.float32)
    for i, sentence in enumerate(sentences):
        if i:
            stats["audio_seconds"] += len(pause) / sample_rate
            yield pause
        t0 = time.perf_counter()
        mel, cond, stats["nfe"] = mel_of(to_ids(sentence), int(seeds[i]))
        stats["acoustic_seconds"] += time.perf_counter() - t0
        for start, end, left, right in streaming.vocoder_windows(mel.shape[-1]):
            t0 = time.perf_counter()
            audio = vocode(mel, cond, left, right)[(start - left) * hop:(end - left) * hop]
            stats["vocoder_seconds"] += time.perf_counter() - t0
            stats["audio_seconds"] += len(audio) / sample_rate
            yield audio
        stats["sentences"] += 1
