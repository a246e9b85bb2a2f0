"""MB-iSTFT vocoder: PQMF and iSTFT oracles on real speech, exact output length, config checks, ONNX,
losses, discriminators, and a small generator that overfits one real clip."""
from __future__ import annotations

import dataclasses
import io
import math
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import soundfile as sf
import torch

from config import ConfigError, HParams
from conftest import make_tiny_hps
from training.discriminators import Discriminator
from losses import (EnvelopeLoss, MelLoss, MultiResolutionSTFTLoss, SUB_BAND_RESOLUTIONS,
                    VocoderReconstructionLoss, discriminator_loss, feature_loss, generator_loss)
from mel_processing import mel_from_config
from models import MultiBandISTFTGenerator
from pqmf import PQMF, optimal_cutoff
from stft import ConvTransposeISTFT, TorchISTFT, hann_window

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def one_thread():
    """Run these small-tensor tests on one thread: on a busy 2-core box, 2 OpenMP threads that wait on
    each other were measured ~15x slower per training step than one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load_clip(name: str = "LJ001-0001") -> torch.Tensor:
    """Real LJSpeech clip as (1, 1, T) float32 at 22050 Hz."""
    wav, sr = sf.read(DATA / "wavs" / f"{name}.wav", dtype="float32")
    assert sr == 22050
    return torch.from_numpy(wav).view(1, 1, -1)


def small_hps(**overrides) -> HParams:
    """The tiny test config with a resblock-2 generator of two kernels."""
    return make_tiny_hps(**{**dict(upsample_initial_channel=32, resblock="2", resblock_kernel_sizes=[3, 7],
                                   resblock_dilation_sizes=[[1, 3], [1, 3]]), **overrides})


def unvalidated(**model) -> HParams:
    """small_hps with model keys changed without config.validate (as code that builds HParams itself would)."""
    base = small_hps()
    return HParams(base.train, base.data, dataclasses.replace(base.model, **model))


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference ** 2) / np.sum((reference - estimate) ** 2)))


# ---------------------------------------------------------------------------------------------- PQMF

@pytest.mark.parametrize("subbands", [4, 8])
def test_pqmf_reconstructs_real_speech(subbands):
    y = load_clip()
    y = y[..., : y.size(-1) // subbands * subbands]
    pqmf = PQMF(subbands, taps=62 if subbands == 4 else 124, beta=9.0)  # cutoff chosen automatically
    bands = pqmf.analysis(y)
    assert bands.shape == (1, subbands, y.size(-1) // subbands)
    out = pqmf.synthesis(bands)
    assert out.shape == y.shape
    ref, est = y[0, 0].numpy(), out[0, 0].numpy()
    edge = 2 * pqmf.taps  # skip the zero-padded edges
    # Measure the bank's delay (best SNR over lags) and compensate it; the centred filters should give 0.
    snrs = {lag: snr_db(ref[edge:-edge], est[edge + lag:len(est) - edge + lag]) for lag in range(-8, 9)}
    delay = max(snrs, key=snrs.get)
    print(f"PQMF {subbands} bands, cutoff {pqmf.cutoff:.4f}: delay {delay} samples, SNR {snrs[delay]:.1f} dB")
    assert delay == 0
    assert snrs[delay] >= 30.0


def test_pqmf_cutoff_choice_matters():
    """The MB-iSTFT-VITS cutoff 0.15 is ~22 dB; the optimised one (~0.142 for 4 bands, 62 taps) is far better."""
    y = load_clip()[..., :44100]
    c = optimal_cutoff(4, 62, 9.0)
    assert 0.138 < c < 0.146
    results = {}
    for cutoff in (0.15, c):
        pqmf = PQMF(4, 62, cutoff, 9.0)
        out = pqmf.synthesis(pqmf.analysis(y))
        results[cutoff] = snr_db(y[0, 0, 124:-124].numpy(), out[0, 0, 124:-124].numpy())
    print(f"SNR at cutoff 0.15: {results[0.15]:.1f} dB, at {c:.4f}: {results[c]:.1f} dB")
    assert results[c] > results[0.15] + 15


# ---------------------------------------------------------------------------------------------- iSTFT

@pytest.mark.parametrize("n_fft,hop", [(16, 4), (16, 8), (1024, 256)])
def test_conv_istft_matches_torch_istft_on_speech(n_fft, hop):
    y = load_clip()[0, :, :30000]
    spec = torch.stft(y, n_fft, hop, window=hann_window(n_fft), center=True, return_complex=True)
    magnitude, phase = spec.abs(), spec.angle()
    frames = spec.size(-1)
    reference = torch.istft(spec, n_fft, hop, window=hann_window(n_fft), center=True, length=frames * hop)
    conv = ConvTransposeISTFT(n_fft, hop)(magnitude, phase)
    torch_impl = TorchISTFT(n_fft, hop)(magnitude, phase)
    assert conv.shape == reference.shape == (1, frames * hop)
    assert (conv - reference).abs().max() < 1e-3
    assert (torch_impl - reference).abs().max() < 1e-5
    with torch.autocast("cpu", dtype=torch.bfloat16):  # stays fp32 inside autocast
        conv_autocast = ConvTransposeISTFT(n_fft, hop)(magnitude, phase)
    assert conv_autocast.dtype == torch.float32 and (conv_autocast - conv).abs().max() < 1e-6
    # And the oracle: STFT -> iSTFT gives the speech back.
    n = min(y.size(-1), conv.size(-1))
    assert (conv[:, :n] - y[:, :n]).abs().max() < 1e-3


def test_conv_istft_exports_to_onnx():
    module = ConvTransposeISTFT(16, 4).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation notice
        torch.onnx.export(module, (torch.rand(1, 9, 10), torch.rand(1, 9, 10)), buffer, dynamo=False,
                          input_names=["magnitude", "phase"], output_names=["audio"], opset_version=17,
                          dynamic_axes={"magnitude": {0: "B", 2: "F"}, "phase": {0: "B", 2: "F"},
                                        "audio": {0: "B", 1: "T"}})
    session = ort.InferenceSession(buffer.getvalue())
    y = load_clip()[0, :, :8000]
    spec = torch.stft(y, 16, 4, window=hann_window(16), center=True, return_complex=True)
    for frames in (spec.size(-1), 37):  # a length other than the traced one
        mag, ph = spec.abs()[..., :frames], spec.angle()[..., :frames]
        out = session.run(None, {"magnitude": mag.numpy(), "phase": ph.numpy()})[0]
        assert out.shape == (1, frames * 4)
        assert np.abs(out - module(mag, ph).numpy()).max() < 1e-4


def test_generator_exports_to_onnx_with_conv_istft():
    torch.manual_seed(0)
    generator = MultiBandISTFTGenerator(small_hps(), istft_impl="conv").eval()
    generator.remove_weight_norm()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(generator, (torch.randn(1, 80, 20),), buffer, dynamo=False, input_names=["mel"],
                          output_names=["audio", "subbands"], opset_version=17,
                          dynamic_axes={"mel": {0: "B", 2: "T"}, "audio": {0: "B", 2: "S"},
                                        "subbands": {0: "B", 2: "S_sub"}})
    session = ort.InferenceSession(buffer.getvalue())
    mel = torch.randn(2, 80, 33) - 4
    out = session.run(None, {"mel": mel.numpy()})[0]
    with torch.no_grad():
        reference = generator(mel)[0].numpy()
    assert out.shape == reference.shape == (2, 1, 33 * 256)
    assert np.abs(out - reference).max() < 1e-4


# ---------------------------------------------------------------------------------------------- generator

@pytest.mark.parametrize("impl", ["torch", "conv"])
def test_generator_output_length_is_frames_times_hop(impl):
    torch.manual_seed(0)
    generator = MultiBandISTFTGenerator(small_hps(), istft_impl=impl)
    for frames in (1, 2, 7, 33, 100):
        audio, sub = generator(torch.randn(2, 80, frames))
        assert audio.shape == (2, 1, frames * 256)
        assert sub.shape == (2, 4, frames * 256 // 4)
        assert torch.isfinite(audio).all()


def test_generator_44k_hop_512_config():
    hps = small_hps(upsample_rates=[8, 4], upsample_kernel_sizes=[16, 8], sampling_rate=44100, hop_length=512,
                    filter_length=2048, win_length=2048)
    generator = MultiBandISTFTGenerator(hps)
    for frames in (3, 50):
        audio, sub = generator(torch.randn(1, 80, frames))
        assert audio.shape == (1, 1, frames * 512)
        assert sub.shape == (1, 4, frames * 128)


def test_generator_odd_kernel_minus_rate_still_exact():
    """kernel - rate odd uses output_padding; the length stays exact."""
    hps = small_hps(upsample_rates=[4, 4], upsample_kernel_sizes=[11, 9])
    audio, _ = MultiBandISTFTGenerator(hps)(torch.randn(1, 80, 13))
    assert audio.shape == (1, 1, 13 * 256)


def test_bad_config_rejected_with_values_named():
    hps = unvalidated(subbands=8)  # 16 * 4 * 8 = 512 != 256; built directly, so config.validate never ran
    with pytest.raises(ConfigError) as err:
        MultiBandISTFTGenerator(hps)
    message = str(err.value)
    for part in ("[4, 4]", "gen_istft_hop_size 4", "subbands 8", "512", "hop_length is 256"):
        assert part in message, message
    hps = unvalidated(gen_istft_hop_size=16, gen_istft_n_fft=16, upsample_rates=[4, 1], upsample_kernel_sizes=[8, 3])
    with pytest.raises(ConfigError, match="gen_istft_hop_size"):
        MultiBandISTFTGenerator(hps)


def test_istft_impls_agree_and_remove_weight_norm_keeps_output():
    torch.manual_seed(0)
    generator = MultiBandISTFTGenerator(small_hps())
    mel = load_mel()[..., :40]
    with torch.no_grad():
        a, _ = generator(mel)
        b, _ = generator.set_istft_impl("conv")(mel)
        generator.remove_weight_norm()
        c, _ = generator(mel)
    assert generator.istft_impl == "conv"
    assert (a - b).abs().max() < 1e-5
    assert (b - c).abs().max() < 1e-5
    assert not any("parametrizations" in k for k in generator.state_dict())


def test_generator_tail_runs_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    generator = MultiBandISTFTGenerator(small_hps())
    mel = load_mel()[..., :40]
    post_dtypes = []
    generator.conv_post.register_forward_hook(lambda module, inputs, out: post_dtypes.append(out.dtype))
    with torch.no_grad():
        reference, _ = generator(mel)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            audio, sub = generator(mel)
    # conv_post too: a trained vocoder's log-magnitudes and phases are small sums of large terms that bf16
    # rounding scrambles (copy synthesis of the unseen voice: mel L1 0.37 in fp32, 0.47 with a bf16 conv_post).
    assert post_dtypes == [torch.float32, torch.float32]
    assert audio.dtype == sub.dtype == torch.float32
    assert torch.isfinite(audio).all()
    # bf16 only in the convolutions: the waveform stays close to the fp32 one.
    assert (audio - reference).abs().max() < 0.05 * reference.abs().max() + 1e-4


def test_buffers_are_not_in_state_dict_and_follow_device():
    generator = MultiBandISTFTGenerator(small_hps())
    keys = generator.state_dict().keys()
    assert not any(k.startswith(("istft.", "pqmf.")) for k in keys)
    generator.to(torch.float64)
    assert generator.pqmf.synthesis_filter.dtype == torch.float64  # buffers move with the module


def load_mel() -> torch.Tensor:
    hps = HParams()
    return mel_from_config(load_clip()[..., :22050], hps.data)


def test_generator_overfits_one_real_clip():
    """A small generator trained on a ~1 s segment of one clip: mel L1 must fall by at least half."""
    torch.manual_seed(0)
    hps = small_hps(upsample_initial_channel=64)
    y = load_clip()[..., 22050:22050 + 86 * 256]  # ~1 s of speech, a whole number of frames
    mel = mel_from_config(y, hps.data)
    generator = MultiBandISTFTGenerator(hps)
    criterion = VocoderReconstructionLoss(hps)
    optimizer = torch.optim.Adam(generator.parameters(), lr=2e-3, betas=(0.8, 0.99))

    def mel_l1() -> float:
        with torch.no_grad():
            audio, _ = generator(mel)
            return float(criterion.mel(audio, y))

    start, t0 = mel_l1(), time.perf_counter()
    for _ in range(60):
        audio, sub = generator(mel)
        loss = criterion(audio, sub, y)["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    end = mel_l1()
    print(f"mel L1 {start:.3f} -> {end:.3f} ({end / start:.0%}) in 60 steps, {time.perf_counter() - t0:.1f} s")
    assert end <= 0.5 * start


# ---------------------------------------------------------------------------------------------- losses

def test_stft_losses_oracles():
    y = load_clip()[..., :8192]
    criterion = MultiResolutionSTFTLoss()
    sc, mag = criterion(y, y)
    assert sc.item() < 1e-6 and mag.item() < 1e-6
    sc_noise, mag_noise = criterion(y + 0.01 * torch.randn_like(y), y)
    sc_loud, mag_loud = criterion(2 * y, y)
    assert sc_noise > 0.01 and mag_noise > 0.01
    assert abs(sc_loud.item() - 1.0) < 1e-3  # || 2Y - Y || / || Y || = 1
    assert abs(mag_loud.item() - math.log(2)) < 0.05  # log|2Y| - log|Y| = log 2 (away from the clamp)
    sub = MultiResolutionSTFTLoss(SUB_BAND_RESOLUTIONS)
    bands = PQMF().analysis(y)
    assert sub(bands, bands)[0].item() < 1e-6
    with pytest.raises(ValueError, match="equal shapes"):
        criterion(y[..., :100], y)


def test_envelope_loss_sees_the_envelope_more_than_the_harmonics():
    """Harmonics of 103 Hz under two formants against a frame-rate comb (86 Hz) under the same formants: the coarse
    envelope loss charges the comb far less than the 80-band mel loss does, a level change fully, itself nothing."""
    hps = HParams()
    t = torch.arange(8192) / 22050

    def voiced(f0):
        formants = lambda hz: math.exp(-((hz - 700) / 300) ** 2) + 0.5 * math.exp(-((hz - 1800) / 400) ** 2) + 0.05  # noqa: E731
        return 0.1 * sum(formants(f0 * k) * torch.sin(2 * math.pi * f0 * k * t + k) for k in range(1, int(4000 / f0)))

    voice, comb = voiced(103.0).unsqueeze(0), voiced(22050 / 256).unsqueeze(0)
    envelope, mel = EnvelopeLoss(hps), MelLoss(hps)
    assert envelope(comb, voice).item() < 0.7 * mel(comb, voice).item()
    assert envelope(0.5 * voice, voice).item() > 0.5
    assert envelope(voice, voice).item() < 1e-6


def test_reconstruction_loss_is_zero_for_the_reference():
    hps = HParams()
    y = load_clip()[..., :8192]
    criterion = VocoderReconstructionLoss(hps)
    sub = criterion.pqmf.analysis(y)
    losses = criterion(y, sub, y)
    assert set(losses) == {"mel", "stft", "stft_sub", "envelope", "total"}
    assert losses["envelope"].item() == 0.0  # c_envelope 0: off
    assert losses["total"].item() < 1e-4
    assert criterion(0.5 * y, sub, y)["mel"].item() > 0.5  # log(0.25) in mel energy


def test_adversarial_losses_oracles():
    ones, zeros = [torch.ones(2, 5), torch.ones(2, 3)], [torch.zeros(2, 5), torch.zeros(2, 3)]
    loss, real, fake = discriminator_loss(ones, zeros)  # a perfect discriminator
    assert loss.item() == 0 and len(real) == len(fake) == 2
    loss, _, _ = discriminator_loss(zeros, ones)  # a fooled one: 1 per term, 2 terms per D
    assert loss.item() == pytest.approx(4.0)
    assert generator_loss(ones)[0].item() == 0
    assert generator_loss(zeros)[0].item() == pytest.approx(2.0)
    fmap = [[torch.randn(2, 4, 8), torch.randn(2, 3)]]
    assert feature_loss(fmap, fmap).item() == 0
    assert feature_loss(fmap, [[f + 1 for f in fmap[0]]]).item() == pytest.approx(2.0)


# ---------------------------------------------------------------------------------------------- discriminators

def test_discriminator_shapes():
    torch.manual_seed(0)
    disc = Discriminator(HParams()).eval()  # eval: spectral norm's power iteration stays put between calls
    y, y_hat = torch.randn(2, 1, 1201), torch.randn(2, 1, 1201)  # not a multiple of any period
    real_outs, fake_outs, real_fmaps, fake_fmaps = disc(y, y_hat)
    assert len(real_outs) == len(fake_outs) == len(real_fmaps) == len(fake_fmaps) == 5 + 3
    for r, f, fr, ff in zip(real_outs, fake_outs, real_fmaps, fake_fmaps):
        assert r.shape == f.shape and r.dim() == 2 and r.size(0) == 2
        assert len(fr) == len(ff) and len(fr) in (6, 7)  # 5 + post convs (period), 6 + post (scale)
        for a, b in zip(fr, ff):
            assert a.shape == b.shape and a.size(0) == 2
    for period, fmap in zip((2, 3, 5, 7, 11), real_fmaps[:5]):
        assert fmap[0].dim() == 4 and fmap[0].size(-1) == period
    # Real and fake share one batched pass: the real scores must not depend on the fake input.
    again = disc(y, torch.randn(2, 1, 1201))[0]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(real_outs, again))
    with pytest.raises(ValueError, match="same shape"):
        disc(y, y_hat[..., :100])


def test_discriminator_channels_cap_every_layer():
    """1024 is HiFi-GAN's MPD + MSD (58.0M parameters); a cap narrows every layer and keeps the outputs' layout."""
    def count(width):
        with torch.device("meta"):
            hps = HParams().replace(discriminator_channels=width)
            return sum(p.numel() for p in Discriminator(hps).parameters())
    assert abs(count(1024) - 58.03e6) < 0.01e6
    assert count(256) < count(1024) / 8
    narrow = Discriminator(HParams().replace(discriminator_channels=32)).eval()
    assert max(p.size(0) for p in narrow.parameters() if p.dim() > 1) <= 32
    outs = narrow(torch.randn(2, 1, 1201), torch.randn(2, 1, 1201))
    assert len(outs[0]) == 5 + 3
    with pytest.raises(Exception, match="multiple of 16"):
        HParams().replace(discriminator_channels=40)


def test_frozen_restores_each_flag_and_blocks_weight_gradients():
    from commons import frozen
    net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    net[1].bias.requires_grad_(False)
    x = torch.randn(2, 3, requires_grad=True)
    with frozen(net):
        net(x).sum().backward()
    assert x.grad is not None and all(p.grad is None for p in net.parameters())
    assert [p.requires_grad for p in net.parameters()] == [True, True, True, False]


# ------------------------------------------------------------------------------------------------ benchmark

def test_copy_synthesis_reuses_reference_scores(tmp_path, data_dir, lj_wavs, monkeypatch):
    """benchmarks/vocoder_copy_synthesis.py --references-from: the recording's and Griffin-Lim's scores come from
    the earlier report (Griffin-Lim is not run again), and a report made on other clips is refused."""
    import json
    import sys

    sys.path.insert(0, str(data_dir.parents[1] / "benchmarks"))
    import vocoder_copy_synthesis as copy_synthesis

    text = (data_dir / "metadata.csv").read_text().splitlines()[1].split("|")[2]
    voice_list = tmp_path / "lj.txt"
    voice_list.write_text(f"{lj_wavs[1]}|{text}\n")
    vocoder = str(data_dir.parents[1] / "pretrained" / "vocoder.pth")
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    args = ["--vocoder", vocoder, "--lists", str(voice_list), "--limit", "1", "--threads", "1"]
    assert copy_synthesis.main(args + ["--output", str(first)]) == 0
    monkeypatch.setattr(copy_synthesis, "griffin_lim", lambda *a: pytest.fail("Griffin-Lim ran again"))
    assert copy_synthesis.main(args + ["--output", str(second), "--references-from", str(first)]) == 0
    a, b = (json.loads(p.read_text())["voices"]["lj"] for p in (first, second))
    assert a["clip_ids"] == b["clip_ids"] == [copy_synthesis.clip_id(lj_wavs[1])]
    assert b["paths"] == a["paths"] and set(a["paths"]) == {"recording", "griffin_lim", "vocoder"}
    assert abs(a["paths"]["recording"]["lock"]) < 1 and "lock" in a["paths"]["vocoder"]
    assert all(1 <= a["paths"][n][k] <= 5 for n in a["paths"] for k in ("p808", "ovrl"))  # DNSMOS on every path
    assert a["paths"]["recording"]["p808"] > a["paths"]["griffin_lim"]["p808"]  # Griffin-Lim's phase is audible
    assert len(a["paths"]["vocoder"]["bands"]) == 4 and "bands" not in a["paths"]["recording"]
    assert all(abs(e) < 0.3 for e in a["paths"]["griffin_lim"]["bands"])  # Griffin-Lim keeps each band's energy
    gap = a["versus_griffin_lim"]["vocoder"]
    assert gap["difference"] == pytest.approx(a["paths"]["vocoder"]["wer"] - a["paths"]["griffin_lim"]["wer"])
    assert gap["low"] <= gap["difference"] <= gap["high"] and b["versus_griffin_lim"] == a["versus_griffin_lim"]
    voice_list.write_text(f"{lj_wavs[2]}|{text}\n")
    with pytest.raises(SystemExit, match="run once without it"):
        copy_synthesis.main(args + ["--references-from", str(first)])
