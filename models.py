"""The MB-iSTFT vocoder and FlowMatchingSynthesizer (the flow-matching acoustic model of flow_matching.py + the
vocoder in one module).

MB-iSTFT generator: mel (B, n_mels, T) -> conv_pre -> [transposed-conv upsampling + ResBlocks] x
len(upsample_rates) -> conv_post -> per band: magnitude exp(.), phase pi * sin(.) on n_fft // 2 + 1 bins
-> iSTFT per band (B, subbands, T * hop / subbands) -> PQMF synthesis -> waveform (B, 1, T * hop).
The rule prod(upsample_rates) * gen_istft_hop_size * subbands == hop_length makes the frame rates meet.
The iSTFT window / inverse-DFT basis and the PQMF filters are built once as buffers (not per call, not
pinned to CUDA), and the exp / iSTFT / PQMF tail always runs in fp32, also under autocast.

The acoustic model (FlowMatchingTTS and its networks) is in flow_matching.py; the building blocks in modules.py.
"""
from __future__ import annotations

import math
import time
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from commons import init_weights, synchronize
from config import HParams, check_generator_config
from flow_matching import FlowMatchingTTS
from modules import LRELU_SLOPE, ResBlock1, ResBlock2, remove_weight_norm_all, upsample_padding
from pqmf import PQMF
from sampling import SamplingConfig
from source_filter import SourceFilterGenerator
from stft import make_istft

LOG_MAGNITUDE_MAX = 10.0  # exp(10) ~ 2.2e4 is far above any real STFT magnitude; avoids inf in exp


# ----------------------------------------------------------------------------------------------------------
# Vocoder


