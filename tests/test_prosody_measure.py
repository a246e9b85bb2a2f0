"""evaluation/prosody.py measures what it says on signals whose pitch, length and level are known."""
import numpy as np
import pytest

from evaluation.prosody import measure

SR = 22050


def tone(hz: float, seconds: float = 1.0, amplitude: float = 0.5, silence: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    gap = np.zeros(int(silence * SR), dtype=np.float32)
    return np.concatenate([gap, (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32), gap])


def test_pitch_length_and_loudness_of_known_tones():
    low, high = measure(tone(220.0, silence=0.5), SR), measure(tone(220.0 * 2 ** (4 / 12), amplitude=0.25, silence=0.5), SR)
    assert high.f0_median_st - low.f0_median_st == pytest.approx(4.0, abs=0.1)
    assert low.f0_median_st == pytest.approx(24.0, abs=0.1)  # 220 Hz: two octaves above 55 Hz
    assert 0.45 < low.voiced_share < 0.56 and low.f0_std_st < 0.1  # voiced: the tone, half the clip
    assert high.speech_seconds == pytest.approx(1.0, abs=0.05)  # the half seconds of silence are not speech
    assert high.loudness_db - low.loudness_db == pytest.approx(-6.02, abs=0.05)


def test_a_gliding_tone_has_the_spread_of_its_glide():
    t = np.arange(SR * 2) / SR
    semis = 12 * np.linspace(0, 1, t.size)  # one octave up, evenly in semitones
    glide = 0.5 * np.sin(2 * np.pi * np.cumsum(110 * 2 ** (semis / 12)) / SR)
    assert measure(glide, SR).f0_std_st == pytest.approx(12 / np.sqrt(12), abs=0.3)  # std of a uniform spread


def test_silence_is_refused():
    with pytest.raises(ValueError, match="silent"):
        measure(np.zeros(SR), SR)
