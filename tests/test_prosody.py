"""Prosody conditioning (prosody.py, FlowMatchingTTS with model.prosody_conditioning): the features measured from
audio, their token averages, the edits, the model's use of them in training and inference, the data loader's
cache, and the refusals for voices without it."""
import math

import numpy as np
import pytest
import torch

from conftest import make_tiny_hps, wake_velocity_net

try:
    from fixtures_checkpoint import tiny_checkpoint  # noqa: F401  (pytest fixture)
except ImportError:  # tests/ imported as a package
    from tests.fixtures_checkpoint import tiny_checkpoint  # noqa: F401
from data_utils import TextMelCollate, TextMelLoader
from flow_matching import FlowMatchingTTS
from mel_processing import LOG_MEL_FLOOR
from mel_processing import mel_from_config
from prosody import (ENERGY_UNIT, PITCH_CENTER, PITCH_UNIT, TEMPLATE_SEMITONES, apply_edit, frame_prosody,
                     harmonic_templates, loudness_gain, ripple, template_of, token_prosody)
from sampling import SamplingConfig
import text as text_lib

SR, HOP = 22050, 256


def buzz(f0: float, seconds: float = 1.0, amplitude: float = 0.3) -> np.ndarray:
    """A harmonic tone at f0 (voiced, like a vowel), length a whole number of hops."""
    t = np.arange(int(seconds * SR) // HOP * HOP) / SR
    return (amplitude * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))).astype(np.float32)


