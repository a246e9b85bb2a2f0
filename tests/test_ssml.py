"""SSML input (text/ssml.py, SpeechPipeline.synthesize_ssml, --ssml on the command line).

Oracles: the exact segments each element parses to; the audio of a document == its text segments spoken by
synthesize() (segment k with seed + k) with exact silences between them and gains applied; the CLI's WAV == the
API's audio; a malformed document is one `error:` line with line and column and exit status 2.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

try:
    from fixtures_checkpoint import ROOT, tiny_checkpoint  # noqa: F401  (pytest fixture)
except ImportError:  # tests/ imported as a package
    from tests.fixtures_checkpoint import ROOT, tiny_checkpoint  # noqa: F401
from conftest import make_tiny_hps, torch_threads, wake_velocity_net  # noqa: E402

import text  # noqa: E402
from inference.synthesizer import TorchSynthesizer  # noqa: E402
from models import FlowMatchingSynthesizer  # noqa: E402
from text.ssml import (  # noqa: E402
    PARAGRAPH_PAUSE, SENTENCE_PAUSE, Segment, SsmlWarning, looks_like_ssml, parse_ssml, say_as)


def speak(body: str) -> str:
    return f'<speak version="1.1" xmlns="http://www.w3.org/2001/10/synthesis" xml:lang="en-US">{body}</speak>'


def ssml_warnings(document: str):
    """(segments, messages of the SsmlWarnings parse_ssml gave)."""
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        segments = parse_ssml(document)
    return segments, [str(r.message) for r in records if issubclass(r.category, SsmlWarning)]


# ----------------------------------------------------------------------------------------------------
# parsing: exact segments per element
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("body, expected", [
    ("Hello world.", [Segment("Hello world.")]),
    ("<p><s>One.</s><s>Two.</s></p><p>Three.</p>",
     [Segment("One."), Segment(pause=SENTENCE_PAUSE), Segment("Two."), Segment(pause=PARAGRAPH_PAUSE),
      Segment("Three.")]),
    ('Hello <break time="500ms"/> world', [Segment("Hello"), Segment(pause=0.5), Segment("world")]),
    ('Hello <break time="1.5s"/> world', [Segment("Hello"), Segment(pause=1.5), Segment("world")]),
    ('Hello <break strength="x-strong"/> world', [Segment("Hello"), Segment(pause=1.0), Segment("world")]),
    ("Hello <break/> world", [Segment("Hello"), Segment(pause=0.4), Segment("world")]),  # medium
    ('Hello <break strength="none"/> world', [Segment("Hello world")]),
    ('<prosody rate="200%">fast</prosody> <prosody rate="x-slow">slow</prosody>',
     [Segment("fast", duration_scale=0.5), Segment("slow", duration_scale=2.0)]),
    ('<prosody rate="+25%">a</prosody> <prosody rate="-50%">b</prosody> <prosody rate="4">c</prosody>',
     [Segment("a", duration_scale=0.8), Segment("b", duration_scale=2.0), Segment("c", duration_scale=0.25)]),
    ('<prosody rate="50%"><prosody rate="50%">nested</prosody></prosody>', [Segment("nested", duration_scale=4.0)]),
    ('<prosody volume="-6dB">soft</prosody> <prosody volume="x-loud">loud</prosody>',
     [Segment("soft", gain_db=-6.0), Segment("loud", gain_db=12.0)]),
    ('<prosody volume="silent">shh</prosody>', [Segment("shh", gain_db=float("-inf"))]),
    ("<emphasis>very</emphasis> good", [Segment("very", duration_scale=1 / 0.9, gain_db=2.0, pitch_shift=1.0,
                                                pitch_range=1.15), Segment("good")]),
    ('<emphasis level="strong">very</emphasis>',
     [Segment("very", duration_scale=1 / 0.8, gain_db=4.0, pitch_shift=2.0, pitch_range=1.3)]),
    ('<emphasis level="reduced">so</emphasis>',
     [Segment("so", duration_scale=1 / 1.1, gain_db=-3.0, pitch_shift=-1.0, pitch_range=0.8)]),
    ('<prosody pitch="+2st">up</prosody> <prosody pitch="-3.5st">down</prosody> <prosody pitch="x-high">hi</prosody>',
     [Segment("up", pitch_shift=2.0), Segment("down", pitch_shift=-3.5), Segment("hi", pitch_shift=6.0)]),
    ('<prosody pitch="+100%">octave</prosody>', [Segment("octave", pitch_shift=12.0)]),
    ('<prosody range="-50%">flat</prosody> <prosody range="high">lively</prosody>',
     [Segment("flat", pitch_range=0.5), Segment("lively", pitch_range=1.5)]),
    ('<prosody pitch="+2st" range="+50%"><prosody pitch="+1st" range="x-low">nested</prosody></prosody>',
     [Segment("nested", pitch_shift=3.0, pitch_range=0.375)]),
    ('<sub alias="World Wide Web">WWW</sub> pages', [Segment("World Wide Web pages")]),
    ('say <phoneme alphabet="ipa" ph="təmˈeɪtoʊ">tomato</phoneme>',
     [Segment("say"), Segment("tomato", phonemes="təmˈeɪtoʊ")]),
    ('Hi <voice name="bob">there</voice>', [Segment("Hi"), Segment("there", speaker="bob")]),
    ('Done. <emphasis>Next</emphasis>',  # a sentence end between two segments keeps its pause
     [Segment("Done."), Segment(pause=SENTENCE_PAUSE),
      Segment("Next", duration_scale=1 / 0.9, gain_db=2.0, pitch_shift=1.0, pitch_range=1.15)]),
    ('Call <say-as interpret-as="telephone">555-0123</say-as> now',
     [Segment("Call five five five, zero one two three now")]),
    ('<mark name="here"/>Marked', [Segment("Marked")]),
])
def test_parse_each_element(body, expected):
    segments, messages = ssml_warnings(speak(body))
    assert messages == []
    assert segments == expected


@pytest.mark.parametrize("content, interpret_as, fmt, words", [
    ("NASA", "characters", None, "N A S A"),
    ("B2B", "spell-out", None, "B two B"),
    ("1,234", "cardinal", None, "one thousand two hundred thirty-four"),
    ("1984", "cardinal", None, "one thousand nine hundred eighty-four"),  # not read as a year
    ("21", "ordinal", None, "twenty-first"),
    ("3rd", "ordinal", None, "third"),
    ("1984", "digits", None, "one nine eight four"),
    ("2024-03-05", "date", "ymd", "March fifth, twenty twenty-four"),
    ("03/05/2024", "date", "mdy", "March fifth, twenty twenty-four"),
    ("05.03.2024", "date", "dmy", "the fifth of March, twenty twenty-four"),
    ("7:05", "time", None, "seven oh five"),
    ("3:45pm", "time", None, "three forty-five p m"),
    ("+1 (555) 123-4567", "telephone", None, "plus one, five five five, one two three, four five six seven"),
])
def test_say_as_expands_to_words(content, interpret_as, fmt, words):
    assert say_as(content, interpret_as, fmt) == words
    attrs = f'interpret-as="{interpret_as}"' + (f' format="{fmt}"' if fmt else "")
    assert parse_ssml(speak(f"<say-as {attrs}>{content}</say-as>")) == [Segment(words)]


@pytest.mark.parametrize("body, words", [
    ('<say-as interpret-as="cardinal">many</say-as>', "whole number"),
    ('<say-as interpret-as="date" format="mdy">13/01/2024</say-as>', "not a date"),
    ('<break time="soon"/>', "500ms"),
    ('<break time="60s"/>', "longer than"),
    ('<prosody rate="zippy">x</prosody>', "rate"),
    ('<prosody rate="-100%">x</prosody>', "positive"),
    ('<prosody volume="+6">x</prosody>', "dB"),
    ('<prosody pitch="200Hz">x</prosody>', "not Hz"),
    ('<prosody pitch="+20Hz">x</prosody>', "not Hz"),
    ('<prosody pitch="-100%">x</prosody>', "positive pitch"),
    ('<prosody range="3st">x</prosody>', "range"),
    ('<emphasis level="huge">x</emphasis>', "level"),
    ("<voice>x</voice>", "name"),
])
def test_bad_attribute_values_are_value_errors(body, words):
    with pytest.raises(ValueError, match=words):
        parse_ssml(speak(body))


def test_malformed_document_gives_line_and_column():
    with pytest.raises(ValueError) as e:
        parse_ssml("<speak>\n  Hello <emphasis>world\n</speak>")
    message = str(e.value)
    assert "\n" not in message
    assert "line 3, column 3" in message  # the </speak> closing an open <emphasis>, columns counted from 1
    with pytest.raises(ValueError, match="root element must be <speak>"):
        parse_ssml("<p>Hello</p>")


def test_sentence_pause_is_the_pipelines():
    from audio import SENTENCE_PAUSE_SECONDS

    assert SENTENCE_PAUSE == SENTENCE_PAUSE_SECONDS  # text/ssml.py stays numpy-free, so it keeps its own copy


def test_looks_like_ssml():
    assert looks_like_ssml(speak("Hi")) and looks_like_ssml('<?xml version="1.0"?>\n<speak>Hi</speak>')
    assert not looks_like_ssml("Hello <speak> world") and not looks_like_ssml("<speaker>Hi</speaker>")


def test_unknown_elements_warn_once_and_read_their_text():
    segments, messages = ssml_warnings(speak("<foo>Hello</foo> <foo>big</foo> <bar>world</bar>"))
    assert segments == [Segment("Hello big world")]
    assert len(messages) == 1 and "<foo>" in messages[0] and "<bar>" in messages[0]


def test_contour_warns_once_and_changes_nothing():
    segments, messages = ssml_warnings(speak('<prosody contour="(0%,+20Hz)">Hello</prosody> '
                                             '<prosody contour="(10%,-2st)" rate="50%">world</prosody>'))
    assert segments == [Segment("Hello"), Segment("world", duration_scale=2.0)]
    assert len(messages) == 1 and "contour" in messages[0]


# ----------------------------------------------------------------------------------------------------
# synthesis: the tiny trained checkpoint and an untrained two-speaker voice
# ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tts(tiny_checkpoint):
    return TorchSynthesizer.from_checkpoint(tiny_checkpoint)


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    """An untrained tiny voice with speakers ann and bob and prosody conditioning (as tests/test_server.py's
    guided_multi_speaker_voice) whose velocity net and prosody embedding are not zero, so the speaker and
    prosody edits change the audio."""
    hps = make_tiny_hps(n_speakers=2, gin_channels=8, speaker_names=["ann", "bob"], sampling_steps=3,
                        prosody_conditioning=True)
    with torch_threads(1):
        torch.manual_seed(0)
        model = FlowMatchingSynthesizer(len(text.symbols), hps)
        wake_velocity_net(model.acoustic.cfm.estimator)
        torch.nn.init.normal_(model.acoustic.prosody_embed.conv.weight, std=0.05)
        path = tmp_path_factory.mktemp("ssml_voice") / "multi.pth"
        torch.save({"ema": model.state_dict(), "config": hps.to_dict(), "step": 1}, path)
        return TorchSynthesizer.from_checkpoint(path)


def test_break_adds_exactly_its_silence(tts):
    audio, sr, info = tts.synthesize_ssml(speak('Hello <break time="500ms"/> world.'), seed=3)
    hello, _, _ = tts.synthesize("Hello", seed=3)
    world, _, _ = tts.synthesize("world.", seed=4)  # the second text segment: seed + 1
    np.testing.assert_array_equal(audio, np.concatenate([hello, np.zeros(int(0.5 * sr), np.float32), world]))
    assert info["segments"] == 3 and info["audio_seconds"] == pytest.approx(len(audio) / sr)


def test_rate_changes_the_span_length(tts):
    fast, _, _ = tts.synthesize_ssml(speak('<prosody rate="200%">Hello world.</prosody>'))
    slow, _, _ = tts.synthesize_ssml(speak('<prosody rate="50%">Hello world.</prosody>'))
    plain, _, _ = tts.synthesize("Hello world.")
    assert len(fast) < len(plain) < len(slow)
    half, _, _ = tts.synthesize("Hello world.", tts.default_sampling.replace(duration_scale=0.5))
    np.testing.assert_array_equal(fast, half)  # rate 2 is duration_scale 0.5


def test_volume_scales_the_span(tts):
    soft, _, _ = tts.synthesize_ssml(speak('Hi. <prosody volume="-6dB">Hello world.</prosody>'))
    hi, _, _ = tts.synthesize("Hi.", seed=0)
    plain, sr, _ = tts.synthesize("Hello world.", seed=1)
    span = soft[len(hi) + int(round(SENTENCE_PAUSE * sr)):]
    assert len(span) == len(plain)
    np.testing.assert_allclose(span, plain * 10 ** (-6 / 20), rtol=1e-6, atol=1e-9)
    ratio = np.abs(span).max() / np.abs(plain).max()
    assert ratio == pytest.approx(0.5, abs=0.005)
    np.testing.assert_array_equal(soft[:len(hi)], hi)  # the words outside the span are untouched


def test_voice_switches_speaker(multi):
    audio, _, _ = multi.synthesize_ssml(speak('<voice name="bob">Hello there.</voice>'), speaker="ann")
    bob, _, _ = multi.synthesize("Hello there.", speaker="bob")
    ann, _, _ = multi.synthesize("Hello there.", speaker="ann")
    np.testing.assert_array_equal(audio, bob)
    assert not np.array_equal(bob, ann)
    with pytest.raises(ValueError, match="<voice name='carl'>.*known speakers: ann, bob"):
        multi.synthesize_ssml(speak('<voice name="carl">Hi</voice>'))
    blend, _, _ = multi.synthesize_ssml(speak('<voice name="ann(1)+bob(3)">Hello there.</voice>'))
    np.testing.assert_array_equal(blend, multi.synthesize("Hello there.", speaker="ann:0.25,bob:0.75")[0])


def test_pitch_and_emphasis_edit_only_their_span_where_the_voice_has_prosody_conditioning(multi, tts):
    document = speak('Hello there. <prosody pitch="+3st" range="x-high">Good morning.</prosody>')
    audio, sr, _ = multi.synthesize_ssml(document, seed=2)
    hello, _, _ = multi.synthesize("Hello there.", seed=2)
    sampling = multi.default_sampling
    high, _, _ = multi.synthesize("Good morning.", sampling.replace(pitch_shift=3.0, pitch_range=2.0), seed=3)
    np.testing.assert_array_equal(audio, np.concatenate([hello, np.zeros(int(round(SENTENCE_PAUSE * sr)),
                                                                          np.float32), high]))
    assert not np.array_equal(high, multi.synthesize("Good morning.", seed=3)[0])
    stressed, _, _ = multi.synthesize_ssml(speak('<emphasis level="strong">Good morning.</emphasis>'))
    expected, _, _ = multi.synthesize("Good morning.", sampling.replace(duration_scale=1 / 0.8, pitch_shift=2.0,
                                                                        pitch_range=1.3))
    np.testing.assert_allclose(stressed, expected * 10 ** (4 / 20), rtol=1e-6, atol=1e-9)
    calls = []
    speak_segment = multi._speak_segment
    multi._speak_segment = lambda *a: calls.append(a) or speak_segment(*a)
    try:  # refused before any synthesis: the first, plain segment is not spoken either
        with pytest.raises(ValueError, match="adds up to too much"):
            multi.synthesize_ssml(speak('Hello. <prosody pitch="+10st"><prosody pitch="+10st">Hi.</prosody></prosody>'))
    finally:
        del multi._speak_segment
    assert calls == []
    with pytest.warns(SsmlWarning, match="not trained with prosody conditioning"):  # a plain voice ignores pitch
        plain_voice, _, _ = tts.synthesize_ssml(speak('<prosody pitch="+3st">Good morning.</prosody>'))
    np.testing.assert_array_equal(plain_voice, tts.synthesize("Good morning.")[0])


def test_phoneme_speaks_the_given_ipa(tts):
    audio, _, _ = tts.synthesize_ssml(speak('<phoneme alphabet="ipa" ph="həlˈoʊ">hullo</phoneme>'))
    ids = text.text_to_ids("həlˈoʊ", tts.data, cleaned=True)
    direct, _, _ = tts.synthesize_sequences([ids])
    np.testing.assert_array_equal(audio, direct)


def test_nothing_speakable_is_a_value_error(tts):
    with pytest.raises(ValueError, match="nothing speakable"):
        tts.synthesize_ssml(speak('<break time="1s"/>'))


def test_onnx_runtime_speaks_ssml_the_same_way(tiny_checkpoint, tmp_path):
    from inference import export_onnx
    from runtime.onnx_synthesizer import OnnxSynthesizer

    with torch_threads(1):
        assert export_onnx.main([str(tiny_checkpoint), str(tmp_path / "voice"), "--steps", "2"]) == 0
    onnx = OnnxSynthesizer(tmp_path / "voice", threads=1)
    audio, sr, _ = onnx.synthesize_ssml(speak('Hello <break time="250ms"/> <prosody volume="-6dB">world.</prosody>'))
    hello, _, _ = onnx.synthesize("Hello", seed=0)
    world, _, _ = onnx.synthesize("world.", seed=1)
    np.testing.assert_allclose(audio, np.concatenate([hello, np.zeros(int(round(0.25 * sr)), np.float32),
                                                      world * 10 ** (-6 / 20)]), rtol=1e-6, atol=1e-9)


# ----------------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------------

def run_main(argv, capsys):
    import inference_flow_matching

    threads = torch.get_num_threads()
    try:
        code = inference_flow_matching.main(argv)
    finally:
        torch.set_num_threads(threads)
    return code, capsys.readouterr()


def test_cli_ssml_writes_the_api_audio(tiny_checkpoint, tts, tmp_path, capsys):
    document = speak('Hello <break time="300ms"/> <prosody rate="slow">world.</prosody> <foo>again</foo>')
    out = tmp_path / "ssml.wav"
    code, streams = run_main(["--checkpoint", str(tiny_checkpoint), "--ssml", "--text", document,
                              "--output", str(out), "--steps", "3"], capsys)
    assert code == 0, streams.err
    assert streams.err.count("<foo>") == 1  # the unknown-element warning, once
    audio, sr = sf.read(str(out), dtype="float32")
    with pytest.warns(SsmlWarning, match="<foo>"):
        api, _, _ = tts.synthesize_ssml(document, tts.default_sampling.replace(steps=3))
    np.testing.assert_allclose(audio, np.clip(api, -1, 1), atol=3.0 / 32768)


def test_cli_ssml_text_file(tiny_checkpoint, tmp_path, capsys):
    doc = tmp_path / "doc.ssml"
    doc.write_text(speak("<p>One.</p>\n<p>Two.</p>"), encoding="utf-8")
    out = tmp_path / "doc.wav"
    code, streams = run_main(["--checkpoint", str(tiny_checkpoint), "--ssml", "--text-file", str(doc),
                              "--output", str(out), "--steps", "2"], capsys)
    assert code == 0, streams.err
    assert sf.info(str(out)).frames > 0


def test_cli_malformed_ssml_is_one_error_line(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "bad.wav"
    code, streams = run_main(["--checkpoint", str(tiny_checkpoint), "--ssml", "--text",
                              "<speak>\nHello <break time='1s'>\n</speak>", "--output", str(out)], capsys)
    lines = streams.err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: ") and "line 3, column" in lines[0], lines
    assert not out.exists()
