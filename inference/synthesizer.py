"""High-level text-to-speech API: load a checkpoint once, turn text into a waveform.

    from inference.synthesizer import TorchSynthesizer, save_wav
    tts = TorchSynthesizer.from_checkpoint("logs/ljs/G_100000.pth")
    audio, sample_rate, info = tts.synthesize("Hello world. How are you?")
    save_wav("hello.wav", audio, sample_rate)

Long text is split into sentences (at . ! ? ; : and, for long runs, at commas). The acoustic model runs
the sentences in padded batches (it is padding invariant; each sentence gets its own noise generator),
the vocoder runs each sentence at its own length, and the sentences are joined with short pauses, so a
batch sounds exactly like its sentences synthesized one by one. Nothing is silently truncated; text
with nothing speakable is a ValueError.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from runtime import pipeline
from runtime.speaker_blend import is_blend
from atomic import check_output_path  # noqa: F401  (re-exported: part of the API)
from audio import SENTENCE_PAUSE_SECONDS, join_with_pauses, save_wav  # noqa: F401  (re-exported)
from config import HParams, default_sampling, guidance_refusal
from sampling import SamplingConfig
from text.sentences import split_sentences  # noqa: F401  (re-exported)

REFERENCE_SECONDS = (0.5, 30.0)  # a prompt needs a few phonemes of the voice; long ones only cost time


def read_reference(path: Union[str, Path], transcript: str, tts: "TorchSynthesizer"):
    """A reference clip and its transcript -> flow_matching.Prompt-ready (log-mel (1, n_mels, T), ids).

    Raises AudioError / ValueError with what to do for a missing, unreadable, silent, too short or too long
    clip and for an empty transcript."""
    from audio import AudioError, load_wav
    from data_utils import compute_mel, trim_to_frames

    d = tts.hps.data
    wav = load_wav(path, d.sampling_rate, resample=True)
    seconds = len(wav) / d.sampling_rate
    if not REFERENCE_SECONDS[0] <= seconds <= REFERENCE_SECONDS[1]:
        raise AudioError(f"reference clip {path} is {seconds:.1f} s long; give {REFERENCE_SECONDS[0]:g} to "
                         f"{REFERENCE_SECONDS[1]:g} s of clean speech")
    if float(np.abs(wav).max()) < 1e-3:
        raise AudioError(f"reference clip {path} is silent; give a clip of the voice speaking its transcript")
    if not transcript or not transcript.strip():
        raise ValueError("the reference clip needs its transcript (--ref-text): the words spoken in it")
    mel = compute_mel(trim_to_frames(torch.from_numpy(wav), d.hop_length), d).unsqueeze(0)
    return mel, tts.text_to_ids(transcript)


if TYPE_CHECKING:  # models pulls in the vocoder (scipy); imported when a checkpoint is loaded
    from models import FlowMatchingSynthesizer


# ----------------------------------------------------------------------------------------------------
# TorchSynthesizer
# ----------------------------------------------------------------------------------------------------

def fast_bf16_cpu() -> bool:
    """Whether this CPU does bfloat16 in hardware (AMX or AVX-512 BF16), where bf16 autocast is faster; on
    other CPUs bf16 is emulated and slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: do not guess
        return False
    return re.search(r"\b(amx_bf16|avx512_bf16)\b", flags) is not None


