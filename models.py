"""End-to-end synthesizer: flow-matching acoustic model (text -> mel) + MB-iSTFT vocoder (mel -> waveform)."""
from __future__ import annotations

import time
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from config import HParams
from flow_matching import FlowMatchingTTS
from modules import MultiBandISTFTGenerator
from sampling import SamplingConfig
from timing import synchronize


class FlowMatchingSynthesizer(nn.Module):
    """`acoustic` (FlowMatchingTTS) and `generator` (MultiBandISTFTGenerator) in one module / state dict.

    Multi-speaker models condition the vocoder on the acoustic model's speaker embedding (as VITS shares
    emb_g between encoder and decoder).
    """

    def __init__(self, n_vocab: int, hps: HParams, istft_impl: str = "torch"):
        super().__init__()
        self.hps = hps
        self.n_vocab = n_vocab
        self.hop_length = hps.data.hop_length
        self.acoustic = FlowMatchingTTS(n_vocab, hps)
        self.generator = MultiBandISTFTGenerator(hps, istft_impl=istft_impl)

    def speaker_condition(self, speakers: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """speakers (B,) long -> vocoder conditioning (B, gin_channels, 1), or None for one speaker.

        The acoustic model's own embedding lookup (one place raises for missing speaker ids)."""
        return self.acoustic._speaker(speakers)

    def vocode(self, mel: torch.Tensor, speakers: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """mel (B, n_mels, T) de-normalized log-mel -> (audio (B, 1, T * hop), sub-bands (B, subbands, T * hop // subbands))."""
        return self.generator(mel, self.speaker_condition(speakers))

    @torch.no_grad()
    def infer(self, text: torch.Tensor, text_lengths: torch.Tensor, sampling: SamplingConfig = SamplingConfig(),
              speakers: Optional[torch.Tensor] = None, generator=None, durations: Optional[torch.Tensor] = None
              ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Dict]:
        """text (B, T_text) long, text_lengths (B,) -> (audio (B, 1, max(mel_lengths) * hop), durations
        (B, T_text) long, mel (B, n_mels, T) de-normalized log-mel, extra).

        Padding invariant: the acoustic model is, and each mel is vocoded at its own length (a
        convolutional vocoder would otherwise let an item's last frames see the batch padding), so an
        item sounds the same in any batch. extra: audio_lengths (B,) = mel_lengths * hop (samples past an
        item's length are zero), mel_lengths (B,), nfe, acoustic_seconds, vocoder_seconds.
        generator / durations: see FlowMatchingTTS.infer.
        """
        device = text.device
        synchronize(device)
        t0 = time.perf_counter()
        out = self.acoustic.infer(text, text_lengths, sampling, speakers, durations, generator)
        synchronize(device)
        t1 = time.perf_counter()
        mel, mel_lengths = out["mel"], out["mel_lengths"]
        audio_lengths = mel_lengths * self.hop_length
        audio = mel.new_zeros(mel.size(0), 1, int(audio_lengths.max()))
        for i, n in enumerate(mel_lengths.tolist()):
            spk = None if speakers is None else speakers[i:i + 1]
            audio[i, :, :n * self.hop_length] = self.vocode(mel[i:i + 1, :, :n], spk)[0][0, :, :n * self.hop_length]
        synchronize(device)
        t2 = time.perf_counter()
        extra = {"audio_lengths": audio_lengths, "mel_lengths": mel_lengths, "nfe": out["nfe"],
                 "acoustic_seconds": t1 - t0, "vocoder_seconds": t2 - t1}
        return audio, out["durations"], mel, extra

    def remove_weight_norm(self) -> None:
        """Fold the vocoder's weight norm into plain weights (inference only; do it after loading weights)."""
        self.generator.remove_weight_norm()
