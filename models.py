"""Networks: the acoustic model's text encoder, duration predictor and velocity transformer, the
MB-iSTFT vocoder, and FlowMatchingSynthesizer (flow-matching acoustic model + vocoder in one module).

MB-iSTFT generator: mel (B, n_mels, T) -> conv_pre -> [transposed-conv upsampling + ResBlocks] x
len(upsample_rates) -> conv_post -> per band: magnitude exp(.), phase pi * sin(.) on n_fft // 2 + 1 bins
-> iSTFT per band (B, subbands, T * hop / subbands) -> PQMF synthesis -> waveform (B, 1, T * hop).
The rule prod(upsample_rates) * gen_istft_hop_size * subbands == hop_length makes the frame rates meet.
The iSTFT window / inverse-DFT basis and the PQMF filters are built once as buffers (not per call, not
pinned to CUDA), and the exp / iSTFT / PQMF tail always runs in fp32, also under autocast.

The flow-matching objective and FlowMatchingTTS (which combines the acoustic networks) are in
flow_matching.py; the building blocks in modules.py.
"""
from __future__ import annotations

import math
import time
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from commons import init_weights
from config import HParams, check_generator_config
from modules import (LRELU_SLOPE, AdaLNTransformerBlock, ChannelLayerNorm, ConvNeXtBlock, ResBlock1, ResBlock2,
                     remove_weight_norm_all, rotary_tables, timestep_embedding, upsample_padding)
from pitch import PitchPredictor, harmonic_source, pitch_from_raw, start_cycles
from pqmf import PQMF
from sampling import SamplingConfig
from stft import make_istft
from timing import synchronize

LOG_MAGNITUDE_MAX = 10.0  # exp(10) ~ 2.2e4 is far above any real STFT magnitude; avoids inf in exp


# ----------------------------------------------------------------------------------------------------------
# Acoustic model networks


class TextEncoder(nn.Module):
    """Token embedding + ConvNeXt stack.

    forward(tokens (B, T_text) long, mask (B, 1, T_text), g (B, gin, 1) or None)
      -> h (B, hidden, T_text), mu (B, n_mels, T_text): the prior mean in normalized mel space.
    """

    def __init__(self, n_vocab: int, hidden: int, n_mels: int, n_layers: int, kernel_size: int, ff_mult: int,
                 gin_channels: int = 0, dropout: float = 0.0):
        super().__init__()
        self.hidden = hidden
        self.emb = nn.Embedding(n_vocab, hidden)
        nn.init.normal_(self.emb.weight, 0.0, hidden ** -0.5)
        self.blocks = nn.ModuleList([ConvNeXtBlock(hidden, kernel_size, ff_mult, 1.0 / max(n_layers, 1), dropout)
                                     for _ in range(n_layers)])
        self.cond = nn.Conv1d(gin_channels, hidden, 1) if gin_channels > 0 else None
        self.norm = ChannelLayerNorm(hidden)
        self.proj_mu = nn.Conv1d(hidden, n_mels, 1)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, g: Optional[torch.Tensor] = None):
        h = self.emb(tokens).transpose(1, 2) * math.sqrt(self.hidden)  # (B, H, T)
        if self.cond is not None and g is not None:
            h = h + self.cond(g)
        h = h * mask
        for block in self.blocks:
            h = block(h, mask)
        h = self.norm(h) * mask
        return h, self.proj_mu(h) * mask


