"""Acoustic model core: ODE solvers and time grids against analytic fields, the CFM objective against its
exact target, padding invariance of batched inference, and a tiny model overfitting two real clips."""
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import commons
import mel_processing
import ode
from conftest import make_tiny_hps
from flow_matching import (
    LOG_MEL_FLOOR,
    ConditionalFlowMatching,
    FlowMatchingTTS,
    gaussian_log_likelihood,
    reconcile_durations,
)
from sampling import SamplingConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: one thread is faster and immune to other processes competing for the cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# ---------------------------------------------------------------------------------------------- ODE solvers


def constant_field(c):
    return lambda x, t: torch.full_like(x, c)


@pytest.mark.parametrize("sway_coef", [None, -1.0, 0.7])
def test_euler_exact_on_constant_field(sway_coef):
    x0 = torch.tensor([[0.3, -1.2]], dtype=torch.float64)
    for n in (1, 7):
        grid = ode.time_grid(n, sway_coef, dtype=torch.float64)
        x, nfe = ode.euler(constant_field(2.5), x0, grid)
        torch.testing.assert_close(x, x0 + 2.5, rtol=0, atol=1e-12)
        assert nfe == n


@pytest.mark.parametrize("sway_coef", [None, -1.0])
def test_midpoint_exact_on_field_linear_in_t(sway_coef):
    # dx/dt = a + b t  =>  x(1) = x(0) + a + b / 2; midpoint integrates linear-in-t fields exactly.
    a, b = 0.4, -3.0
    x0 = torch.tensor([1.0, 2.0], dtype=torch.float64)
    for n in (1, 3):
        grid = ode.time_grid(n, sway_coef, dtype=torch.float64)
        x, nfe = ode.midpoint(lambda x, t: torch.full_like(x, a) + b * t, x0, grid)
        torch.testing.assert_close(x, x0 + a + b / 2, rtol=0, atol=1e-12)
        assert nfe == 2 * n
        # Euler is not exact here: the test field really distinguishes the two solvers.
        x_euler, _ = ode.euler(lambda x, t: torch.full_like(x, a) + b * t, x0, grid)
        assert (x_euler - (x0 + a + b / 2)).abs().max() > 1e-3


@pytest.mark.parametrize("method,order", [("euler", 1), ("midpoint", 2)])
def test_convergence_order_on_exponential(method, order):
    # dx/dt = x from x(0) = 1 gives e at t = 1. Doubling the steps divides the error by 2^order.
    x0 = torch.ones(1, dtype=torch.float64)
    errors = []
    for n in (16, 32, 64):
        x, _ = ode.solve(lambda x, t: x, x0, ode.time_grid(n, dtype=torch.float64), method)
        errors.append(abs(float(x) - math.e))
    for coarse, fine in zip(errors[:-1], errors[1:]):
        assert math.log2(coarse / fine) == pytest.approx(order, abs=0.15)


def test_solvers_evaluate_exactly_on_the_grid():
    grid = ode.time_grid(4, -1.0, dtype=torch.float64)
    seen = []

    def f(x, t):
        seen.append(float(t))
        return torch.zeros_like(x)

    ode.euler(f, torch.zeros(1), grid)
    assert seen == pytest.approx(grid[:-1].tolist())
    seen.clear()
    ode.midpoint(f, torch.zeros(1), grid)
    mids = ((grid[:-1] + grid[1:]) / 2).tolist()
    assert seen == pytest.approx([v for pair in zip(grid[:-1].tolist(), mids) for v in pair])
    with pytest.raises(ValueError, match="unknown ODE method"):
        ode.solve(f, torch.zeros(1), grid, "rk45")


@pytest.mark.parametrize("schedule,coefs", [("quadratic", [-1.0, -0.5, 0.0, 0.5, 1.0]),
                                            ("cosine", [-1.0, -0.3, 0.0, 1.0, 1.75])])
