"""Acoustic model: text -> normalized mel with conditional flow matching (CFM).

    text ids --TextEncoder (ConvNeXt)--> h (B, H, T_text), mu (B, n_mels, T_text)
    train: MAS(log N(mel | mu)) -> hard alignment -> durations; DurationPredictor(h.detach()) ~ log durations
    infer: durations = ceil(exp(logw) * duration_scale)
    length regulation: h, mu -> frames; FlowMatchingTransformer v(x_t, t, [h_y, mu_y]) integrated from
    noise (or mu_y + noise, Grad-TTS style) to the normalized mel.

The model works on mel normalized with the dataset statistics `mel_mean` / `mel_std` (buffers, so they
travel with the weights); `forward` takes and `infer` returns de-normalized log-mel.
Every layer is masked, so padding never changes a result: a batch and its items one by one agree.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

import commons
import ode
from mel_processing import LOG_MEL_FLOOR  # log-mel of silence: fills padding of returned mels (re-exported)
from sampling import SamplingConfig

Generators = Union[None, torch.Generator, Sequence[Optional[torch.Generator]]]


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of a (B, C, T) tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class ConvNeXtBlock(nn.Module):
    """Depthwise conv -> LayerNorm(C) -> Linear(C, ff*C) -> GELU -> Linear(ff*C, C) -> layer scale, residual.

    x (B, C, T), mask (B, 1, T) -> (B, C, T). The input is masked before the depthwise conv so padded
    frames act exactly like the conv's own zero padding at a sequence end.
    """

    def __init__(self, channels: int, kernel_size: int = 7, ff_mult: int = 4, layer_scale: float = 1e-1,
                 dropout: float = 0.0):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"ConvNeXtBlock kernel_size must be odd to keep the length, got {kernel_size}")
        self.dwconv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.pw1 = nn.Linear(channels, channels * ff_mult)
        self.pw2 = nn.Linear(channels * ff_mult, channels)
        self.gamma = nn.Parameter(torch.full((channels,), float(layer_scale)))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x * mask).transpose(1, 2)  # (B, T, C)
        y = self.pw2(self.dropout(F.gelu(self.pw1(self.norm(y)))))
        return (x + (self.gamma * y).transpose(1, 2)) * mask


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


# ----------------------------------------------------------------------------------------------------------
# Velocity network


def timestep_embedding(t: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    """Sinusoidal embedding of t (B,) in [0, 1] -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = scale * t.float().unsqueeze(1) * freqs.unsqueeze(0)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def rotary_tables(length: int, head_dim: int, device, base: float = 10000.0):
    """fp32 cos, sin tables (length, head_dim) for rotary position embedding (rotate-half convention)."""
    inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    angles = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1) * inv.unsqueeze(0)
    angles = torch.cat([angles, angles], dim=1)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, heads, T, head_dim) rotated by position; computed in fp32 (bf16 would blur the angles)."""
    xf = x.float()
    x1, x2 = xf.chunk(2, dim=-1)
    return (xf * cos + torch.cat([-x2, x1], dim=-1) * sin).to(x.dtype)


class SelfAttention(nn.Module):
    """Multi-head self-attention with rotary positions and a key-padding mask (scaled_dot_product_attention)."""

    def __init__(self, d_model: int, nhead: int, dropout: float):
        super().__init__()
        self.nhead = nhead
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """x (B, T, D), attn_mask (B, 1, 1, T) bool (True = valid key) -> (B, T, D)."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.nhead, d // self.nhead).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class AdaLNTransformerBlock(nn.Module):
    """Pre-norm transformer block with adaptive LayerNorm (shift, scale, gate from the conditioning vector).

    The modulation is zero-initialised, so gates start at 0 and the block starts as the identity (DiT).
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(d_model, nhead, dropout)
        self.norm2 = nn.LayerNorm(d_model, elementwise_affine=False, eps=1e-6)
        self.ff = nn.Sequential(nn.Linear(d_model, dim_feedforward), nn.GELU(approximate="tanh"),
                                nn.Dropout(dropout), nn.Linear(dim_feedforward, d_model))
        self.dropout = nn.Dropout(dropout)
        self.modulation = nn.Linear(d_model, 6 * d_model)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x, cond, attn_mask, cos, sin):
        """x (B, T, D), cond (B, D) -> (B, T, D)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(cond)).unsqueeze(1).chunk(6, dim=2)
        y = self.attn(self.norm1(x) * (1 + scale1) + shift1, attn_mask, cos, sin)
        x = x + gate1 * self.dropout(y)
        y = self.ff(self.norm2(x) * (1 + scale2) + shift2)
        return x + gate2 * self.dropout(y)


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
# Conditional flow matching