class TorchSynthesizer(pipeline.SpeechPipeline):
    """Text -> waveform with a loaded FlowMatchingSynthesizer (acoustic model + MB-iSTFT vocoder).

    synthesize(text, sampling, speaker, seed, timings), stream(...), prepare / sentences / text_to_ids come
    from pipeline.SpeechPipeline."""

    def __init__(self, model: "FlowMatchingSynthesizer", hps: HParams, n_vocab: int,
                 device: Union[str, torch.device] = "cpu", batch_size: int = 8, vocoder_bf16: Optional[bool] = None):
        """vocoder_bf16: vocode in bfloat16 autocast; None: as the voice says (model.vocoder_bf16) where the
        device is a CPU with bf16 hardware (fast_bf16_cpu), fp32 elsewhere."""
        self.model = model.eval()
        self.hps = hps
        self.n_vocab = n_vocab
        self.device = torch.device(device)
        if vocoder_bf16 is None:
            vocoder_bf16 = hps.model.vocoder_bf16 and self.device.type == "cpu" and fast_bf16_cpu()
        self.model.vocoder_bf16 = vocoder_bf16
        self.batch_size = batch_size
        self.default_sampling = default_sampling(hps.model)  # the voice file's own (model.sampling_*)
        self.guidance_refusal = guidance_refusal(hps)  # why cfg_scale > 0 cannot work here, or None
        self.reference = None  # (log-mel (1, n_mels, T), transcript ids) set by set_reference

    def set_reference(self, path: Union[str, Path, None], transcript: str = "") -> None:
        """Speak in the voice of a reference clip (prompting; a model trained with model.prompt_context).
        None goes back to the model's own speakers. Errors: see read_reference."""
        if path is None:
            self.reference = None
            return
        if not self.model.acoustic.prompt_context:
            raise ValueError("this voice was not trained with a prompt context (model.prompt_context), so it "
                             "cannot take a reference clip; use a voice trained for prompting or clone_voice.py")
        mel, ids = read_reference(path, transcript, self)
        self.reference = (mel.to(self.device), ids)

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
    def realises_prosody(self) -> bool:
        return self.model.acoustic.prosody_predictor is not None

    @property
    def data(self):
        """The data config (text cleaners, language, add_blank) the text front end uses."""
        return self.hps.data

    @classmethod
    def from_checkpoint(cls, path: Union[str, Path], device: Union[str, torch.device] = "cpu",
                        use_ema: bool = True, config: Union[None, str, Path, dict, HParams] = None,
                        batch_size: int = 8, vocoder_bf16: Optional[bool] = None) -> "TorchSynthesizer":
        """Load a training checkpoint (G_<step>.pth) or an exported voice once (see voice.load_voice).

        use_ema: take the EMA weights (recommended for flow matching) when the checkpoint has them.
        config: optional HParams / dict / JSON path overriding the stored config; it must fit the
            checkpoint, else ConfigError naming the field.
        Raises CheckpointError for a missing/unreadable/incompatible file, ValueError for a bad device.
        """
        from training.voice_file import load_voice

        model, hps = load_voice(path, device, use_ema, config)
        return cls(model, hps, model.n_vocab, device=device, batch_size=batch_size, vocoder_bf16=vocoder_bf16)

    # -- the model steps (pipeline.SpeechPipeline does the rest) ------------------------------------------

    @torch.inference_mode()
    def synthesize_ids(self, sequences: Sequence[Sequence[int]], sampling: SamplingConfig = SamplingConfig(),
                       speaker: pipeline.Speaker = None, seed: int = 0) -> Tuple[List[np.ndarray], Dict[str, float]]:
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
            spk = None if speakers is None else speakers.expand(len(batch), *speakers.shape[1:])
            rngs = [torch.Generator().manual_seed(int(seeds[i])) for i in batch]
            if self.reference is not None:
                audio, durations, extra = self._infer_prompted([sequences[i] for i in batch], sampling, spk,
                                                               rngs)
            else:
                audio, durations, _, extra = self.model.infer(ids.to(self.device), lengths.to(self.device),
                                                              sampling, spk, rng=rngs)
            for row, i in enumerate(batch):
                waves[i] = audio[row, 0, :int(extra["audio_lengths"][row])].float().cpu().numpy()
                token_durations[i] = durations[row, :len(sequences[i])].tolist()
            info["nfe"] = int(extra["nfe"])
            info["acoustic_seconds"] += extra["acoustic_seconds"]
            info["vocoder_seconds"] += extra["vocoder_seconds"]
        return waves, info

    def _infer_prompted(self, sequences, sampling, speakers, rngs):
        """Each sequence after the reference transcript, one at a time -> (audio (B, 1, T), durations, extra)
        like FlowMatchingSynthesizer.infer."""
        waves, durations, nfe, seconds = [], [], 0, [0.0, 0.0]
        for row, (ids, gen) in enumerate(zip(sequences, rngs)):
            full, lengths, prompt = self._model_input(ids)
            spk = None if speakers is None else speakers[row:row + 1]
            audio, dur, _, extra = self.model.infer(full, lengths, sampling, spk, rng=[gen], prompt=prompt)
            waves.append(audio[0, 0, :int(extra["audio_lengths"][0])])
            dur = dur[0].clone()
            dur[1] += dur[0]  # the frames of the space after the transcript count for the first token
            durations.append(dur[1:])
            nfe, seconds = extra["nfe"], [seconds[0] + extra["acoustic_seconds"], seconds[1] + extra["vocoder_seconds"]]
        audio = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True).unsqueeze(1)
        extra = {"audio_lengths": torch.tensor([len(w) for w in waves]), "nfe": nfe,
                 "acoustic_seconds": seconds[0], "vocoder_seconds": seconds[1]}
        return audio, torch.nn.utils.rnn.pad_sequence(durations, batch_first=True), extra

    def _model_input(self, ids: Sequence[int]):
        """One sentence's ids -> (text (1, T_text), lengths (1,), flow_matching.Prompt or None). With a
        reference clip the text is its transcript, a space, then the ids."""
        prompt = None
        if self.reference is not None:
            from flow_matching import Prompt
            from text.symbols import SPACE_ID

            ref_mel, ref_ids = self.reference
            prompt, ids = Prompt(ref_mel, len(ref_ids)), ref_ids + [SPACE_ID] + list(ids)
        return (torch.tensor([list(ids)], device=self.device), torch.tensor([len(ids)], device=self.device), prompt)

    def sentence_steps(self, sampling: SamplingConfig, speaker: pipeline.Speaker):
        """(mel_of, vocode) for pipeline.stream_sentences: one sentence's mel, then vocoder windows."""
        speakers = self._speakers(speaker)

        @torch.inference_mode()
        def mel_of(ids, sentence_seed):
            text, lengths, prompt = self._model_input(ids)
            out = self.model.acoustic.infer(text, lengths, sampling, speakers, prompt=prompt,
                                            rng=[torch.Generator().manual_seed(sentence_seed)])
            return out["mel"], speakers, out["nfe"]

        @torch.inference_mode()
        def vocode(mel, spk, left, right):
            return self.model.vocode(mel, spk, (left, right))[0][0, 0].float().cpu().numpy()

        return mel_of, vocode

    def _speakers(self, speaker: pipeline.Speaker) -> Optional[torch.Tensor]:
        """A validated speaker id as a (1,) long tensor, or a blend's weights as (1, n_speakers) float, for
        multi-speaker models; else None (also for a reference clip without a speaker: the model's null speaker,
        the voice then comes from the clip; unless the vocoder needs a speaker, which then is the first one)."""
        if self.reference is not None and speaker is None and self.model.generator.cond is None:
            return None
        if is_blend(speaker):
            return torch.from_numpy(self.speaker_weights(speaker)).unsqueeze(0).to(self.device)
        speaker = self.validate_speaker(speaker)
        return None if speaker is None else torch.tensor([speaker], dtype=torch.long, device=self.device)
