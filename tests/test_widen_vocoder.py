"""widen_vocoder.py: a wider MB-iSTFT generator that computes what the narrow one computes, and the CLI around it."""
from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf
import torch

from conftest import torch_threads, write_mb_istft_vocoder
from mel_processing import mel_from_config
from models import MultiBandISTFTGenerator
from training.voice_file import load_vocoder, read_vocoder
from training.widen_vocoder import main as widen_main
from training.widen_vocoder import widen_generator

ROOT = Path(__file__).resolve().parent.parent
CLIP = Path(__file__).parent / "data" / "wavs" / "LJ001-0001.wav"


@pytest.fixture(scope="module")
def narrow_file(tmp_path_factory):
    return write_mb_istft_vocoder(tmp_path_factory.mktemp("narrow") / "vocoder.pth")


@pytest.fixture
def narrow(narrow_file):
    state, hps, _ = read_vocoder(narrow_file)
    generator = MultiBandISTFTGenerator(hps)
    generator.load_state_dict({k: v.float() for k, v in state.items()})
    return generator.eval(), hps


def real_mel(hps) -> torch.Tensor:
    wav, sr = sf.read(CLIP, dtype="float32", frames=22050)
    assert sr == hps.data.sampling_rate
    return mel_from_config(torch.from_numpy(wav).view(1, -1), hps.data)


def test_widened_vocoder_speaks_the_same_waveform(narrow):
    """Net2WiderNet: copies of channels with split outgoing weights leave the output as it was (to float
    rounding without noise, to a small fraction of the signal with it), while the copies do differ."""
    narrow, hps = narrow
    mel = real_mel(hps)
    wide_channels = hps.model.upsample_initial_channel + 32
    with torch.no_grad(), torch_threads(1):
        reference = narrow(mel)[0]
        exact = widen_generator(narrow, MultiBandISTFTGenerator(hps.replace(upsample_initial_channel=wide_channels)),
                                noise=0.0).eval()
        noisy = widen_generator(narrow, MultiBandISTFTGenerator(hps.replace(upsample_initial_channel=wide_channels)),
                                noise=1e-3).eval()
        out_exact, out_noisy = exact(mel)[0], noisy(mel)[0]
    assert exact.conv_pre.out_channels == wide_channels
    scale = reference.abs().max()
    assert (out_exact - reference).abs().max() < 1e-4 * scale
    assert 0 < (out_noisy - reference).abs().max() < 0.05 * scale
    # The first copy of conv_pre is channel 0..C-1 again plus noise: close to its source, not equal.
    source = noisy.conv_pre.weight[:hps.model.upsample_initial_channel]
    copy = noisy.conv_pre.weight[hps.model.upsample_initial_channel:]
    assert not any(torch.equal(c, s) for c in copy for s in source)


def test_cli_writes_a_vocoder_file_that_loads_at_the_new_width(tmp_path, narrow, narrow_file):
    narrow, hps = narrow
    out = tmp_path / "wide.pth"
    channels = hps.model.upsample_initial_channel + 16
    assert widen_main([str(narrow_file), str(out), "--channels", str(channels), "--noise", "0"]) == 0
    wide, wide_hps = load_vocoder(out)
    assert wide_hps.model.upsample_initial_channel == channels
    mel = real_mel(hps)
    with torch.no_grad(), torch_threads(1):
        narrow.remove_weight_norm()
        assert torch.allclose(wide(mel)[0], narrow(mel)[0], atol=1e-4 * float(narrow(mel)[0].abs().max()))


@pytest.mark.parametrize("channels", ["0", "32"])
def test_cli_refuses_a_width_that_is_not_wider(tmp_path, channels, capsys, narrow_file):
    with pytest.raises(SystemExit):
        widen_main([str(narrow_file), str(tmp_path / "wide.pth"), "--channels", channels])
    assert "must exceed" in capsys.readouterr().err
    assert not (tmp_path / "wide.pth").exists()


def test_cli_names_a_missing_source(tmp_path, capsys):
    with pytest.raises(SystemExit):
        widen_main([str(tmp_path / "nope.pth"), str(tmp_path / "wide.pth"), "--channels", "512"])
    assert "does not exist" in capsys.readouterr().err


def test_cli_refuses_a_source_filter_vocoder_in_one_line(tmp_path, capsys):
    from conftest import make_tiny_hps

    from models import FlowMatchingSynthesizer

    hps = make_tiny_hps(vocoder="source_filter", source_filter_channels=32, source_filter_layers=1)
    source = tmp_path / "sf.pth"
    torch.save({"ema": FlowMatchingSynthesizer(40, hps).state_dict(), "config": hps.to_dict()}, source)
    with pytest.raises(SystemExit):
        widen_main([str(source), str(tmp_path / "wide.pth"), "--channels", "512"])
    assert "grows the MB-iSTFT generator only" in capsys.readouterr().err
    assert not (tmp_path / "wide.pth").exists()