def test_frame_prosody_reads_the_pitch_voicing_and_energy_of_a_tone_and_of_silence():
    wav = np.concatenate([buzz(150.0), np.zeros(SR // HOP * HOP, np.float32)])
    frames = frame_prosody(wav, SR, HOP)
    assert frames.shape == (3, len(wav) // HOP) and frames.dtype == np.float32
    tone, quiet = frames[:, 5:80], frames[:, 95:]
    assert tone[1].all() and not quiet[1].any()
    np.testing.assert_allclose(np.median(tone[0]), 12 * math.log2(150 / 100), atol=0.2)  # semitones above 100 Hz
    assert (quiet[0] == 0).all()
    louder = frame_prosody(wav * 2, SR, HOP)
    np.testing.assert_allclose(louder[2, 5:80] - tone[2], 20 * math.log10(2), atol=0.01)


def test_token_prosody_averages_each_tokens_frames_and_gives_unvoiced_tokens_the_utterance_pitch():
    # 3 tokens over 6 frames: token 0 frames 0-1 (voiced, 12 st), token 1 frames 2-3 (unvoiced), token 2 frames
    # 4-5 (voiced, 0 and 6 st); a 4th, padded token has no frames.
    frames = torch.tensor([[[12.0, 12.0, 0.0, 0.0, 0.0, 6.0],
                            [1.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                            [-20.0, -20.0, -60.0, -40.0, -30.0, -30.0]]])
    attn = torch.zeros(1, 4, 6)
    for token, (a, b) in enumerate([(0, 2), (2, 4), (4, 6)]):
        attn[0, token, a:b] = 1
    tokens = token_prosody(frames, attn)[0]
    utterance_pitch = (12 + 12 + 6) / 3
    expected_pitch = torch.tensor([12.0, utterance_pitch, 6.0])  # token 2: only its voiced frame counts
    torch.testing.assert_close(tokens[0, :3], (expected_pitch - PITCH_CENTER) / PITCH_UNIT)
    torch.testing.assert_close(tokens[1, :3], torch.tensor([1.0, 0.0, 0.5]))
    torch.testing.assert_close(tokens[2, :3], (torch.tensor([-20.0, -50.0, -30.0]) + 30.0) / ENERGY_UNIT)
    assert (tokens[:, 3] == 0).all()


def test_edits_shift_pitch_scale_its_spread_around_the_voiced_mean_and_shift_energy():
    tokens = torch.tensor([[[0.5, -0.5, 3.0, 0.0], [1.0, 1.0, 0.0, 0.0], [0.2, 0.4, 0.6, 0.0]]])
    mask = torch.tensor([[[1.0, 1.0, 1.0, 0.0]]])
    torch.testing.assert_close(apply_edit(tokens, mask, torch.tensor([[0.0, 1.0, 0.0]])), tokens)
    edited = apply_edit(tokens, mask, torch.tensor([[6.0, 2.0, 10.0]]))[0]
    # voiced mean pitch 0 (the unvoiced token's 3.0 does not count): spread x2 around it, then +6 st = +1 unit
    torch.testing.assert_close(edited[0], torch.tensor([2.0, 0.0, 7.0, 0.0]))
    torch.testing.assert_close(edited[1], tokens[0, 1])
    torch.testing.assert_close(edited[2], torch.tensor([1.2, 1.4, 1.6, 0.0]))


def test_loudness_gain_moves_mel_and_energy_together_and_leaves_padding():
    mel = torch.full((2, 4, 6), -3.0)
    mel[1, :, 4:] = LOG_MEL_FLOOR  # padding
    frames = torch.zeros(2, 3, 6)
    frames[:, 2] = -30.0
    gain_db = torch.tensor([6.0, -4.0])
    out_mel, out_frames = loudness_gain(mel, frames, torch.tensor([6, 4]), gain_db)
    torch.testing.assert_close(out_mel[:, :, 0] + 3.0, (gain_db * math.log(10) / 20).unsqueeze(1).expand(2, 4))
    torch.testing.assert_close(out_frames[:, 2, 0], torch.tensor([-24.0, -34.0]))
    assert (out_mel[1, :, 4:] == LOG_MEL_FLOOR).all() and (out_frames[1, 2, 4:] == -30.0).all()
    torch.testing.assert_close(out_frames[:, :2], frames[:, :2])
    quiet, _ = loudness_gain(torch.full((1, 4, 2), LOG_MEL_FLOOR + 0.1), frames[:1, :, :2], torch.tensor([2]),
                             torch.tensor([-20.0]))
    assert (quiet == LOG_MEL_FLOOR).all()  # never below the log-mel of silence


def test_the_harmonic_template_of_a_pitch_matches_the_mel_of_a_tone_at_that_pitch():
    hps = make_tiny_hps()
    table = harmonic_templates(hps.data)
    low, _, step = TEMPLATE_SEMITONES
    for f0 in (110.0, 180.0, 260.0):
        mel = mel_from_config(torch.from_numpy(buzz(f0))[None], hps.data)[0, :, 40]
        best = int(torch.argmax(table @ ripple(mel)))
        assert abs(low + best * step - 12 * math.log2(f0 / 100)) <= 0.5, f0
    row = 80  # a pitch on the table's grid, then half-way to the next one
    for st, expected in ((low + row * step, table[row]), (low + (row + 0.5) * step, (table[row] + table[row + 1]) / 2)):
        tokens = torch.tensor([[[(st - PITCH_CENTER) / PITCH_UNIT] * 2, [1.0, 0.0], [0.0, 0.0]]])
        template = template_of(tokens, table)[0]
        torch.testing.assert_close(template[:, 0], expected, atol=1e-4, rtol=0)
        assert (template[:, 1] == 0).all()  # an unvoiced token: no template


# ------------------------------------------------------------------------------------------------ the model

def prosody_model(**overrides) -> FlowMatchingTTS:
    torch.manual_seed(0)
    model = FlowMatchingTTS(len(text_lib.symbols), make_tiny_hps(prosody_conditioning=True, **overrides)).eval()
    wake_velocity_net(model.cfm.estimator)
    torch.nn.init.normal_(model.prosody_embed.conv.weight, std=0.05)
    return model


def test_training_needs_the_prosody_and_fits_the_predictor_to_it():
    model = prosody_model().train()
    text, lengths = torch.randint(1, 50, (2, 7)), torch.tensor([7, 5])
    mel, mel_lengths = torch.randn(2, 80, 30) - 5, torch.tensor([30, 22])
    with pytest.raises(ValueError, match="prosody"):
        model(text, lengths, mel, mel_lengths)
    frames = torch.stack([torch.full((30,), 7.0), torch.ones(30), torch.full((30,), -25.0)]).expand(2, 3, 30)
    out = model(text, lengths, mel, mel_lengths, prosody=frames.clone())
    assert out["loss_prosody"] > 0
    out["loss_prosody"].backward()
    assert model.prosody_predictor.proj.weight.grad.abs().sum() > 0
    # Loudness augmentation comes after the alignment: the durations are those of the clips as recorded.
    louder = model(text, lengths, mel, mel_lengths, prosody=frames.clone(), gain_db=torch.tensor([9.0, -9.0]))
    assert torch.equal(louder["durations"], out["durations"]) and louder["loss_prior"] != out["loss_prior"]
    with pytest.raises(ValueError, match="pass prosody"):
        model(text, lengths, mel, mel_lengths, gain_db=torch.tensor([1.0, 1.0]))


def test_inference_realises_edits_through_the_embedding_and_a_plain_model_refuses_them():
    model = prosody_model()
    text, lengths = torch.randint(1, 50, (1, 9)), torch.tensor([9])
    sampling = SamplingConfig(steps=2)

    def mel(**edit):
        return model.infer(text, lengths, sampling.replace(**edit), rng=torch.Generator().manual_seed(3))["mel"]

    plain = mel()
    torch.testing.assert_close(mel(), plain)
    for edit in (dict(pitch_shift=4.0), dict(pitch_range=0.5), dict(energy_db=6.0)):
        changed = mel(**edit)
        assert changed.shape == plain.shape and not torch.allclose(changed, plain), edit
    no_prosody = FlowMatchingTTS(len(text_lib.symbols), make_tiny_hps()).eval()
    no_prosody.infer(text, lengths, sampling)
    with pytest.raises(ValueError, match="prosody conditioning"):
        no_prosody.infer(text, lengths, sampling.replace(pitch_shift=2.0))


def test_a_grown_model_computes_what_its_source_did_until_the_embedding_learns():
    """The embedding starts at zero: a model given prosody conditioning speaks as before it had it."""
    torch.manual_seed(0)
    source = FlowMatchingTTS(len(text_lib.symbols), make_tiny_hps()).eval()
    wake_velocity_net(source.cfm.estimator)
    grown = FlowMatchingTTS(len(text_lib.symbols), make_tiny_hps(prosody_conditioning=True)).eval()
    missing = grown.load_state_dict(source.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith(("prosody_predictor.", "prosody_embed.")) for k in missing)
    text, lengths = torch.randint(1, 50, (1, 9)), torch.tensor([9])
    gen = dict(rng=torch.Generator().manual_seed(1))
    torch.testing.assert_close(grown.infer(text, lengths, SamplingConfig(steps=2, pitch_shift=3.0), **gen)["mel"],
                               source.infer(text, lengths, SamplingConfig(steps=2),
                                            rng=torch.Generator().manual_seed(1))["mel"])


def test_the_loader_gives_each_clip_its_frame_prosody_and_caches_it(lj_filelist, tmp_path):
    hps = make_tiny_hps(prosody_conditioning=True, cache_dir=str(tmp_path), training_files=str(lj_filelist))
    loader = TextMelLoader(lj_filelist, hps)
    item = loader[0]
    assert item["prosody"].shape == (3, item["mel"].size(1))
    assert item["prosody"][1].mean() > 0.3  # speech is mostly voiced
    assert list(tmp_path.glob("prosody-*/*.npy"))
    torch.testing.assert_close(loader[0]["prosody"], item["prosody"])  # from the cache
    batch = TextMelCollate()([loader[0], loader[1]])
    assert batch["prosody"].shape == (2, 3, batch["mel"].size(2))


def test_streaming_and_the_command_line_apply_the_edits(tmp_path):
    """The streamed chunks of an edited reading join to synthesize()'s, and `--pitch` on the command line
    writes what the Python API gives (a voice without prosody conditioning: error, exit status 2)."""
    import soundfile as sf

    from inference.synthesizer import TorchSynthesizer
    from inference_flow_matching import main as cli_main
    from models import FlowMatchingSynthesizer

    hps = make_tiny_hps(prosody_conditioning=True, sampling_steps=2)
    torch.manual_seed(0)
    model = FlowMatchingSynthesizer(len(text_lib.symbols), hps)
    wake_velocity_net(model.acoustic.cfm.estimator)
    torch.nn.init.normal_(model.acoustic.prosody_embed.conv.weight, std=0.05)
    voice = tmp_path / "voice.pth"
    torch.save({"ema": model.state_dict(), "config": hps.to_dict(), "step": 1}, voice)
    tts = TorchSynthesizer.from_checkpoint(voice)
    sentence = "Hello there, friend. How are you?"
    edited = tts.default_sampling.replace(pitch_shift=-2.5, pitch_range=1.4, energy_db=3.0)
    whole, sr, _ = tts.synthesize(sentence, edited, seed=4)
    joined = np.concatenate(list(tts.stream(sentence, edited, seed=4, quick_start=False)))
    assert np.abs(joined - whole).max() < 1e-4
    assert cli_main(["--checkpoint", str(voice), "--text", sentence, "--output", str(tmp_path / "a.wav"),
                     "--pitch", "-2.5", "--pitch-range", "1.4", "--energy", "3"]) == 0
    written, _ = sf.read(str(tmp_path / "a.wav"), dtype="int16")
    np.testing.assert_allclose(written / 32767.0, tts.synthesize(sentence, edited)[0], atol=2 / 32767)
    plain_hps = make_tiny_hps(sampling_steps=2)
    torch.save({"ema": FlowMatchingSynthesizer(len(text_lib.symbols), plain_hps).state_dict(),
                "config": plain_hps.to_dict(), "step": 1}, tmp_path / "plain.pth")
    assert cli_main(["--checkpoint", str(tmp_path / "plain.pth"), "--text", sentence, "--output",
                     str(tmp_path / "b.wav"), "--pitch", "2"]) == 2


def test_range_edits_stay_finite_when_nothing_or_an_odd_voicing_is_predicted():
    """An untrained predictor may give voicing outside [0, 1] or none at all: the mean the range scales around
    falls back to the plain mean instead of dividing by almost nothing."""
    mask = torch.ones(1, 1, 3)
    for voiced in ([0.0, 0.0, 0.0], [-0.6, 0.3, 0.3]):
        tokens = torch.tensor([[[0.5, -0.5, 1.0], voiced, [0.0, 0.0, 0.0]]])
        edited = apply_edit(tokens, mask, torch.tensor([[0.0, 0.5, 0.0]]))
        assert edited.abs().max() <= 1.0, voiced


def test_vocoder_pitch_benchmark_reports_what_each_path_does_to_the_pitch(tiny_checkpoint, tmp_path):
    """benchmarks/vocoder_pitch.py on two real clips: Griffin-Lim keeps the recording's pitch (it puts harmonics
    where the mel has them), so the report can tell a vocoder that follows pitch from one that does not."""
    import json
    import shutil
    import sys

    from conftest import DATA_DIR, ROOT

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import vocoder_pitch

    folder = tmp_path / "lj"
    (folder / "wavs").mkdir(parents=True)
    for utt in ("LJ001-0001", "LJ001-0002"):
        shutil.copy(DATA_DIR / "wavs" / f"{utt}.wav", folder / "wavs")
    (folder / "metadata_train.csv").write_text("LJ001-0001|a|a\nLJ001-0002|b|b\n")
    out = tmp_path / "report.json"
    assert vocoder_pitch.main(["--vocoder", str(tiny_checkpoint), "--folders", str(folder), "--output", str(out)]) == 0
    row = json.loads(out.read_text())["folders"]["lj"]
    assert set(row) == {"recording", "vocoder", "griffin_lim", "lock"}
    assert abs(row["griffin_lim"] - row["recording"]) < 1.0
    assert vocoder_pitch.main(["--folders", str(tmp_path)]) == 2