def _generator_list(generator: Generators, batch: int) -> List[Optional[torch.Generator]]:
    if generator is None or isinstance(generator, torch.Generator):
        return [generator] * batch
    generators = list(generator)
    if len(generators) != batch:
        raise ValueError(f"got {len(generators)} generators for a batch of {batch}; pass one torch.Generator, "
                         f"one per item, or None")
    return generators


def per_item_noise(batch: int, channels: int, lengths: torch.Tensor, max_length: int, generator: Generators,
                   device, dtype) -> torch.Tensor:
    """Standard normal noise (B, C, T_max), drawn item by item as (C, T_i) and zero padded.

    Drawing each item at its own length makes an item's noise independent of the other items and of the
    padding: with one generator per item (or a single generator and a batch of one) a batch reproduces
    its items run alone.
    """
    noise = torch.zeros(batch, channels, max_length, device=device, dtype=dtype)
    for b, gen in enumerate(_generator_list(generator, batch)):
        length = int(lengths[b])
        draw_device = gen.device if gen is not None else device
        noise[b, :, :length] = torch.randn(channels, length, generator=gen, device=draw_device).to(device, dtype)
    return noise


class ConditionalFlowMatching(nn.Module):
    """Optimal-transport conditional flow matching around a velocity network.

    Path: x_t = (1 - (1 - sigma_min) t) x0 + t x1, target velocity u = x1 - (1 - sigma_min) x0, where
    x0 = noise, or mu + noise with `prior_start` (Grad-TTS: the ODE starts at the encoder's prior so the
    network learns only the residual detail).
    """

    def __init__(self, estimator: nn.Module, sigma_min: float = 1e-4, prior_start: bool = False):
        super().__init__()
        self.estimator = estimator
        self.sigma_min = float(sigma_min)
        self.prior_start = bool(prior_start)

    def interpolate(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor):
        """x0, x1 (B, C, T), t (B,) -> (x_t, u) both (B, C, T)."""
        t = t.view(-1, 1, 1)
        x_t = (1 - (1 - self.sigma_min) * t) * x0 + t * x1
        return x_t, x1 - (1 - self.sigma_min) * x0

    def loss(self, x1: torch.Tensor, mask: torch.Tensor, cond: torch.Tensor, mu: Optional[torch.Tensor] = None,
             g: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Masked MSE between predicted and target velocity, averaged over valid frames and channels.

        x1 (B, C, T) normalized mel, mask (B, 1, T), cond (B, C_cond, T), mu (B, C, T) frame-level prior
        (required with prior_start; detached there: the prior is trained by the prior loss, not pulled around
        by the flow target). t ~ U(0, 1) per item; the noise is drawn item by item at its valid length
        (per_item_noise), so under a fixed seed the loss does not depend on how much padding the batch has.
        """
        b = x1.size(0)
        t = torch.rand(b, generator=generator, device=generator.device if generator is not None else x1.device).to(x1)
        lengths = mask.reshape(b, -1).sum(1).round().long().cpu()  # one host sync, not one per item
        x0 = per_item_noise(b, x1.size(1), lengths, x1.size(2), generator, x1.device, x1.dtype)
        if self.prior_start:
            if mu is None:
                raise ValueError("prior_start is on: ConditionalFlowMatching.loss needs mu (B, n_mels, T)")
            x0 = x0 + mu.detach()
        x_t, u = self.interpolate(x0, x1, t)
        v = self.estimator(x_t * mask, mask, cond, t, g)
        return masked_mean((v.float() - u.float()) ** 2, mask)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, mask: torch.Tensor, mu: Optional[torch.Tensor] = None,
               sampling: SamplingConfig = SamplingConfig(), g: Optional[torch.Tensor] = None,
               generator: Generators = None, n_channels: Optional[int] = None):
        """Integrate the flow from t = 0 to 1 on sampling's grid. cond (B, C_cond, T), mask (B, 1, T), mu (B, C, T).

        Returns (x (B, C, T) fp32 normalized mel, zero on padding; NFE).
        """
        if n_channels is None:
            if mu is None:
                raise ValueError("sample needs mu or n_channels to know the output channel count")
            n_channels = mu.size(1)
        b, t_max = mask.size(0), mask.size(2)
        lengths = mask.sum((1, 2)).long()
        # The ODE state stays fp32 even when the network runs in bf16/fp16: small steps must not be rounded away.
        x = per_item_noise(b, n_channels, lengths, t_max, generator, mask.device, torch.float32) * sampling.temperature
        if self.prior_start:
            if mu is None:
                raise ValueError("prior_start is on: ConditionalFlowMatching.sample needs mu (B, n_mels, T)")
            x = x + mu.float()
        state_mask = mask.float()

        def velocity(x_t, t):
            return self.estimator(x_t, mask, cond, t.expand(b), g).float()

        x, nfe = ode.solve(velocity, x * state_mask, sampling.time_grid(mask.device), sampling.method)
        return x * state_mask, nfe


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x (B, C, T) over the positions where mask (B, 1, T) is 1 (all channels)."""
    return (x * mask).sum() / (mask.sum() * x.size(1)).clamp(min=1)


def gaussian_log_likelihood(mu: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """log N(y_j | mu_i, I) for every token i and frame j: mu (B, C, T_text), y (B, C, T_mel) -> (B, T_text, T_mel).

    Expanded as -0.5 |y|^2 + mu.y - 0.5 |mu|^2 - C/2 log(2 pi) so it is two small matmuls, not a
    (B, C, T_text, T_mel) tensor. Computed in fp32 even under autocast (it decides the alignment).
    """
    with torch.autocast(device_type=mu.device.type, enabled=False):
        mu, y = mu.float(), y.float()
        const = -0.5 * math.log(2 * math.pi) * mu.size(1)
        y_sq = -0.5 * (y * y).sum(1, keepdim=True)  # (B, 1, T_mel)
        mu_sq = -0.5 * (mu * mu).sum(1).unsqueeze(-1)  # (B, T_text, 1)
        return torch.bmm(mu.transpose(1, 2), y) + y_sq + mu_sq + const


def reconcile_durations(durations: torch.Tensor, text_mask: torch.Tensor, mel_lengths: torch.Tensor
                        ) -> torch.Tensor:
    """Make external durations (B, T_text) sum exactly to mel_lengths (B,).

    External aligners round differently from our mel framing (often by a frame or two): token end frames
    are clipped to the clip length and the last token absorbs any remaining frames.
    """
    durations = durations.long().clamp(min=0) * text_mask.long()
    ends = torch.minimum(torch.cumsum(durations, 1), mel_lengths.long().unsqueeze(1))
    last = (text_mask.long().sum(1) - 1).clamp(min=0)
    ends = ends.scatter(1, last.unsqueeze(1), mel_lengths.long().unsqueeze(1))
    ends = torch.where(torch.arange(ends.size(1), device=ends.device).unsqueeze(0) > last.unsqueeze(1),
                       mel_lengths.long().unsqueeze(1), ends)
    return torch.diff(ends, dim=1, prepend=torch.zeros_like(ends[:, :1])) * text_mask.long()


# ----------------------------------------------------------------------------------------------------------
# Full acoustic model


class FlowMatchingTTS(nn.Module):
    """Text -> mel: ConvNeXt text encoder, MAS + duration predictor, flow-matching transformer decoder.

    Uses hps.model (sizes, sigma_min, prior_start, use_duration_predictor, use_prior_loss, gin_channels) and
    hps.data (n_mel_channels, mel_mean, mel_std, n_speakers); training settings come as arguments.
    """

    def __init__(self, n_vocab: int, hps):
        super().__init__()
        m, d = hps.model, hps.data
        self.n_mels = d.n_mel_channels
        self.use_duration_predictor = m.use_duration_predictor
        self.use_prior_loss = m.use_prior_loss
        self.n_speakers = d.n_speakers
        self.register_buffer("mel_mean", torch.tensor(float(d.mel_mean)))
        self.register_buffer("mel_std", torch.tensor(float(d.mel_std)))
        gin = m.gin_channels if d.n_speakers > 1 else 0
        self.emb_g = nn.Embedding(d.n_speakers, gin) if gin > 0 else None
        self.encoder = TextEncoder(n_vocab, m.hidden_channels, self.n_mels, m.text_encoder_layers,
                                   m.text_encoder_kernel, m.text_encoder_ff_mult, gin)
        self.duration_predictor = (DurationPredictor(m.hidden_channels, m.duration_predictor_channels,
                                                     m.duration_predictor_kernel, m.duration_predictor_layers,
                                                     gin_channels=gin)
                                   if m.use_duration_predictor else None)
        estimator = FlowMatchingTransformer(self.n_mels, m.hidden_channels + self.n_mels, m.flow_d_model,
                                            m.flow_nhead, m.flow_num_layers, m.flow_dim_feedforward,
                                            m.flow_dropout, gin)
        self.cfm = ConditionalFlowMatching(estimator, m.sigma_min, m.prior_start)

    # -- helpers ------------------------------------------------------------------------------------------

    def normalize(self, mel: torch.Tensor) -> torch.Tensor:
        return (mel - self.mel_mean) / self.mel_std

    def denormalize(self, mel: torch.Tensor) -> torch.Tensor:
        return mel * self.mel_std + self.mel_mean

    def _speaker(self, speakers: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        if self.emb_g is None:
            return None
        if speakers is None:
            raise ValueError(f"this model has {self.n_speakers} speakers: pass speakers (B,) long speaker ids")
        return self.emb_g(speakers).unsqueeze(-1)  # (B, gin, 1)

    def _encode(self, text, text_lengths, speakers):
        x_mask = commons.sequence_mask(text_lengths, text.size(1)).unsqueeze(1).to(torch.float32)
        g = self._speaker(speakers)
        h, mu = self.encoder(text, x_mask, g)
        return h, mu, x_mask, g

    # -- training -----------------------------------------------------------------------------------------

    def forward(self, text, text_lengths, mel, mel_lengths, speakers=None, durations=None,
                max_flow_frames: Optional[int] = None):
        """text (B, T_text) long, text_lengths (B,), mel (B, n_mels, T_mel) log-mel (not normalized),
        mel_lengths (B,), speakers (B,) long or None, durations (B, T_text) long from an external aligner
        or None (then MAS). max_flow_frames: the flow loss sees a random crop of at most this many frames
        (train.max_mel_frames; None: whole clips).

        Returns dict(loss_flow, loss_dur, loss_prior: scalar tensors; attn (B, T_text, T_mel) hard alignment;
        durations (B, T_text) long). loss_prior is the per-element Gaussian NLL *including* the
        0.5 log(2 pi) constant (so it reads ~1.42 for a unit-variance fit); loss_dur is 0 without a
        duration predictor and loss_prior 0 when model.use_prior_loss is false.
        """
        h, mu, x_mask, g = self._encode(text, text_lengths, speakers)
        y_mask = commons.sequence_mask(mel_lengths, mel.size(2)).unsqueeze(1).to(x_mask)
        y = self.normalize(mel) * y_mask
        attn_mask = x_mask.transpose(1, 2) * y_mask  # (B, T_text, T_mel)
        with torch.no_grad():
            if durations is not None:
                durations = reconcile_durations(durations, x_mask.squeeze(1), mel_lengths)
                attn = commons.durations_to_alignment(durations, x_mask.squeeze(1).bool(), mel.size(2))
            else:
                from monotonic_align import maximum_path  # numba: needed for training only

                attn = maximum_path(gaussian_log_likelihood(mu, y), attn_mask)
            attn = attn * attn_mask
            durations = attn.sum(2).long()

        zero = mu.new_zeros(())
        if self.duration_predictor is not None:
            logw = self.duration_predictor(h.detach(), x_mask, g)
            # Targets are floored at one frame: inference never predicts fewer (external aligners may give 0).
            logw_target = torch.log(durations.clamp(min=1).float()) * x_mask.squeeze(1)
            loss_dur = ((logw.float() - logw_target) ** 2).sum() / x_mask.sum()
        else:
            loss_dur = zero

        attn = attn.to(h.dtype)
        mu_y = torch.bmm(mu, attn)  # (B, n_mels, T_mel)
        h_y = torch.bmm(h, attn)  # (B, H, T_mel)
        if self.use_prior_loss:
            loss_prior = masked_mean(0.5 * (y - mu_y.float()) ** 2 + 0.5 * math.log(2 * math.pi), y_mask)
        else:
            loss_prior = zero

        y_f, mu_f, h_f, mask_f = y, mu_y, h_y, y_mask
        if max_flow_frames is not None and mel.size(2) > max_flow_frames:
            y_f, starts = commons.rand_slice_segments(y, mel_lengths, max_flow_frames)
            mu_f, h_f, mask_f = (commons.slice_segments(z, starts, max_flow_frames) for z in (mu_y, h_y, y_mask))
        cond = torch.cat([h_f, mu_f], dim=1)
        loss_flow = self.cfm.loss(y_f, mask_f, cond, mu_f, g)
        return dict(loss_flow=loss_flow, loss_dur=loss_dur, loss_prior=loss_prior, attn=attn, durations=durations)

    # -- inference ----------------------------------------------------------------------------------------

    def predict_durations(self, h, x_mask, g=None, duration_scale: float = 1.0) -> torch.Tensor:
        """Integer durations (B, T_text) = ceil(exp(logw) * duration_scale), at least 1 on valid tokens."""
        if self.duration_predictor is None:
            raise ValueError("model.use_duration_predictor is false: infer() needs durations (B, T_text) "
                             "from an external aligner or another model")
        logw = self.duration_predictor(h, x_mask, g).float()
        w = torch.ceil(torch.exp(logw) * duration_scale).clamp(min=1)
        return (w * x_mask.squeeze(1)).long()

    @torch.no_grad()
    def infer(self, text, text_lengths, sampling: SamplingConfig = SamplingConfig(), speakers=None,
              durations=None, generator: Generators = None):
        """text (B, T_text) long, text_lengths (B,) -> dict(mel (B, n_mels, T) fp32 de-normalized log-mel with
        LOG_MEL_FLOOR on padding, mel_lengths (B,), durations (B, T_text) long, nfe int).

        generator: None, one torch.Generator (noise drawn item by item in batch order), or a list with one
        generator per item (a batch then reproduces each item run alone with its generator).
        durations (B, T_text): use these instead of the duration predictor.
        """
        h, mu, x_mask, g = self._encode(text, text_lengths, speakers)
        if durations is None:
            durations = self.predict_durations(h, x_mask, g, sampling.duration_scale)
        else:
            durations = durations.long().clamp(min=0) * x_mask.squeeze(1).long()
        mel_lengths = durations.sum(1)
        t_max = max(int(mel_lengths.max()), 1)
        y_mask = commons.sequence_mask(mel_lengths, t_max).unsqueeze(1).to(h.dtype)
        attn = commons.durations_to_alignment(durations, x_mask.squeeze(1).bool(), t_max).to(h.dtype)
        mu_y, h_y = torch.bmm(mu, attn), torch.bmm(h, attn)
        x, nfe = self.cfm.sample(torch.cat([h_y, mu_y], dim=1), y_mask, mu_y, sampling, g, generator, self.n_mels)
        mel = torch.where(y_mask.bool(), self.denormalize(x).float(), torch.full_like(x, LOG_MEL_FLOOR))
        return dict(mel=mel, mel_lengths=mel_lengths, durations=durations, nfe=nfe)
