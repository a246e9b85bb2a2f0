"""The shared mel definition against an independent librosa computation, plus its shape contract."""
import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

import mel_processing as mp
from config import DataConfig

N_FFT, HOP, WIN, N_MELS, SR = 1024, 256, 1024, 80, 22050


def librosa_log_mel(y: np.ndarray, n_fft=N_FFT, hop=HOP, win=WIN, n_mels=N_MELS, sr=SR, fmin=0.0, fmax=None):
    """Reference: reflect pad (n_fft - hop) / 2, librosa STFT without centering, magnitude
    sqrt(|X|^2 + 1e-9), Slaney mel, log of the energies clamped at 1e-5."""
    pad = (n_fft - hop) // 2
    y = np.pad(y.astype(np.float64), (pad, n_fft - hop - pad), mode="reflect")
    spec = librosa.stft(y, n_fft=n_fft, hop_length=hop, win_length=win, window="hann", center=False)
    mag = np.sqrt(np.abs(spec) ** 2 + 1e-9)
    basis = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    return np.log(np.maximum(basis @ mag, 1e-5))


@pytest.fixture(scope="module")
def speech(lj_wavs):
    y, sr = sf.read(str(lj_wavs[1]), dtype="float32")  # LJ001-0002, 1.9 s
    assert sr == SR
    return y


def test_matches_librosa_reference_on_real_speech(speech):
    ours = mp.mel_spectrogram(torch.from_numpy(speech).unsqueeze(0), N_FFT, N_MELS, SR, HOP, WIN, 0.0, None)
    ref = librosa_log_mel(speech)
    assert ours.shape == (1, N_MELS, len(speech) // HOP) == (1,) + ref.shape
    diff = (ours[0].double().numpy() - ref)
    # float32 vs float64 rounding only
    assert np.abs(diff).max() < 1e-3, np.abs(diff).max()
    assert np.abs(diff).mean() < 1e-5
    assert ref.max() > 0 and ref.min() < -9  # the clip spans loud speech and near-silence


def test_float64_matches_reference_tightly_with_other_params(speech):
    y = speech[:20000].astype(np.float64)
    ours = mp.mel_spectrogram(torch.from_numpy(y), 512, 64, SR, 128, 400, 80.0, 7600.0)
    ref = librosa_log_mel(y, n_fft=512, hop=128, win=400, n_mels=64, fmin=80.0, fmax=7600.0)
    assert ours.dtype == torch.float64
    assert ours.shape == (1, 64, 20000 // 128)
    assert np.abs(ours[0].numpy() - ref).max() < 1e-8


def test_sine_peaks_in_the_mel_band_of_its_frequency():
    freq = 1000.0
    t = torch.arange(SR) / SR
    mel = mp.mel_spectrogram(0.5 * torch.sin(2 * np.pi * freq * t), N_FFT, N_MELS, SR, HOP, WIN, 0.0, None)
    centers = librosa.mel_frequencies(n_mels=N_MELS + 2, fmin=0.0, fmax=SR / 2)[1:-1]
    expected = int(np.argmin(np.abs(centers - freq)))
    peak_bins = mel[0, :, 4:-4].argmax(dim=0)  # frames away from the padded edges
    assert torch.all((peak_bins - expected).abs() <= 1)


@pytest.mark.parametrize("length", [256 * 10, 256 * 10 + 1, 256 * 10 + 255, 5000, 22050])
def test_frame_count_is_length_floor_div_hop(length):
    y = torch.randn(2, length) * 0.1
    assert mp.mel_spectrogram(y, N_FFT, N_MELS, SR, HOP, WIN, 0.0, None).shape == (2, N_MELS, length // HOP)
    assert mp.spectrogram(y, N_FFT, HOP, WIN).shape == (2, N_FFT // 2 + 1, length // HOP)


def test_accepted_input_shapes_agree(speech):
    y = torch.from_numpy(speech[:8192])
    ref = mp.mel_spectrogram(y.unsqueeze(0), N_FFT, N_MELS, SR, HOP, WIN, 0.0, None)
    for shaped in (y, y.view(1, 1, -1)):
        assert torch.equal(mp.mel_spectrogram(shaped, N_FFT, N_MELS, SR, HOP, WIN, 0.0, None), ref)
    with pytest.raises(ValueError, match="mono"):
        mp.mel_spectrogram(torch.zeros(1, 2, 8192), N_FFT, N_MELS, SR, HOP, WIN, 0.0, None)


def test_batch_items_equal_single_items(speech):
    y = torch.from_numpy(speech[:2 * 8192]).view(2, 8192)
    batch = mp.mel_spectrogram(y, N_FFT, N_MELS, SR, HOP, WIN, 0.0, None)
    for i in range(2):
        single = mp.mel_spectrogram(y[i:i + 1], N_FFT, N_MELS, SR, HOP, WIN, 0.0, None)
        torch.testing.assert_close(batch[i:i + 1], single, rtol=1e-5, atol=1e-5)


def test_half_precision_input_is_computed_in_float32(speech):
    y = torch.from_numpy(speech[:8192]).unsqueeze(0)
    ref = mp.mel_spectrogram(y, N_FFT, N_MELS, SR, HOP, WIN, 0.0, None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = mp.mel_spectrogram(y.bfloat16(), N_FFT, N_MELS, SR, HOP, WIN, 0.0, None)
    assert low.dtype == torch.float32
    # bf16 rounding of the samples only (about 3 significant digits); the STFT itself ran in fp32.
    assert (low - ref).abs().mean() < 0.05


def test_filters_and_windows_are_cached_per_device_dtype_and_params():
    a = mp.mel_basis(SR, N_FFT, N_MELS, 0.0, None, torch.device("cpu"), torch.float32)
    assert mp.mel_basis(SR, N_FFT, N_MELS, 0.0, None, torch.device("cpu"), torch.float32) is a
    b = mp.mel_basis(SR, N_FFT, N_MELS, 0.0, None, torch.device("cpu"), torch.float64)
    assert b is not a and b.dtype == torch.float64
    c = mp.mel_basis(SR, N_FFT, 40, 0.0, None, torch.device("cpu"), torch.float32)
    assert c.shape == (40, N_FFT // 2 + 1)
    w = mp.hann_window(WIN, torch.device("cpu"), torch.float32)
    assert mp.hann_window(WIN, torch.device("cpu"), torch.float32) is w
    torch.testing.assert_close(w, torch.hann_window(WIN))


def test_mel_from_config_uses_data_config_fields(speech):
    d = DataConfig(n_mel_channels=64, mel_fmin=50.0, mel_fmax=8000.0)
    y = torch.from_numpy(speech[:8192]).unsqueeze(0)
    expected = mp.mel_spectrogram(y, d.filter_length, 64, d.sampling_rate, d.hop_length, d.win_length, 50.0, 8000.0)
    assert torch.equal(mp.mel_from_config(y, d), expected)


def test_silence_hits_the_log_floor_and_short_input_is_refused():
    mel = mp.mel_spectrogram(torch.zeros(1, 4096), N_FFT, N_MELS, SR, HOP, WIN, 0.0, None)
    torch.testing.assert_close(mel, torch.full_like(mel, float(np.log(1e-5))))
    with pytest.raises(ValueError, match="too short"):
        mp.mel_spectrogram(torch.zeros(1, 300), N_FFT, N_MELS, SR, HOP, WIN, 0.0, None)