def test_sway_grid_monotonic_from_0_to_1(schedule, coefs):
    for s in coefs:
        for n in (1, 2, 10, 32):
            grid = ode.time_grid(n, s, schedule, dtype=torch.float64)
            assert grid.shape == (n + 1,)
            assert grid[0] == 0.0 and grid[-1] == 1.0
            assert (torch.diff(grid) > 0).all(), (s, grid)


def test_sway_minus_one_is_t_squared_and_bad_coefficients_rejected():
    uniform = torch.linspace(0, 1, 11, dtype=torch.float64)
    torch.testing.assert_close(ode.time_grid(10, -1.0, dtype=torch.float64), uniform ** 2)
    for s in (-2.0, 1.01, -1.5):
        with pytest.raises(ValueError, match="folds back"):
            ode.time_grid(10, s)
    with pytest.raises(ValueError, match="folds back"):
        ode.time_grid(10, 1.8, "cosine")
    with pytest.raises(ValueError, match="unknown sway schedule"):
        ode.time_grid(10, -1.0, "linear")
    with pytest.raises(ValueError, match="positive integer"):
        ode.time_grid(0)


# ---------------------------------------------------------------------------------------------- CFM objective


class OracleVelocity(torch.nn.Module):
    """Knows the target x1 (passed as the condition) and returns the exact conditional velocity.

    From x_t = (1 - (1 - s) t) x0 + t x1 and u = x1 - (1 - s) x0: u = x1 - (1 - s) (x_t - t x1) / (1 - (1 - s) t).
    """

    def __init__(self, sigma_min, wrong=False):
        super().__init__()
        self.s, self.wrong = sigma_min, wrong

    def forward(self, x, mask, cond, t, g=None):
        t = t.view(-1, 1, 1)
        u = cond - (1 - self.s) * (x - t * cond) / (1 - (1 - self.s) * t)
        return (u + 0.1 if self.wrong else u) * mask


class ConditionAsVelocity(torch.nn.Module):
    """A fixed, wrong velocity: the condition itself."""

    def forward(self, x, mask, cond, t, g=None):
        return cond * mask


def test_cfm_loss_zero_at_exact_target_and_ignores_padding():
    torch.manual_seed(0)
    x1 = torch.randn(3, 5, 20, dtype=torch.float64)
    mask = commons.sequence_mask(torch.tensor([20, 13, 4]), 20).unsqueeze(1).double()
    mu = torch.randn_like(x1)
    for prior_start in (False, True):
        cfm = ConditionalFlowMatching(OracleVelocity(1e-4), 1e-4, prior_start)
        assert float(cfm.loss(x1 * mask, mask, x1 * mask, mu)) < 1e-20
        wrong = ConditionalFlowMatching(OracleVelocity(1e-4, wrong=True), 1e-4, prior_start)
        assert float(wrong.loss(x1 * mask, mask, x1 * mask, mu)) == pytest.approx(0.01, rel=1e-6)
    # Garbage in padded frames of the target must not change the loss.
    cfm = ConditionalFlowMatching(ConditionAsVelocity(), 1e-4)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = cfm.loss(x1 * mask, mask, x1 * mask, rng=g1)
    b = cfm.loss(x1 * mask + 100 * (1 - mask), mask, x1 * mask, rng=g2)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("method", ["euler", "midpoint"])
def test_sampling_with_exact_velocity_reaches_the_target(method):
    # OT paths are straight lines, so with the exact velocity any fixed-grid solver lands on
    # x1 + sigma_min * x0 whatever the grid.
    torch.manual_seed(1)
    x1 = torch.randn(2, 4, 9, dtype=torch.float64)
    mask = torch.ones(2, 1, 9, dtype=torch.float64)
    cfm = ConditionalFlowMatching(OracleVelocity(1e-4), 1e-4, prior_start=False)
    x, nfe = cfm.sample(x1, mask, sampling=SamplingConfig(steps=5, sway_coef=-1.0, method=method), n_channels=4,
                        rng=torch.Generator().manual_seed(0))
    assert x.dtype == torch.float32  # the ODE state is kept in fp32
    torch.testing.assert_close(x.double(), x1, atol=2e-3, rtol=0)
    assert nfe == (5 if method == "euler" else 10)