class DurationPredictor(nn.Module):
    """Conv -> ReLU -> LayerNorm -> dropout stack predicting log durations.

    forward(x (B, H, T_text) (pass h.detach()), mask (B, 1, T_text), g (B, gin, 1) or None) -> logw (B, T_text).
    """

    def __init__(self, in_channels: int, channels: int, kernel_size: int, n_layers: int, dropout: float = 0.1,
                 gin_channels: int = 0):
        super().__init__()
        self.cond = nn.Conv1d(gin_channels, in_channels, 1) if gin_channels > 0 else None
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        for i in range(n_layers):
            self.convs.append(nn.Conv1d(in_channels if i == 0 else channels, channels, kernel_size,
                                        padding=kernel_size // 2))
            self.norms.append(ChannelLayerNorm(channels))
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Conv1d(channels if n_layers else in_channels, 1, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, g: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.cond is not None and g is not None:
            x = x + self.cond(g.detach())
        for conv, norm in zip(self.convs, self.norms):
            x = self.dropout(norm(torch.relu(conv(x * mask))))
        return (self.proj(x * mask) * mask).squeeze(1)


class FlowMatchingTransformer(nn.Module):
    """Velocity network v(x_t, t, c) of the flow.

    forward(x (B, n_mels, T), mask (B, 1, T), cond (B, cond_channels, T), t (B,) in [0, 1],
            g (B, gin, 1) or None) -> velocity (B, n_mels, T), zero on padded frames.
    Input projection of [x_t, cond], a masked depthwise conv for local position, pre-norm AdaLN transformer
    blocks with rotary attention, and a zero-initialised output projection (the flow starts at v = 0).
    """

    def __init__(self, n_mels: int, cond_channels: int, d_model: int, nhead: int, num_layers: int,
                 dim_feedforward: int, dropout: float = 0.1, gin_channels: int = 0, time_embed_dim: int = 256,
                 conv_pos_kernel: int = 31):
        super().__init__()
        if d_model % nhead or (d_model // nhead) % 2:
            raise ValueError(f"d_model ({d_model}) must split over nhead ({nhead}) into an even head size")
        self.time_embed_dim = time_embed_dim
        self.head_dim = d_model // nhead
        self.in_proj = nn.Linear(n_mels + cond_channels, d_model)
        self.conv_pos = (nn.Conv1d(d_model, d_model, conv_pos_kernel, padding=conv_pos_kernel // 2, groups=d_model)
                         if conv_pos_kernel > 0 else None)
        self.time_mlp = nn.Sequential(nn.Linear(time_embed_dim, d_model), nn.SiLU(), nn.Linear(d_model, d_model))
        self.spk = nn.Linear(gin_channels, d_model) if gin_channels > 0 else None
        self.blocks = nn.ModuleList([AdaLNTransformerBlock(d_model, nhead, dim_feedforward, dropout)
                                     for _ in range(num_layers)])
        self.norm_out = nn.LayerNorm(d_model, elementwise_affine=False, eps=1e-6)
        self.mod_out = nn.Linear(d_model, 2 * d_model)
        self.out_proj = nn.Linear(d_model, n_mels)
        for layer in (self.mod_out, self.out_proj):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x, mask, cond, t, g=None):
        mask_t = mask.transpose(1, 2)  # (B, T, 1)
        h = self.in_proj(torch.cat([x.to(cond.dtype), cond], dim=1).transpose(1, 2)) * mask_t  # (B, T, D)
        if self.conv_pos is not None:
            h = h + F.gelu(self.conv_pos(h.transpose(1, 2))).transpose(1, 2) * mask_t
        c = self.time_mlp(timestep_embedding(t.reshape(-1).expand(x.size(0)), self.time_embed_dim).to(h.dtype))
        if self.spk is not None and g is not None:
            c = c + self.spk(g.squeeze(-1))
        attn_mask = mask.bool().unsqueeze(1)  # (B, 1, 1, T): keys only
        cos, sin = rotary_tables(h.size(1), self.head_dim, h.device)
        for block in self.blocks:
            h = block(h, c, attn_mask, cos, sin)
        shift, scale = self.mod_out(F.silu(c)).unsqueeze(1).chunk(2, dim=2)
        h = self.norm_out(h) * (1 + scale) + shift
        return self.out_proj(h).transpose(1, 2) * mask


# ----------------------------------------------------------------------------------------------------------
# Vocoder


class MultiBandISTFTGenerator(nn.Module):
    """MB-iSTFT generator.

    forward(mel (B, n_mels, T) de-normalized log-mel, g (B, gin_channels, 1) or None)
      -> (audio (B, 1, T * hop_length), subband_audio (B, subbands, T * hop_length // subbands)).
    istft_impl "torch" uses torch.istft; "conv" the ONNX-exportable ConvTransposeISTFT (same result).
    With model.harmonic_source, voiced sines at an F0 predicted from the mel (pitch.py) enter after every
    upsampling stage through zero-initialised strided convs (a vocoder without them starts out unchanged);
    `pitch` and `cycles0` replace the prediction and the phase start (streaming chunks of one clip).
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
        self.pitch = PitchPredictor(hps.data.n_mel_channels) if m.harmonic_source else None
        self.source_convs = nn.ModuleList()
        self.source_harmonics = m.source_harmonics
        if m.harmonic_source:
            samples_per_frame = self.hop_length
            for i, rate in enumerate(m.upsample_rates):
                samples_per_frame //= rate
                conv = nn.Conv1d(m.source_harmonics, channels // (2 ** (i + 1)), samples_per_frame, samples_per_frame)
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)
                self.source_convs.append(conv)
            # Trained from scratch beside a trained network: 10x its learning rate (train_utils.param_groups);
            # at 1x the sines reached 0.5% of the stage features' norm in 1000 steps.
            self.pitch.lr_scale = self.source_convs.lr_scale = 10.0
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

    def forward(self, mel: torch.Tensor, g: Optional[torch.Tensor] = None,
                pitch: Optional[Tuple[torch.Tensor, torch.Tensor]] = None, cycles0: Optional[torch.Tensor] = None,
                return_pitch: bool = False):
        """-> (audio, subband_audio), and the pitch predictor's raw output (B, 2, T) (None without one, or when
        `pitch` = (F0 (B, T) Hz, voicing (B, T)) is given) with `return_pitch`."""
        x = self.conv_pre(mel)
        if g is not None:
            if self.cond is None:
                raise ValueError("speaker conditioning g was given but the generator was built with gin_channels 0")
            x = x + self.cond(g)
        source, raw_pitch = self.excitation(mel, pitch, cycles0) if self.pitch is not None else (None, None)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            if source is not None:
                x = x + self.read_source(i, source)
            blocks = self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]
            x = sum(block(x) for block in blocks) / self.num_kernels
        audio = self.tail_to_audio(x)
        return (*audio, raw_pitch) if return_pitch else audio

    def window(self, mel: torch.Tensor, left: int, right: int, g: Optional[torch.Tensor] = None):
        """Frames [left, right) of the whole clip's mel (B, n_mels, T) vocoded alone (streaming, parallel pieces):
        the harmonic source takes the whole clip's pitch, so its phase runs on across windows."""
        if self.pitch is None:
            return self(mel[..., left:right], g)
        f0, voicing = self.predict_pitch(mel)
        return self(mel[..., left:right], g, (f0[:, left:right], voicing[:, left:right]),
                    start_cycles(f0, left, self.hop_length, self.sampling_rate))

    def read_source(self, stage: int, source: torch.Tensor) -> torch.Tensor:
        """The sines as features of upsampling stage `stage`. In fp32: under CPU bf16 autocast, torch 2.13's
        convolution with 2-16 input channels and a kernel as long as its stride (64) returns wrong values on
        AMX CPUs (mean error larger than the signal, like pytorch issue 169688; the sines were invisible in bf16
        training), and this one is cheap."""
        with torch.autocast(device_type=source.device.type, enabled=False):
            return self.source_convs[stage](source)

    def predict_pitch(self, mel: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """mel (B, n_mels, T) -> (F0 (B, T) Hz, voicing (B, T)), for a clip vocoded in chunks (pass each chunk
        its slice and pitch.start_cycles)."""
        with torch.autocast(device_type=mel.device.type, enabled=False):
            return pitch_from_raw(self.pitch(mel.float()))

    def excitation(self, mel: torch.Tensor, pitch=None, cycles0: Optional[torch.Tensor] = None):
        """-> (sines (B, model.source_harmonics, T * hop), the predictor's raw output (B, 2, T) or None when `pitch` is
        given). In fp32, also under autocast: the phase is a running sum over the whole clip."""
        with torch.autocast(device_type=mel.device.type, enabled=False):
            raw = None
            if pitch is None:
                raw = self.pitch(mel.float())
                pitch = pitch_from_raw(raw.detach())  # the source does not teach the predictor
            f0, voicing = pitch
            return harmonic_source(f0.float(), voicing.float(), self.hop_length, self.sampling_rate,
                                   self.source_harmonics, cycles0), raw

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
        from flow_matching import FlowMatchingTTS  # flow_matching builds on the networks above

        self.acoustic = FlowMatchingTTS(n_vocab, hps)
        self.generator = MultiBandISTFTGenerator(hps, istft_impl=istft_impl)

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
        return self.generator(mel, g) if window is None else self.generator.window(mel, *window, g)

    @torch.no_grad()
    def infer(self, text: torch.Tensor, text_lengths: torch.Tensor, sampling: SamplingConfig = SamplingConfig(),
              speakers: Optional[torch.Tensor] = None, generator=None, durations: Optional[torch.Tensor] = None,
              prompt=None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Dict]:
        """text (B, T_text) long, text_lengths (B,) -> (audio (B, 1, max(mel_lengths) * hop), durations
        (B, T_text) long, mel (B, n_mels, T) de-normalized log-mel, extra).

        Padding invariant: the acoustic model is, and each mel is vocoded at its own length (a
        convolutional vocoder would otherwise let an item's last frames see the batch padding), so an
        item sounds the same in any batch. extra: audio_lengths (B,) = mel_lengths * hop (samples past an
        item's length are zero), mel_lengths (B,), nfe, acoustic_seconds, vocoder_seconds.
        generator / durations / prompt: see FlowMatchingTTS.infer.
        """
        device = text.device
        synchronize(device)
        t0 = time.perf_counter()
        out = self.acoustic.infer(text, text_lengths, sampling, speakers, durations, generator, prompt)
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
