"""The flow-matching objective (ConditionalFlowMatching) and the acoustic model FlowMatchingTTS: text ->
normalized mel. The networks it combines are in models.py (re-exported here), their blocks in modules.py.

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

import commons
import ode
from mel_processing import LOG_MEL_FLOOR  # log-mel of silence: fills padding of returned mels (re-exported)
from models import DurationPredictor, FlowMatchingTransformer, TextEncoder  # noqa: F401 (also re-exported)
from modules import ConvNeXtBlock  # noqa: F401  (re-exported: the mission's names live here too)
from sampling import SamplingConfig

Generators = Union[None, torch.Generator, Sequence[Optional[torch.Generator]]]


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