def test_gaussian_log_likelihood_matches_direct_formula():
    torch.manual_seed(2)
    mu, y = torch.randn(2, 6, 4), torch.randn(2, 6, 7)
    direct = (-0.5 * (y.unsqueeze(2) - mu.unsqueeze(3)) ** 2 - 0.5 * math.log(2 * math.pi)).sum(1)
    torch.testing.assert_close(gaussian_log_likelihood(mu, y), direct, atol=1e-4, rtol=1e-5)


def test_reconcile_durations_sums_to_mel_length():
    d = torch.tensor([[3, 0, 4, 2], [5, 5, 0, 0], [1, 1, 1, 0]])
    text_mask = commons.sequence_mask(torch.tensor([4, 2, 3]), 4)
    out = reconcile_durations(d, text_mask, torch.tensor([10, 7, 3]))
    assert out.tolist() == [[3, 0, 4, 3], [5, 2, 0, 0], [1, 1, 1, 0]]


# ---------------------------------------------------------------------------------------------- full model


def tiny_hps(**overrides):
    """The tiny test config with a 64-wide acoustic model (the overfit check needs that much capacity)."""
    sizes = dict(hidden_channels=64, text_encoder_layers=3, text_encoder_kernel=5, text_encoder_ff_mult=2,
                 duration_predictor_channels=64, duration_predictor_layers=2, flow_d_model=64, flow_nhead=2,
                 flow_num_layers=2, flow_dim_feedforward=128, flow_dropout=0.1, mel_mean=0.0, mel_std=1.0)
    return make_tiny_hps(**{**sizes, **overrides})