class MultiBandISTFTGenerator(nn.Module):
    """MB-iSTFT generator.

    forward(mel (B, n_mels, T) de-normalized log-mel, g (B, gin_channels, 1) or None)
      -> (audio (B, 1, T * hop_length), subband_audio (B, subbands, T * hop_length // subbands)).
    istft_impl "torch" uses torch.istft; "conv" the ONNX-exportable ConvTransposeISTFT (same result).
    It has no pitch input, so on steady sounds its harmonics lock to multiples of sr / hop (86 Hz) rather than
    the voice's pitch (metrics.frame_rate_lock); the source-filter vocoder (source_filter.py) cannot.
    """

    def __init__(self, hps: HParams, istft_impl: str = "torch"):
        super().__init__()
        check_generator_config(hps)  # also here: an HParams built in code may never have been validated
        m = hps.model
        self.subbands = m.subbands
        self.n_fft = m.gen_istft_n_fft
        self.istft_hop = m.gen_istft_hop_size
        self.hop_length = hps.data.hop_length
        self.sampling_rate = hps.data.sampling_rate
        self.n_bins = self.n_fft // 2 + 1
        channels = m.upsample_initial_channel

        self.conv_pre = weight_norm(nn.Conv1d(hps.data.n_mel_channels, channels, 7, padding=3))
        gin = m.gin_channels if m.speaker_conditioned_vocoder else 0
        self.cond = nn.Conv1d(gin, channels, 1) if gin > 0 else None
        resblock_cls = ResBlock1 if m.resblock == "1" else ResBlock2
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (rate, kernel) in enumerate(zip(m.upsample_rates, m.upsample_kernel_sizes)):
            padding, output_padding = upsample_padding(kernel, rate)
            c_in, c_out = channels // (2 ** i), channels // (2 ** (i + 1))
            self.ups.append(weight_norm(nn.ConvTranspose1d(c_in, c_out, kernel, rate, padding=padding,
                                                           output_padding=output_padding)))
            for k, dilations in zip(m.resblock_kernel_sizes, m.resblock_dilation_sizes):
                self.resblocks.append(resblock_cls(c_out, k, dilations))
        self.num_kernels = len(m.resblock_kernel_sizes)
        self.conv_post = weight_norm(nn.Conv1d(c_out, self.subbands * self.n_bins * 2, 7, padding=3))
        self.ups.apply(init_weights)
        self.conv_post.apply(init_weights)

        self.istft_impl = istft_impl
        self.istft = make_istft(istft_impl, self.n_fft, self.istft_hop)
        # One band is plain iSTFT-VITS: no filter bank.
        self.pqmf = PQMF(m.subbands, m.pqmf_taps, m.pqmf_cutoff, m.pqmf_beta) if m.subbands > 1 else None

    def set_istft_impl(self, impl: str) -> "MultiBandISTFTGenerator":
        """Switch between "torch" (torch.istft) and "conv" (ONNX exportable); returns self."""
        device = self.conv_post.bias.device
        self.istft = make_istft(impl, self.n_fft, self.istft_hop).to(device)
        self.istft_impl = impl
        return self

    def forward(self, mel: torch.Tensor, g: Optional[torch.Tensor] = None, return_pitch: bool = False):
        """-> (audio, subband_audio), and None with `return_pitch` (the source-filter vocoder's interface: it
        returns its pitch predictor's output there)."""
        x = self.conv_pre(mel)
        if g is not None:
            if self.cond is None:
                raise ValueError("speaker conditioning g was given but the generator was built with gin_channels 0")
            x = x + self.cond(g)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            blocks = self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]
            x = sum(block(x) for block in blocks) / self.num_kernels
        audio = self.tail_to_audio(x)
        return (*audio, None) if return_pitch else audio

    def window(self, mel: torch.Tensor, left: int, right: int, g: Optional[torch.Tensor] = None):
        """Frames [left, right) of the whole clip's mel (B, n_mels, T) vocoded alone (streaming, parallel pieces)."""
        return self(mel[..., left:right], g)

    def tail_to_audio(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Last upsampling stage's output (B, C, F) -> conv_post -> (audio (B, 1, F * istft_hop * subbands), sub-bands).

        All in fp32, also under autocast: conv_post's outputs (log-magnitudes and phases, mostly |x| < 1) are
        small sums of large terms that bf16 rounding scrambles (copy-synthesis mel L1 of the unseen voice 0.37
        -> 0.47), and bf16/fp16 exp and overlap-add lose too much precision.
        """
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = self.conv_post(F.leaky_relu(x.float()))
            batch, _, frames = x.shape
            x = x.reshape(batch * self.subbands, 2 * self.n_bins, frames)
            magnitude = torch.exp(x[:, :self.n_bins].clamp(max=LOG_MAGNITUDE_MAX))
            phase = math.pi * torch.sin(x[:, self.n_bins:])
            subband_audio = self.istft(magnitude, phase).reshape(batch, self.subbands, frames * self.istft_hop)
            audio = subband_audio if self.pqmf is None else self.pqmf.synthesis(subband_audio)
        return audio, subband_audio

    def remove_weight_norm(self) -> None:
        """Fold weight norm into plain weights for inference / export."""
        remove_weight_norm_all(self)


def make_generator(hps: HParams, istft_impl: str = "torch") -> nn.Module:
    """The vocoder model.vocoder names: MultiBandISTFTGenerator or SourceFilterGenerator (same interface)."""
    cls = SourceFilterGenerator if hps.model.vocoder == "source_filter" else MultiBandISTFTGenerator
    return cls(hps, istft_impl=istft_impl)


# ----------------------------------------------------------------------------------------------------------
# Text -> waveform


class FlowMatchingSynthesizer(nn.Module):
    """`acoustic` (FlowMatchingTTS) and `generator` (MultiBandISTFTGenerator) in one module / state dict.

    Multi-speaker models condition the vocoder on the acoustic model's speaker embedding (as VITS shares
    emb_g between encoder and decoder) unless model.speaker_conditioned_vocoder is false (a shared vocoder
    trained on many voices needs no speaker).
    """

    def __init__(self, n_vocab: int, hps: HParams, istft_impl: str = "torch"):
        super().__init__()
        self.hps = hps
        self.n_vocab = n_vocab
        self.hop_length = hps.data.hop_length
        self.acoustic = FlowMatchingTTS(n_vocab, hps)
        self.generator = make_generator(hps, istft_impl=istft_impl)
        self.vocoder_bf16 = False  # vocode() under bfloat16 autocast (inference; TorchSynthesizer decides)

    def speaker_condition(self, speakers: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """speakers (B,) long -> vocoder conditioning (B, gin_channels, 1), or None for one speaker.

        The acoustic model's own embedding lookup (one place raises for missing speaker ids)."""
        if self.generator.cond is None:
            return None
        return self.acoustic._speaker(speakers)

    def vocode(self, mel: torch.Tensor, speakers: Optional[torch.Tensor] = None,
               window: Optional[Tuple[int, int]] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """mel (B, n_mels, T) de-normalized log-mel
        -> (audio (B, 1, T * hop), sub-bands (B, subbands, T * hop // subbands)); with `window` (left, right) only
        frames [left, right) of the mel, as MultiBandISTFTGenerator.window vocodes them."""
        g = self.speaker_condition(speakers)
        with torch.autocast(mel.device.type, dtype=torch.bfloat16, enabled=self.vocoder_bf16):
            audio, bands = self.generator(mel, g) if window is None else self.generator.window(mel, *window, g)
        return (audio.float(), bands.float()) if self.vocoder_bf16 else (audio, bands)

    @torch.no_grad()
    def infer(self, text: torch.Tensor, text_lengths: torch.Tensor, sampling: SamplingConfig = SamplingConfig(),
              speakers: Optional[torch.Tensor] = None, rng=None, durations: Optional[torch.Tensor] = None,
              prompt=None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Dict]:
        """text (B, T_text) long, text_lengths (B,) -> (audio (B, 1, max(mel_lengths) * hop), durations
        (B, T_text) long, mel (B, n_mels, T) de-normalized log-mel, extra).

        Padding invariant: the acoustic model is, and each mel is vocoded at its own length (a
        convolutional vocoder would otherwise let an item's last frames see the batch padding), so an
        item sounds the same in any batch. extra: audio_lengths (B,) = mel_lengths * hop (samples past an
        item's length are zero), mel_lengths (B,), nfe, acoustic_seconds, vocoder_seconds.
        rng / durations / prompt: see FlowMatchingTTS.infer.
        """
        device = text.device
        synchronize(device)
        t0 = time.perf_counter()
        out = self.acoustic.infer(text, text_lengths, sampling, speakers, durations, rng, prompt)
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
