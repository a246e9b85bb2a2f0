"""The flow-matching objective (ConditionalFlowMatching) and the acoustic model FlowMatchingTTS: text ->
normalized mel, with the networks it combines (TextEncoder, DurationPredictor, FlowMatchingTransformer); their
blocks are in modules.py, the vocoder and the text -> waveform module in models.py.

    text ids --TextEncoder (ConvNeXt)--> h (B, H, T_text), mu (B, n_mels, T_text)
    train: MAS(log N(mel | mu)) -> hard alignment -> durations; DurationPredictor(h.detach()) ~ log durations
    infer: durations = round(exp(logw) * duration_scale), at least 1
    with model.prosody_conditioning: token prosody (pitch, voicing, energy: measured in training, predicted and
    edited at inference, prosody.py) is embedded and joins h (and so mu) after the alignment (FastPitch style)
    length regulation: h, mu -> frames; FlowMatchingTransformer v(x_t, t, [h_y, mu_y]) integrated from
    noise (or mu_y + noise, Grad-TTS style) to the normalized mel.

The model works on mel normalized with the dataset statistics `mel_mean` / `mel_std` (buffers, so they
travel with the weights); `forward` takes and `infer` returns de-normalized log-mel.
Every layer is masked, so padding never changes a result: a batch and its items one by one agree.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

import commons
import ode
from mel_processing import LOG_MEL_FLOOR  # log-mel of silence: fills padding of returned mels (re-exported)
from modules import AdaLNTransformerBlock, ChannelLayerNorm, ConvNeXtBlock, rotary_tables, timestep_embedding
from prosody import (N_FEATURES as PROSODY_FEATURES, apply_edit, harmonic_templates, loudness_gain, template_of,
                     token_prosody)
from sampling import NO_PROSODY, SamplingConfig

Rngs = Union[None, torch.Generator, Sequence[Optional[torch.Generator]]]
Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # v(x_t (B, C, T), t (B,) or ()) -> (B, C, T)
PROMPT_SPAN = (0.7, 1.0)  # fraction of a clip to fill when training with a prompt (Voicebox's 70-100%)
PROMPT_RATE_RANGE = (0.5, 2.0)  # bounds on the speaking-rate match to a reference clip
PROSODY_EMBED_LR_SCALE = 10.0  # the prosody embedding's learning rate beside a trained network (ProsodyEmbedding)


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


class ProsodyPredictor(DurationPredictor):
    """The duration predictor's stack predicting each token's normalised prosody (prosody.py: pitch, voiced
    fraction, energy) instead: forward(h.detach(), mask (B, 1, T_text), g) -> (B, 3, T_text)."""

    def __init__(self, in_channels: int, channels: int, kernel_size: int, n_layers: int, dropout: float = 0.1,
                 gin_channels: int = 0):
        super().__init__(in_channels, channels, kernel_size, n_layers, dropout, gin_channels)
        self.proj = nn.Conv1d(channels if n_layers else in_channels, PROSODY_FEATURES, 1)


class ProsodyEmbedding(nn.Module):
    """Token prosody into the text encoder's output: forward(tokens (B, 3, T_text) normalised (prosody.py),
    mask (B, 1, T_text), proj_mu_weight (n_mels, H, 1)) -> (dh (B, H, T_text), dmu (B, n_mels, T_text)).

    dh = conv(tokens), joined to h where the encoder's output is, and dmu = proj_mu's weights applied to dh (so
    mu + dmu is proj_mu(h + dh): the prior loss, a regression onto the mel, teaches the embedding what pitch and
    energy do) plus a learned per-channel gain on the harmonic template of each token's pitch (prosody.
    harmonic_templates: where the harmonics sit in the mel, so a pitch edit moves the harmonics the flow starts
    from). Both start at zero, so a model grown from one without prosody speaks as before, and learn at
    PROSODY_EMBED_LR_SCALE x the rate (training/train_utils.param_groups): at the base rate the embedding had
    barely moved after 1000 steps of fine-tuning. The template table is rebuilt from the config, not saved."""

    lr_scale = PROSODY_EMBED_LR_SCALE

    def __init__(self, hidden: int, data_cfg):
        super().__init__()
        self.conv = nn.Conv1d(PROSODY_FEATURES, hidden, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.template_gain = nn.Parameter(torch.zeros(1, data_cfg.n_mel_channels, 1))
        self.register_buffer("templates", harmonic_templates(data_cfg), persistent=False)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, proj_mu_weight: torch.Tensor):
        dh = self.conv(tokens) * mask
        template = template_of(tokens, self.templates.to(tokens.dtype))
        dmu = F.conv1d(dh, proj_mu_weight.to(dh.dtype)) + self.template_gain.to(dh.dtype) * template
        return dh, dmu * mask


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


@dataclass(frozen=True)
class ConditionDropout:
    """How training hides conditioning, per item (rates in [0, 1]; hps.train.cond_drop_rate etc.).

    cond_drop_rate: the velocity network sees no text / prior / prompt and no speaker (the unconditional
    model that classifier-free guidance subtracts). speaker_drop_rate: the whole model sees the null
    speaker (a zero embedding), which prompting uses for voices it never trained on. prompt_rate (models
    with model.prompt_context): a random 70-100% span is to be filled and the rest of the clip is given
    as context, so that a reference clip can set the voice at inference.
    """

    cond_drop_rate: float = 0.0
    speaker_drop_rate: float = 0.0
    prompt_rate: float = 0.0


@dataclass(frozen=True)
class Prompt:
    """A reference clip for prompting (Voicebox / F5-TTS infilling): its log-mel (1, n_mels, T_ref) (not
    normalized) and how many leading tokens of the text are its transcript."""

    mel: torch.Tensor
    n_tokens: int


# ----------------------------------------------------------------------------------------------------------
# Conditional flow matching


def _rng_list(rngs: Rngs, batch: int) -> List[Optional[torch.Generator]]:
    if rngs is None or isinstance(rngs, torch.Generator):
        return [rngs] * batch
    rng_list = list(rngs)
    if len(rng_list) != batch:
        raise ValueError(f"got {len(rng_list)} random generators for a batch of {batch}; pass one torch.Generator, "
                         f"one per item, or None")
    return rng_list


def per_item_noise(batch: int, channels: int, lengths: torch.Tensor, max_length: int, rngs: Rngs,
                   device, dtype) -> torch.Tensor:
    """Standard normal noise (B, C, T_max), drawn item by item as (C, T_i) and zero padded.

    Drawing each item at its own length makes an item's noise independent of the other items and of the
    padding: with one random generator per item (or a single one and a batch of one) a batch reproduces
    its items run alone.
    """
    noise = torch.zeros(batch, channels, max_length, device=device, dtype=dtype)
    for b, rng in enumerate(_rng_list(rngs, batch)):
        length = int(lengths[b])
        draw_device = rng.device if rng is not None else device
        noise[b, :, :length] = torch.randn(channels, length, generator=rng, device=draw_device).to(device, dtype)
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
             g: Optional[torch.Tensor] = None, rng: Optional[torch.Generator] = None,
             loss_mask: Optional[torch.Tensor] = None, target: Optional[Velocity] = None) -> torch.Tensor:
        """Masked MSE between predicted and target velocity, averaged over valid frames and channels.

        x1 (B, C, T) normalized mel, mask (B, 1, T), cond (B, C_cond, T), loss_mask (B, 1, T): the frames the
        loss counts (default: mask; prompted training counts only the frames to fill), mu (B, C, T) frame-level prior
        (required with prior_start; detached there: the prior is trained by the prior loss, not pulled around
        by the flow target). t ~ U(0, 1) per item; the noise is drawn item by item at its valid length
        (per_item_noise), so under a fixed seed the loss does not depend on how much padding the batch has.
        target: a velocity function (x_t, t (B,)) -> (B, C, T) to regress instead of the path's velocity
        (guidance distillation: a frozen teacher's guided velocity at the same x_t).
        """
        b = x1.size(0)
        t = torch.rand(b, generator=rng, device=rng.device if rng is not None else x1.device).to(x1)
        lengths = mask.reshape(b, -1).sum(1).round().long().cpu()  # one host sync, not one per item
        x0 = per_item_noise(b, x1.size(1), lengths, x1.size(2), rng, x1.device, x1.dtype)
        if self.prior_start:
            if mu is None:
                raise ValueError("prior_start is on: ConditionalFlowMatching.loss needs mu (B, n_mels, T)")
            x0 = x0 + mu.detach()
        x_t, u = self.interpolate(x0, x1, t)
        if target is not None:
            with torch.no_grad():
                u = target(x_t * mask, t)
        v = self.estimator(x_t * mask, mask, cond, t, g)
        return masked_mean((v.float() - u.float()) ** 2, mask if loss_mask is None else loss_mask)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, mask: torch.Tensor, mu: Optional[torch.Tensor] = None,
               sampling: SamplingConfig = SamplingConfig(), g: Optional[torch.Tensor] = None,
               rng: Rngs = None, n_channels: Optional[int] = None):
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
        x = per_item_noise(b, n_channels, lengths, t_max, rng, mask.device, torch.float32) * sampling.temperature
        if self.prior_start:
            if mu is None:
                raise ValueError("prior_start is on: ConditionalFlowMatching.sample needs mu (B, n_mels, T)")
            x = x + mu.float()
        state_mask = mask.float()
        velocity = self._guided_velocity(cond, mask, g, sampling.cfg_scale)

        x, nfe = ode.solve(velocity, x * state_mask, sampling.time_grid(mask.device), sampling.method)
        return x * state_mask, nfe

    def _guided_velocity(self, cond: torch.Tensor, mask: torch.Tensor, g: Optional[torch.Tensor], scale: float):
        """v(x_t, t) for the ODE. With scale > 0, classifier-free guidance v_c + scale * (v_c - v_u), where
        v_u sees no condition and no speaker (zeros, as condition dropout trained it); both halves run as one
        network call on twice the batch."""
        b = mask.size(0)
        if scale == 0:
            return lambda x_t, t: self.estimator(x_t, mask, cond, t.expand(b), g).float()
        cond2 = torch.cat([cond, torch.zeros_like(cond)])
        mask2 = torch.cat([mask, mask])
        g2 = None if g is None else torch.cat([g, torch.zeros_like(g)])

        def velocity(x_t, t):
            t = t.expand(b)  # one time for the batch (the ODE) or one per item (distillation)
            v = self.estimator(torch.cat([x_t, x_t]), mask2, cond2, torch.cat([t, t]), g2).float()
            v_cond, v_uncond = v[:b], v[b:]
            return v_cond + scale * (v_cond - v_uncond)
        return velocity


class GuidanceTeacher:
    """A frozen velocity net whose classifier-free guided velocity (at `scale`) is the training target of a
    student (guidance distillation, as in ZipVoice-Distill): the student then speaks with guidance's quality
    in one network pass per ODE step instead of a pass on twice the batch."""

    def __init__(self, cfm: ConditionalFlowMatching, scale: float):
        if scale <= 0:
            raise ValueError(f"a guidance teacher needs a scale > 0, got {scale}")
        self.cfm = cfm.eval().requires_grad_(False)
        self.scale = float(scale)

    def velocity(self, cond: torch.Tensor, mask: torch.Tensor, g: Optional[torch.Tensor]) -> Velocity:
        return self.cfm._guided_velocity(cond, mask, g, self.scale)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x (B, C, T) over the positions where mask (B, 1, T) is 1 (all channels)."""
    return (x * mask).sum() / (mask.sum() * x.size(1)).clamp(min=1)


def keep_mask(batch: int, drop_rate: float, like: torch.Tensor) -> torch.Tensor:
    """(B, 1, 1) of 0 (dropped, with probability drop_rate) or 1, in like's dtype and device."""
    return (torch.rand(batch, 1, 1, device=like.device) >= drop_rate).to(like.dtype)


def prompt_spans(y: torch.Tensor, mask: torch.Tensor, prompt_rate: float):
    """Training prompts: y (B, C, T) normalized mel, mask (B, 1, T) -> (context (B, C, T), to_fill (B, 1, T)).

    With probability prompt_rate an item gets a random contiguous span of 70-100% of its frames to fill and
    the rest of the clip as context; otherwise everything is to fill and the context is zero.
    """
    b, _, t = y.shape
    lengths = mask.reshape(b, -1).sum(1)
    prompted = torch.rand(b, device=y.device) < prompt_rate
    fraction = torch.empty(b, device=y.device).uniform_(*PROMPT_SPAN)
    span = torch.where(prompted, (lengths * fraction).ceil(), lengths)
    start = ((lengths - span) * torch.rand(b, device=y.device)).floor()
    frames = torch.arange(t, device=y.device).unsqueeze(0)
    in_span = (frames >= start.unsqueeze(1)) & (frames < (start + span).unsqueeze(1))
    to_fill = in_span.unsqueeze(1).to(mask.dtype) * mask
    return y * (mask - to_fill), to_fill


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


def frames_per_token(expected: torch.Tensor) -> torch.Tensor:
    """Whole frames (long) of expected durations (frames, float): rounded, at least 1 per token.

    Rounded, not ceil'd as in Grad-TTS / VITS: the ceiling adds half a frame per token, and with blanks
    between phonemes that made the demo voice speak 18% slower than its recordings (100 held-out sentences,
    WER 0.220 at 4 steps; rounded 0.183, speech 9% faster). Matching the recordings' rate
    (duration_scale 1.1) did not help the recogniser (2 steps: WER 0.167 -> 0.190). onnx_runtime.py applies
    the same rule in numpy."""
    return torch.round(expected).clamp(min=1).long()


def monotonic_alignment(mu: torch.Tensor, y: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
    """Monotonic alignment search: prior means mu (B, n_mels, T_text), normalized mel y (B, n_mels, T_mel),
    attn_mask (B, T_text, T_mel) -> hard alignment (B, T_text, T_mel) of the highest likelihood."""
    from monotonic_align import maximum_path  # numba: not needed by plain inference

    return maximum_path(gaussian_log_likelihood(mu, y), attn_mask)


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
        self.gin_channels = gin
        self.prompt_context = m.prompt_context
        self.emb_g = nn.Embedding(d.n_speakers, gin) if gin > 0 else None
        self.encoder = TextEncoder(n_vocab, m.hidden_channels, self.n_mels, m.text_encoder_layers,
                                   m.text_encoder_kernel, m.text_encoder_ff_mult, gin)
        self.duration_predictor = (DurationPredictor(m.hidden_channels, m.duration_predictor_channels,
                                                     m.duration_predictor_kernel, m.duration_predictor_layers,
                                                     gin_channels=gin)
                                   if m.use_duration_predictor else None)
        self.prosody_predictor, self.prosody_embed = None, None
        if m.prosody_conditioning:
            self.prosody_predictor = ProsodyPredictor(m.hidden_channels, m.duration_predictor_channels,
                                                      m.duration_predictor_kernel, m.duration_predictor_layers,
                                                      gin_channels=gin)
            self.prosody_embed = ProsodyEmbedding(m.hidden_channels, d)
        # The velocity net sees [x_t, h_y, mu_y] and, with prompt_context, a mel context (zero where to fill).
        cond_channels = m.hidden_channels + self.n_mels * (2 if m.prompt_context else 1)
        estimator = FlowMatchingTransformer(self.n_mels, cond_channels, m.flow_d_model,
                                            m.flow_nhead, m.flow_num_layers, m.flow_dim_feedforward,
                                            m.flow_dropout, gin)
        self.cfm = ConditionalFlowMatching(estimator, m.sigma_min, m.prior_start)

    # -- helpers ------------------------------------------------------------------------------------------

    def normalize(self, mel: torch.Tensor) -> torch.Tensor:
        return (mel - self.mel_mean) / self.mel_std

    def denormalize(self, mel: torch.Tensor) -> torch.Tensor:
        return mel * self.mel_std + self.mel_mean

    def _speaker(self, speakers: Optional[torch.Tensor], null_ok: bool = False, batch: int = 1
                 ) -> Optional[torch.Tensor]:
        """speakers (B,) long ids, or (B, n_speakers) float weights that blend the speakers' embeddings ->
        embedding (B, gin, 1); None for a single-speaker model. null_ok: speakers None gives the null speaker
        (zeros, what speaker dropout trained) for `batch` items."""
        if self.emb_g is None:
            return None
        if speakers is None:
            if null_ok:
                return self.emb_g.weight.new_zeros(batch, self.gin_channels, 1)
            raise ValueError(f"this model has {self.n_speakers} speakers: pass speakers (B,) long speaker ids")
        if speakers.is_floating_point():  # a blend (runtime/speaker_blend.py)
            return (speakers.to(self.emb_g.weight.dtype) @ self.emb_g.weight).unsqueeze(-1)
        return self.emb_g(speakers).unsqueeze(-1)  # (B, gin, 1)

    def with_prosody(self, h: torch.Tensor, mu: torch.Tensor, x_mask: torch.Tensor, tokens: torch.Tensor):
        """h (B, H, T_text), mu (B, n_mels, T_text) with normalised token prosody (B, 3, T_text) joined
        (ProsodyEmbedding). MAS and the duration predictor keep the plain h and mu (the token prosody needs the
        alignment first)."""
        dh, dmu = self.prosody_embed(tokens.to(h.dtype) * x_mask, x_mask, self.encoder.proj_mu.weight)
        return h + dh, mu + dmu

    def prosody_condition(self, h: torch.Tensor, mu: torch.Tensor, x_mask: torch.Tensor, g: Optional[torch.Tensor],
                          edit: torch.Tensor):
        """(h, mu) of the text at inference with the predicted token prosody, edited by edit (B, 3)
        (SamplingConfig.prosody_edit rows), for a model with prosody conditioning; (h, mu) as they are for one
        without, which cannot realise an edit (ValueError)."""
        if self.prosody_predictor is None:
            if bool((edit != edit.new_tensor([0.0, 1.0, 0.0])).any()):
                raise ValueError(NO_PROSODY)
            return h, mu
        predicted = self.prosody_predictor(h, x_mask, g).float()
        return self.with_prosody(h, mu, x_mask, apply_edit(predicted, x_mask, edit.to(predicted)))

    def _encode(self, text, text_lengths, speakers, null_ok: bool = False):
        g = self._speaker(speakers, null_ok, text.size(0))
        return self._encode_with(text, text_lengths, g)

    def _encode_with(self, text, text_lengths, g):
        x_mask = commons.sequence_mask(text_lengths, text.size(1)).unsqueeze(1).to(torch.float32)
        h, mu = self.encoder(text, x_mask, g)
        return h, mu, x_mask, g

    # -- training -----------------------------------------------------------------------------------------

    def forward(self, text, text_lengths, mel, mel_lengths, speakers=None, durations=None,
                max_flow_frames: Optional[int] = None, dropout: ConditionDropout = ConditionDropout(),
                teacher: Optional[GuidanceTeacher] = None, prosody: Optional[torch.Tensor] = None,
                gain_db: Optional[torch.Tensor] = None):
        """text (B, T_text) long, text_lengths (B,), mel (B, n_mels, T_mel) log-mel (not normalized),
        mel_lengths (B,), speakers (B,) long or None, durations (B, T_text) long from an external aligner
        or None (then MAS). max_flow_frames: the flow loss sees a random crop of at most this many frames
        (train.max_mel_frames; None: whole clips). dropout: ConditionDropout (what the flow may not see).
        teacher: regress its guided velocity instead of the path's (guidance distillation). prosody (B, 3, T_mel):
        the clips' frame prosody (prosody.frame_prosody, zero padded), required with model.prosody_conditioning.
        gain_db (B,): loudness augmentation (prosody.loudness_gain) of the mel and the prosody's energy, applied
        after the alignment (which sees the clips as recorded).

        Returns dict(loss_flow, loss_dur, loss_prior, loss_prosody (0 without prosody conditioning): scalar
        tensors; attn (B, T_text, T_mel) hard alignment; durations (B, T_text) long). loss_prior is the per-element Gaussian NLL *including* the
        0.5 log(2 pi) constant (so it reads ~1.42 for a unit-variance fit); loss_dur is 0 without a
        duration predictor and loss_prior 0 when model.use_prior_loss is false.
        """
        g = self._speaker(speakers)
        if g is not None and dropout.speaker_drop_rate > 0:
            g = g * keep_mask(g.size(0), dropout.speaker_drop_rate, g)
        h, mu, x_mask, g = self._encode_with(text, text_lengths, g)
        y_mask = commons.sequence_mask(mel_lengths, mel.size(2)).unsqueeze(1).to(x_mask)
        y = self.normalize(mel) * y_mask
        attn_mask = x_mask.transpose(1, 2) * y_mask  # (B, T_text, T_mel)
        with torch.no_grad():
            if durations is not None:
                durations = reconcile_durations(durations, x_mask.squeeze(1), mel_lengths)
                attn = commons.durations_to_alignment(durations, x_mask.squeeze(1).bool(), mel.size(2))
            else:
                attn = monotonic_alignment(mu, y, attn_mask)
            attn = attn * attn_mask
            durations = attn.sum(2).long()

        if gain_db is not None:
            if prosody is None:
                raise ValueError("gain_db augments the mel together with the prosody's energy: pass prosody too")
            mel, prosody = loudness_gain(mel, prosody, mel_lengths, gain_db)
            y = self.normalize(mel) * y_mask

        zero = mu.new_zeros(())
        if self.duration_predictor is not None:
            logw = self.duration_predictor(h.detach(), x_mask, g)
            # Targets are floored at one frame: inference never predicts fewer (external aligners may give 0).
            logw_target = torch.log(durations.clamp(min=1).float()) * x_mask.squeeze(1)
            loss_dur = ((logw.float() - logw_target) ** 2).sum() / x_mask.sum()
        else:
            loss_dur = zero

        loss_prosody, h_cond, mu_cond = zero, h, mu
        if self.prosody_predictor is not None:
            if prosody is None:
                raise ValueError("model.prosody_conditioning is on: forward needs prosody (B, 3, T_mel), the clips' "
                                 "frame prosody (prosody.frame_prosody; TextMelLoader provides it)")
            tokens = token_prosody(prosody, attn)
            predicted = self.prosody_predictor(h.detach(), x_mask, g).float()
            loss_prosody = masked_mean((predicted - tokens) ** 2, x_mask)
            h_cond, mu_cond = self.with_prosody(h, mu, x_mask, tokens)

        attn = attn.to(h.dtype)
        mu_y = torch.bmm(mu_cond, attn)  # (B, n_mels, T_mel)
        h_y = torch.bmm(h_cond, attn)  # (B, H, T_mel)
        if self.use_prior_loss:
            loss_prior = masked_mean(0.5 * (y - mu_y.float()) ** 2 + 0.5 * math.log(2 * math.pi), y_mask)
        else:
            loss_prior = zero

        y_f, mu_f, h_f, mask_f = y, mu_y, h_y, y_mask
        if max_flow_frames is not None and mel.size(2) > max_flow_frames:
            y_f, starts = commons.rand_slice_segments(y, mel_lengths, max_flow_frames)
            mu_f, h_f, mask_f = (commons.slice_segments(z, starts, max_flow_frames) for z in (mu_y, h_y, y_mask))
        parts, loss_mask = [h_f, mu_f], mask_f
        if self.prompt_context:
            context, loss_mask = prompt_spans(y_f, mask_f, dropout.prompt_rate)
            parts.append(context)
        cond, g_flow = torch.cat(parts, dim=1), g
        if dropout.cond_drop_rate > 0:
            keep = keep_mask(cond.size(0), dropout.cond_drop_rate, cond)
            cond, g_flow = cond * keep, (None if g is None else g * keep)
        target = None if teacher is None else teacher.velocity(cond, mask_f, g_flow)
        loss_flow = self.cfm.loss(y_f, mask_f, cond, mu_f, g_flow, loss_mask=loss_mask, target=target)
        return dict(loss_flow=loss_flow, loss_dur=loss_dur, loss_prior=loss_prior, loss_prosody=loss_prosody,
                    attn=attn, durations=durations)

    # -- inference ----------------------------------------------------------------------------------------

    @torch.no_grad()
    def align(self, text, text_lengths, mel, mel_lengths, speakers=None) -> torch.Tensor:
        """Durations (B, T_text) long of a recording's log-mel (B, n_mels, T_mel), found by MAS as in training;
        each row sums to its mel length. infer(durations=align(...)) makes a mel frame-aligned with the
        recording (teacher forcing, for fine-tuning a vocoder on generated mels)."""
        h, mu, x_mask, g = self._encode(text, text_lengths, speakers)
        y_mask = commons.sequence_mask(mel_lengths, mel.size(2)).unsqueeze(1).to(x_mask)
        attn = monotonic_alignment(mu, self.normalize(mel) * y_mask, x_mask.transpose(1, 2) * y_mask)
        return attn.sum(2).long()

    def predict_durations(self, h, x_mask, g=None, duration_scale: float = 1.0) -> torch.Tensor:
        """Integer durations (B, T_text) = round(exp(logw) * duration_scale), at least 1 on valid tokens
        (frames_per_token), 0 on padding."""
        if self.duration_predictor is None:
            raise ValueError("model.use_duration_predictor is false: infer() needs durations (B, T_text) "
                             "from an external aligner or another model")
        logw = self.duration_predictor(h, x_mask, g).float()
        return frames_per_token(torch.exp(logw) * duration_scale) * x_mask.squeeze(1).long()

    @torch.no_grad()
    def infer(self, text, text_lengths, sampling: SamplingConfig = SamplingConfig(), speakers=None,
              durations=None, rng: Rngs = None, prompt: Optional[Prompt] = None):
        """text (B, T_text) long, text_lengths (B,) -> dict(mel (B, n_mels, T) fp32 de-normalized log-mel with
        LOG_MEL_FLOOR on padding, mel_lengths (B,), durations (B, T_text) long, nfe int).

        rng: None, one torch.Generator (noise drawn item by item in batch order), or a list with one
        torch.Generator per item (a batch then reproduces each item run alone with its own).
        durations (B, T_text): use these instead of the duration predictor. prompt: continue a reference
        clip in its voice (a prompt_context model; the returned durations are then those of the new tokens).
        """
        if prompt is not None:
            return self._infer_prompted(text, text_lengths, prompt, sampling, speakers, rng)
        h, mu, x_mask, g = self._encode(text, text_lengths, speakers)
        if durations is None:
            durations = self.predict_durations(h, x_mask, g, sampling.duration_scale)
        else:
            durations = durations.long().clamp(min=0) * x_mask.squeeze(1).long()
        h, mu = self.prosody_condition(h, mu, x_mask, g, self._edit_rows(sampling, h))
        x, mel_lengths, nfe = self._decode(h, mu, x_mask, g, durations, sampling, rng)
        return dict(mel=self._to_log_mel(x, mel_lengths), mel_lengths=mel_lengths, durations=durations, nfe=nfe)

    @staticmethod
    def _edit_rows(sampling: SamplingConfig, h: torch.Tensor) -> torch.Tensor:
        """sampling's prosody edit as (B, 3) float32 rows for a batch like h (B, H, T_text)."""
        return torch.tensor([sampling.prosody_edit], device=h.device).expand(h.size(0), -1)

    def _decode(self, h, mu, x_mask, g, durations, sampling, rng, context=None):
        """Expand h, mu by durations (B, T_text) and integrate the flow -> (normalized mel (B, C, T), lengths, nfe).
        context (B, n_mels, T') normalized mel given to a prompt_context model (zero-padded to T)."""
        mel_lengths = durations.sum(1)
        t_max = max(int(mel_lengths.max()), 1)
        y_mask = commons.sequence_mask(mel_lengths, t_max).unsqueeze(1).to(h.dtype)
        attn = commons.durations_to_alignment(durations, x_mask.squeeze(1).bool(), t_max).to(h.dtype)
        mu_y, h_y = torch.bmm(mu, attn), torch.bmm(h, attn)
        parts = [h_y, mu_y]
        if self.prompt_context:
            full = mu_y.new_zeros(mu_y.shape)
            if context is not None:
                full[:, :, :context.size(2)] = context
            parts.append(full)
        x, nfe = self.cfm.sample(torch.cat(parts, dim=1), y_mask, mu_y, sampling, g, rng, self.n_mels)
        return x, mel_lengths, nfe

    def _to_log_mel(self, x: torch.Tensor, mel_lengths: torch.Tensor) -> torch.Tensor:
        """Normalized mel (B, C, T) -> de-normalized log-mel with LOG_MEL_FLOOR past each length."""
        y_mask = commons.sequence_mask(mel_lengths, x.size(2)).unsqueeze(1)
        return torch.where(y_mask, self.denormalize(x).float(), torch.full_like(x, LOG_MEL_FLOOR))

    def _infer_prompted(self, text, text_lengths, prompt: Prompt, sampling, speakers, rng):
        """Continue a reference clip: text = its transcript's prompt.n_tokens tokens + the text to speak.

        The transcript is aligned to the clip by MAS (as in training); the new tokens' durations come from
        the duration predictor, rescaled to the clip's speaking rate. Returns only the new part."""
        if not self.prompt_context:
            raise ValueError("this model was not trained with a prompt context (model.prompt_context false): "
                             "it cannot take a reference clip")
        if text.size(0) != 1:
            raise ValueError(f"prompted synthesis takes one text at a time, got a batch of {text.size(0)}")
        if self.duration_predictor is None:
            raise ValueError("model.use_duration_predictor is false: prompted synthesis needs the duration predictor")
        n_ref, n_all = prompt.n_tokens, int(text_lengths[0])
        if not 0 < n_ref < n_all:
            raise ValueError(f"the reference transcript has {n_ref} tokens of the {n_all}: the text to speak "
                             f"must follow a non-empty transcript")
        h, mu, x_mask, g = self._encode(text, text_lengths, speakers, null_ok=True)
        ref = self.normalize(prompt.mel.to(mu))
        ref_frames = ref.size(2)
        if ref_frames < n_ref:
            raise ValueError(f"the reference clip has {ref_frames} frames for {n_ref} transcript tokens: "
                             f"it is too short for its transcript (or the transcript is wrong)")
        attn = monotonic_alignment(mu[:, :, :n_ref], ref, mu.new_ones(1, n_ref, ref_frames))
        ref_durations = attn.sum(2).long()
        predicted = torch.exp(self.duration_predictor(h, x_mask, g).float()[0])
        rate = (ref_frames / predicted[:n_ref].sum()).clamp(*PROMPT_RATE_RANGE)
        new = frames_per_token(predicted[n_ref:] * rate * sampling.duration_scale)
        durations = torch.cat([ref_durations[0], new]).unsqueeze(0)
        h, mu = self.prosody_condition(h, mu, x_mask, g, self._edit_rows(sampling, h))
        x, mel_lengths, nfe = self._decode(h, mu, x_mask, g, durations, sampling, rng, context=ref)
        x = x[:, :, ref_frames:]
        mel_lengths = mel_lengths - ref_frames
        return dict(mel=self._to_log_mel(x, mel_lengths), mel_lengths=mel_lengths, durations=new.unsqueeze(0), nfe=nfe)