def randomize(model, seed=0, scale=0.05):
    """Perturb every parameter so zero-initialised layers (gates, output projection) are active."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return model


def test_batched_inference_matches_items_alone():
    torch.manual_seed(0)
    model = randomize(FlowMatchingTTS(50, tiny_hps(flow_dropout=0.1))).eval()
    lengths = [11, 4, 8]
    text = torch.zeros(3, 11, dtype=torch.long)
    for b, n in enumerate(lengths):
        text[b, :n] = torch.randint(1, 50, (n,))
    text_lengths = torch.tensor(lengths)
    for method in ("euler", "midpoint"):
        batch = model.infer(text, text_lengths, sampling=SamplingConfig(steps=4, method=method),
                            rng=[torch.Generator().manual_seed(10 + b) for b in range(3)])
        assert batch["nfe"] == (4 if method == "euler" else 8)
        assert (batch["durations"][text_lengths.unsqueeze(1) > torch.arange(11)] >= 1).all()
        for b, n in enumerate(lengths):
            alone = model.infer(text[b:b + 1, :n], text_lengths[b:b + 1],
                                sampling=SamplingConfig(steps=4, method=method),
                                rng=torch.Generator().manual_seed(10 + b))
            t = int(alone["mel_lengths"][0])
            assert int(batch["mel_lengths"][b]) == t
            assert torch.equal(batch["durations"][b, :n], alone["durations"][0])
            torch.testing.assert_close(batch["mel"][b, :, :t], alone["mel"][0], atol=1e-4, rtol=0)
            assert (batch["mel"][b, :, t:] == LOG_MEL_FLOOR).all()
        # The sampled mel really depends on the noise (the check above is not vacuous).
        other = model.infer(text, text_lengths, sampling=SamplingConfig(steps=4, method=method),
                            rng=[torch.Generator().manual_seed(99 + b) for b in range(3)])
        assert (other["mel"] - batch["mel"]).abs().max() > 1e-2


def test_training_forward_is_padding_invariant_and_uses_external_durations():
    torch.manual_seed(0)
    model = randomize(FlowMatchingTTS(30, tiny_hps(flow_dropout=0.0))).eval()
    text = torch.randint(1, 30, (2, 6))
    text_lengths = torch.tensor([6, 4])
    mel = torch.randn(2, 80, 25)
    mel_lengths = torch.tensor([25, 17])
    torch.manual_seed(5)
    out = model(text, text_lengths, mel, mel_lengths)
    assert (out["durations"].sum(1) == mel_lengths).all()
    assert torch.equal(out["attn"].sum(2).long(), out["durations"])
    # Item 1 alone: same alignment (MAS and prior loss see no padding).
    alone = model(text[1:, :4], text_lengths[1:], mel[1:, :, :17], mel_lengths[1:])
    assert torch.equal(alone["durations"][0], out["durations"][1, :4])
    # More padding, filled with garbage tokens and loud frames: same alignment and the same losses. All
    # three are deterministic under a fixed seed: the flow loss draws t per item and the noise item by item
    # at its valid length, so the padding does not shift the random draws (max_mel_frames is None here, so
    # no random crop either). Without the text/mel masks the garbage would change every one of them.
    padded_text = torch.cat([text, torch.randint(1, 30, (2, 3))], 1)
    padded_mel = torch.cat([mel, torch.zeros(2, 80, 9)], 2)
    padded_mel[1, :, 17:] = 40 * torch.randn(80, 25 + 9 - 17)
    padded_mel[0, :, 25:] = 40 * torch.randn(80, 9)
    torch.manual_seed(5)
    padded = model(padded_text, text_lengths, padded_mel, mel_lengths)
    assert torch.equal(padded["durations"][:, :6], out["durations"]) and not padded["durations"][:, 6:].any()
    for key in ("loss_dur", "loss_prior", "loss_flow"):
        torch.testing.assert_close(padded[key], out[key], atol=1e-5, rtol=1e-5, msg=key)
    # The flow loss really depends on the seeded draws, so its equality above is not vacuous.
    torch.manual_seed(6)
    again = model(text, text_lengths, mel, mel_lengths)["loss_flow"]
    assert abs(again.item() - out["loss_flow"].item()) > 1e-4
    # External durations bypass MAS.
    durations = torch.tensor([[5, 5, 5, 5, 3, 2], [4, 4, 4, 5, 0, 0]])
    ext = model(text, text_lengths, mel, mel_lengths, durations=durations)
    assert torch.equal(ext["durations"], durations)
    assert torch.equal(ext["attn"], commons.durations_to_alignment(durations, text_lengths.unsqueeze(1) >
                                                                   torch.arange(6), 25))


def test_infer_needs_durations_without_duration_predictor():
    model = FlowMatchingTTS(20, tiny_hps(use_duration_predictor=False)).eval()
    text, lengths = torch.randint(1, 20, (1, 5)), torch.tensor([5])
    with pytest.raises(ValueError, match="use_duration_predictor is false"):
        model.infer(text, lengths)
    out = model.infer(text, lengths, sampling=SamplingConfig(steps=2), durations=torch.tensor([[2, 3, 1, 1, 4]]))
    assert out["mel"].shape == (1, 80, 11)
    train = model(text, lengths, torch.randn(1, 80, 12), torch.tensor([12]))
    assert float(train["loss_dur"]) == 0.0


def test_fresh_model_with_prior_start_returns_prior_mean_at_zero_temperature():
    # Zero-initialised output projection: v = 0, so the ODE stays at its start mu_y (+ 0 noise).
    hps = tiny_hps(mel_mean=-5.0, mel_std=2.0)
    model = FlowMatchingTTS(20, hps).eval()
    text, lengths = torch.randint(1, 20, (1, 5)), torch.tensor([5])
    durations = torch.tensor([[2, 3, 1, 1, 4]])
    out = model.infer(text, lengths, sampling=SamplingConfig(temperature=0.0, steps=3), durations=durations)
    h, mu, x_mask, _ = model._encode(text, lengths, None)
    mu_y = torch.bmm(mu, commons.durations_to_alignment(durations, x_mask.squeeze(1).bool()))
    torch.testing.assert_close(out["mel"], mu_y * 2.0 - 5.0)


def test_crop_speakers_and_bf16_autocast():
    hps = tiny_hps(gin_channels=16, n_speakers=3)
    model = FlowMatchingTTS(20, hps)
    seen = []
    model.cfm.estimator.register_forward_hook(lambda mod, args, out: seen.append(out.shape[-1]))
    text, lengths = torch.randint(1, 20, (2, 5)), torch.tensor([5, 3])
    mel, mel_lengths = torch.randn(2, 80, 40), torch.tensor([40, 12])
    with pytest.raises(ValueError, match="speakers"):
        model(text, lengths, mel, mel_lengths)
    out = model(text, lengths, mel, mel_lengths, speakers=torch.tensor([0, 2]), max_flow_frames=16)
    assert seen == [16] and out["attn"].shape == (2, 5, 40)
    sum(out[k] for k in ("loss_flow", "loss_dur", "loss_prior")).backward()
    assert model.emb_g.weight.grad.abs().sum() > 0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(text, lengths, mel, mel_lengths, speakers=torch.tensor([1, 1]))
    assert all(torch.isfinite(out[k]) for k in ("loss_flow", "loss_dur", "loss_prior"))
    model.eval()
    randomize(model)
    a = model.infer(text, lengths, sampling=SamplingConfig(steps=2), speakers=torch.tensor([0, 0]),
                    rng=[torch.Generator().manual_seed(0)] * 2,
                    durations=torch.tensor([[2, 2, 2, 2, 2], [3, 3, 3, 0, 0]]))
    b = model.infer(text, lengths, sampling=SamplingConfig(steps=2), speakers=torch.tensor([2, 2]),
                    rng=[torch.Generator().manual_seed(0)] * 2,
                    durations=torch.tensor([[2, 2, 2, 2, 2], [3, 3, 3, 0, 0]]))
    assert (a["mel"] - b["mel"]).abs().max() > 1e-3  # the speaker changes the output
    with torch.autocast("cpu", dtype=torch.bfloat16):
        c = model.infer(text, lengths, sampling=SamplingConfig(steps=2), speakers=torch.tensor([0, 0]),
                        rng=[torch.Generator().manual_seed(0)] * 2,
                        durations=torch.tensor([[2, 2, 2, 2, 2], [3, 3, 3, 0, 0]]))
    assert c["mel"].dtype == torch.float32
    assert (c["mel"] - a["mel"]).abs().max() < 0.1  # bf16 network, same result up to rounding


# ---------------------------------------------------------------------------------------------- overfit


DATA_DIR = ROOT / "tests" / "data"
# The two shortest fixture clips (163 and 442 frames): attention cost grows with length squared.
OVERFIT_CLIPS = ("wavs/LJ001-0002.wav", "wavs/LJ001-0004.wav")


def load_fixture_clips():
    """[(wav (T,) float32, phoneme ids with blanks)] for OVERFIT_CLIPS, from tests/data/filelist.txt."""
    from text import BLANK_ID, cleaned_text_to_sequence, intersperse

    phonemes = dict(line.rstrip("\n").split("|", 1) for line in (DATA_DIR / "filelist.txt").open(encoding="utf-8"))
    clips = []
    for rel in OVERFIT_CLIPS:
        wav, sr = sf.read(DATA_DIR / rel, dtype="float32")
        assert sr == 22050
        clips.append((wav, intersperse(cleaned_text_to_sequence(phonemes[rel]), BLANK_ID)))
    return clips


def test_tiny_model_overfits_two_real_clips():
    # d_model 128 memorises per-frame detail in a few hundred steps; d_model 64 stalls near the loss of
    # a model that knows only the prior mean (about 0.5 here).
    hps = tiny_hps(flow_dropout=0.0, flow_d_model=128, flow_dim_feedforward=256)
    mels, ids = [], []
    for wav, token_ids in load_fixture_clips():
        mels.append(mel_processing.mel_from_config(torch.from_numpy(wav).unsqueeze(0), hps.data)[0])
        ids.append(token_ids)
    all_frames = torch.cat(mels, dim=1)
    hps = hps.replace(mel_mean=float(all_frames.mean()), mel_std=float(all_frames.std()))
    mel_lengths = torch.tensor([m.size(1) for m in mels])
    text_lengths = torch.tensor([len(i) for i in ids])
    mel = torch.full((2, 80, int(mel_lengths.max())), LOG_MEL_FLOOR)
    text = torch.zeros(2, int(text_lengths.max()), dtype=torch.long)
    for b in range(2):
        mel[b, :, :mel_lengths[b]] = mels[b]
        text[b, :text_lengths[b]] = torch.tensor(ids[b])
    n_vocab = int(text.max()) + 1

    torch.manual_seed(0)
    model = FlowMatchingTTS(n_vocab, hps)

    def eval_losses():
        model.eval()
        with torch.no_grad():
            torch.manual_seed(1234)  # same t and noise every time
            outs = [model(text, text_lengths, mel, mel_lengths) for _ in range(4)]
        model.train()
        return (sum(float(o["loss_flow"]) for o in outs) / 4, outs[0])

    flow_start, _ = eval_losses()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.0)
    for step in range(250):
        out = model(text, text_lengths, mel, mel_lengths)
        loss = out["loss_flow"] + out["loss_dur"] + out["loss_prior"]
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    flow_end, final = eval_losses()
    assert flow_end < flow_start / 5, (flow_start, flow_end)

    model.eval()
    with torch.no_grad():
        h, mu, x_mask, g = model._encode(text, text_lengths, None)
        predicted = model.duration_predictor(h, x_mask, g).exp()
    mas = final["durations"].float()
    valid = x_mask.squeeze(1).bool()
    log_error = (predicted.log() - mas.clamp(min=1).log()).abs()[valid].mean()
    print(f"flow loss {flow_start:.3f} -> {flow_end:.3f}; mean |log duration error| {float(log_error):.3f}")
    assert log_error < 0.35, float(log_error)  # untrained: ~1 (predicts 1 frame per token)
    # Total predicted length close to the real one.
    total = model.infer(text, text_lengths, sampling=SamplingConfig(steps=4))["mel_lengths"].float()
    assert ((total - mel_lengths.float()).abs() / mel_lengths.float() < 0.3).all(), (total, mel_lengths)

    gen = model.infer(text, text_lengths, sampling=SamplingConfig(steps=10), durations=final["durations"],
                      rng=[torch.Generator().manual_seed(b) for b in range(2)])["mel"]
    for b, other in ((0, 1), (1, 0)):
        n = int(mel_lengths[b])
        common = min(n, int(mel_lengths[other]))
        own = (gen[b, :, :n] - mels[b]).abs().mean()
        cross = (gen[b, :, :common] - mels[other][:, :common]).abs().mean()
        print(f"clip {b}: L1 to own mel {float(own):.3f}, to the other clip's {float(cross):.3f}")
        assert own < 0.5 * cross, (b, float(own), float(cross))


def test_epss_grid_is_dense_near_the_noise_end():
    """F5-TTS's pruned grids where it defines them, halving steps towards t = 0 otherwise."""
    np.testing.assert_array_equal(ode.time_grid_array(5, schedule="epss"), np.array([0, 2, 4, 8, 16, 32]) / 32)
    np.testing.assert_array_equal(ode.time_grid_array(7, schedule="epss"), np.array([0, 2, 4, 6, 8, 16, 24, 32]) / 32)
    np.testing.assert_array_equal(ode.time_grid_array(3, schedule="epss"), [0, 0.25, 0.5, 1])
    for n in range(1, 17):
        grid = ode.time_grid_array(n, -1.0, "epss")  # the sway coefficient does not apply
        assert len(grid) == n + 1 and grid[0] == 0 and grid[-1] == 1 and (np.diff(grid) > 0).all()
