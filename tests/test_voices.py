"""Many voices on tiny models: condition dropout, classifier-free guidance, prompting with a reference clip."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import make_tiny_hps, wake_velocity_net

import text
from audio import AudioError
from config import load_config
from flow_matching import ConditionDropout, FlowMatchingTTS, Prompt, prompt_spans
from models import FlowMatchingSynthesizer
from sampling import SamplingConfig
from inference.synthesizer import TorchSynthesizer

MULTI = dict(n_speakers=3, gin_channels=8, speaker_names=["ann", "bob", "cy"])


def tiny_acoustic(**overrides) -> FlowMatchingTTS:
    """An untrained multi-speaker model whose velocity net does not start at v = 0 (its output layers are
    zero-initialised), so that guidance and conditioning change something."""
    torch.manual_seed(0)
    model = FlowMatchingTTS(len(text.symbols), make_tiny_hps(**{**MULTI, **overrides})).eval()
    wake_velocity_net(model.cfm.estimator)
    return model


def ids_of(sentence: str, hps=None):
    ids = text.text_to_ids(sentence, (hps or make_tiny_hps()).data)
    return torch.tensor([ids]), torch.tensor([len(ids)])


class Recorder(torch.nn.Module):
    """Wraps an estimator and keeps the (x, mask, cond, t, g) of every call."""

    def __init__(self, estimator):
        super().__init__()
        self.estimator, self.calls = estimator, []

    def forward(self, x, mask, cond, t, g=None):
        self.calls.append((x, mask, cond, t, g))
        return self.estimator(x, mask, cond, t, g)


# ------------------------------------------------------------------------------------------------ guidance

def test_guidance_is_one_batched_call_equal_to_two_passes():
    model = tiny_acoustic()
    ids, lengths = ids_of("Guidance in one pass.")
    h, mu, x_mask, g = model._encode(ids, lengths, torch.tensor([1]))
    durations = model.predict_durations(h, x_mask, g)
    frames = int(durations.sum())
    attn = torch.zeros(1, ids.size(1), frames)
    attn[0, torch.repeat_interleave(torch.arange(ids.size(1)), durations[0]), torch.arange(frames)] = 1
    cond = torch.cat([torch.bmm(h, attn), torch.bmm(mu, attn)], 1)
    mask = torch.ones(1, 1, frames)
    x, t = torch.randn(1, 80, frames), torch.tensor([0.3])
    recorder = Recorder(model.cfm.estimator)
    model.cfm.estimator = recorder
    guided = model.cfm._guided_velocity(cond, mask, g, 2.0)(x, t)
    assert len(recorder.calls) == 1 and recorder.calls[0][0].size(0) == 2  # one call, twice the batch
    est = recorder.estimator
    v_cond = est(x, mask, cond, t, g)
    v_uncond = est(x, mask, torch.zeros_like(cond), t, torch.zeros_like(g))
    torch.testing.assert_close(guided, v_cond + 2.0 * (v_cond - v_uncond), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.cfm._guided_velocity(cond, mask, g, 0.0)(x, t), v_cond)


def test_guidance_scale_reaches_the_network_and_costs_no_extra_nfe():
    model = tiny_acoustic()
    ids, lengths = ids_of("Louder, please.")
    outs = {}
    for scale in (0.0, 2.0):
        out = model.infer(ids, lengths, SamplingConfig(steps=3, cfg_scale=scale), torch.tensor([0]),
                          rng=torch.Generator().manual_seed(0))
        outs[scale] = out
    assert outs[0.0]["nfe"] == outs[2.0]["nfe"] == 3
    assert torch.equal(outs[0.0]["durations"], outs[2.0]["durations"])  # guidance only steers the flow
    assert not torch.allclose(outs[0.0]["mel"], outs[2.0]["mel"])


def test_guided_velocity_takes_one_time_per_item():
    """Distillation asks the teacher at each item's own t: equal to asking item by item."""
    model = tiny_acoustic()
    cond, mask = torch.randn(2, model.cfm.estimator.in_proj.in_features - 80, 12), torch.ones(2, 1, 12)
    g = model._speaker(torch.tensor([0, 2]))
    x, t = torch.randn(2, 80, 12), torch.tensor([0.2, 0.9])
    both = model.cfm._guided_velocity(cond, mask, g, 1.5)(x, t)
    for i in range(2):
        one = model.cfm._guided_velocity(cond[i:i + 1], mask[i:i + 1], g[i:i + 1], 1.5)(x[i:i + 1], t[i])
        torch.testing.assert_close(both[i:i + 1], one, atol=1e-5, rtol=1e-5)


def test_distillation_regresses_the_target_at_the_students_own_x_t_and_t():
    model = tiny_acoustic()
    recorder = Recorder(model.cfm.estimator)
    model.cfm.estimator = recorder
    asked = []

    def target(x_t, t):
        asked.append((x_t, t))
        return torch.full_like(x_t, 0.5)

    x1, mask = torch.randn(2, 80, 10), torch.ones(2, 1, 10)
    mask[1, :, 7:] = 0
    cond = torch.randn(2, recorder.estimator.in_proj.in_features - 80, 10)
    loss = model.cfm.loss(x1, mask, cond, torch.zeros_like(x1), target=target)
    (x_seen, _, _, t_seen, _), = recorder.calls
    assert torch.equal(asked[0][0], x_seen) and torch.equal(asked[0][1], t_seen)
    v = recorder.estimator(x_seen, mask, cond, t_seen, None)
    torch.testing.assert_close(loss, ((v - 0.5) ** 2 * mask).sum() / (mask.sum() * 80))


def distillation_hps(tmp_path, data_dir, **overrides):
    """A tiny single-speaker teacher (text-condition guidance) saved as a voice, and a student config."""
    torch.manual_seed(0)
    base_hps = make_tiny_hps(cond_drop_rate=0.2)
    teacher = FlowMatchingSynthesizer(len(text.symbols), base_hps)
    wake_velocity_net(teacher.acoustic.cfm.estimator)
    base = tmp_path / "teacher.pth"
    torch.save({"ema": teacher.state_dict(), "config": base_hps.to_dict()}, base)
    changes = dict(init_checkpoint=str(base), guidance_distill_scale=2.0, train_vocoder=False,
                   training_files=str(data_dir / "filelist.txt"), validation_files=str(data_dir / "filelist.txt"))
    return make_tiny_hps(**{**changes, **overrides}), teacher


def test_guidance_distillation_trains_only_the_velocity_net_towards_the_frozen_teacher(tmp_path, data_dir):
    import train_flow_matching as train

    hps, teacher = distillation_hps(tmp_path, data_dir)
    trainer = train.Trainer(hps, tmp_path / "run", tensorboard=False)
    assert trainer.guidance_teacher.scale == 2.0
    for name, p in trainer.model.named_parameters():
        assert p.requires_grad == name.startswith("acoustic.cfm."), name
    frozen = {k: v.clone() for k, v in trainer.guidance_teacher.cfm.state_dict().items()}
    torch.testing.assert_close(frozen, teacher.acoustic.cfm.state_dict())
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    result = trainer.train_step(next(iter(trainer.train_loader(0))))
    assert not result.skipped and result.losses["flow"] > 0
    changed = {k for k, v in trainer.model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("acoustic.cfm.") for k in changed), changed
    for k, v in trainer.guidance_teacher.cfm.state_dict().items():
        assert torch.equal(v, frozen[k]), k


@pytest.mark.parametrize("teacher_changes, reason", [
    (dict(cond_drop_rate=0.0), "trained without condition dropout"),
    (dict(cond_drop_rate=0.0, guidance_distill_scale=1.0, init_checkpoint="guided.pth"), "guidance folded in"),
])
def test_a_teacher_that_cannot_guide_is_refused(tmp_path, data_dir, teacher_changes, reason):
    """Distilling from a voice without an unconditional velocity (no condition dropout, or itself distilled,
    as the shipped default voice is) would teach noise: refused before training, naming why."""
    import train_flow_matching as train
    from config import ConfigError

    hps, _ = distillation_hps(tmp_path, data_dir)
    bad = make_tiny_hps(**teacher_changes)
    torch.save({"ema": FlowMatchingSynthesizer(len(text.symbols), bad).state_dict(), "config": bad.to_dict()},
               tmp_path / "teacher.pth")
    with pytest.raises(ConfigError, match=f"cannot teach guidance \\(.*{reason}"):
        train.Trainer(hps, tmp_path / "run", tensorboard=False)


@pytest.mark.parametrize("overrides, message", [
    (dict(init_checkpoint=None), "set train.init_checkpoint to the guided voice"),
    (dict(cfg_scale=1.0), "set model.cfg_scale to 0"),
    (dict(cond_drop_rate=0.1), "cond_drop_rate and train.speaker_drop_rate to 0"),
    (dict(trainable=["acoustic.encoder."]), "only parameters under 'acoustic.cfm.'"),
])
def test_guidance_distillation_config_errors(tmp_path, data_dir, overrides, message):
    import re

    from config import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        distillation_hps(tmp_path, data_dir, **overrides)


@pytest.mark.parametrize("bad", [-1.0, 11.0, float("nan"), True])
def test_bad_guidance_scale_is_refused(bad):
    with pytest.raises(ValueError, match="guidance scale"):
        SamplingConfig(cfg_scale=bad)


# ---------------------------------------------------------------------------------------- condition dropout

def training_batch(model, sentence="A short clip to train on.", frames=60):
    ids, lengths = ids_of(sentence)
    mel = torch.randn(1, 80, frames) * 2 - 5
    return ids, lengths, mel, torch.tensor([frames])


def test_condition_dropout_hides_text_and_speaker_from_the_flow_only():
    model = tiny_acoustic().train()
    recorder = Recorder(model.cfm.estimator)
    model.cfm.estimator = recorder
    ids, lengths, mel, mel_lengths = training_batch(model)
    model(ids, lengths, mel, mel_lengths, torch.tensor([2]), dropout=ConditionDropout(cond_drop_rate=1.0))
    _, _, cond, _, g = recorder.calls[-1]
    assert cond.abs().max() == 0 and g.abs().max() == 0
    out = model(ids, lengths, mel, mel_lengths, torch.tensor([2]), dropout=ConditionDropout())
    _, _, cond, _, g = recorder.calls[-1]
    assert cond.abs().max() > 0 and g.abs().max() > 0
    assert torch.isfinite(out["loss_flow"])


def test_speaker_dropout_gives_the_whole_model_the_null_speaker():
    model = tiny_acoustic().train()
    seen = []
    model.encoder.register_forward_hook(lambda mod, args, out: seen.append(args[2]))
    ids, lengths, mel, mel_lengths = training_batch(model)
    model(ids, lengths, mel, mel_lengths, torch.tensor([1]), dropout=ConditionDropout(speaker_drop_rate=1.0))
    assert seen[-1].abs().max() == 0
    null = model._speaker(None, null_ok=True)
    assert null.shape == (1, 8, 1) and null.abs().max() == 0
    with pytest.raises(ValueError, match="pass speakers"):
        model._speaker(None)


def test_prompt_spans_split_each_clip_into_context_and_a_70_to_100_percent_span():
    torch.manual_seed(0)
    lengths = torch.tensor([100, 37, 5])
    mask = (torch.arange(100).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(1).float()
    y = torch.randn(3, 4, 100) * mask
    for _ in range(20):
        context, to_fill = prompt_spans(y, mask, prompt_rate=1.0)
        assert torch.equal(to_fill * (1 - mask), torch.zeros_like(to_fill))  # never in the padding
        filled = to_fill.sum((1, 2))
        assert ((filled >= torch.ceil(0.7 * lengths)) & (filled <= lengths)).all()
        assert torch.equal(context, y * (mask - to_fill))  # context = the clip outside the span
        starts = to_fill[:, 0].argmax(1)
        assert torch.equal(to_fill[:, 0].sum(1).long(), (to_fill[:, 0].cumsum(1) > 0).sum(1)
                           - (100 - starts - filled.long()))  # one contiguous span
    context, to_fill = prompt_spans(y, mask, prompt_rate=0.0)
    assert torch.equal(to_fill, mask) and context.abs().max() == 0


def test_prompted_training_counts_only_the_frames_to_fill(monkeypatch):
    model = tiny_acoustic(prompt_context=True).train()
    seen = {}
    real_loss = model.cfm.loss

    def spy(x1, mask, cond, mu=None, g=None, rng=None, loss_mask=None, target=None):
        seen.update(cond=cond, loss_mask=loss_mask, mask=mask)
        return real_loss(x1, mask, cond, mu, g, rng, loss_mask, target)
    monkeypatch.setattr(model.cfm, "loss", spy)
    ids, lengths, mel, mel_lengths = training_batch(model)
    model(ids, lengths, mel, mel_lengths, torch.tensor([0]), dropout=ConditionDropout(prompt_rate=1.0))
    context = seen["cond"][:, -80:]
    assert 0.7 * 60 <= seen["loss_mask"].sum() < 60
    given = (1 - seen["loss_mask"]).bool().expand_as(context)
    torch.testing.assert_close(context[given], model.normalize(mel)[given])
    assert context[~given].abs().max() == 0


# ------------------------------------------------------------------------------------------------ prompting

def test_prompted_inference_keeps_the_reference_as_context_and_returns_only_the_new_speech():
    model = tiny_acoustic(prompt_context=True)
    ref_ids, _ = ids_of("The reference words.")
    new_ids, _ = ids_of("Something new.")
    full = torch.cat([ref_ids, torch.tensor([[text.SYMBOL_TO_ID[" "]]]), new_ids], 1)
    ref_mel = torch.randn(1, 80, 3 * ref_ids.size(1)) - 5
    recorder = Recorder(model.cfm.estimator)
    model.cfm.estimator = recorder
    out = model.infer(full, torch.tensor([full.size(1)]), SamplingConfig(steps=2), None,
                      rng=torch.Generator().manual_seed(0), prompt=Prompt(ref_mel, ref_ids.size(1)))
    n_ref = ref_mel.size(2)
    context = recorder.calls[0][2][:, -80:]
    torch.testing.assert_close(context[:, :, :n_ref], model.normalize(ref_mel))
    assert context[:, :, n_ref:].abs().max() == 0
    assert recorder.calls[0][4].abs().max() == 0  # no speaker given: the null speaker
    assert out["durations"].shape == (1, full.size(1) - ref_ids.size(1))
    assert out["mel"].shape == (1, 80, int(out["durations"].sum())) == (1, 80, int(out["mel_lengths"][0]))


def test_prompt_errors_say_what_to_do():
    plain = tiny_acoustic()
    ids, lengths = ids_of("Hello there.")
    with pytest.raises(ValueError, match="prompt context"):
        plain.infer(ids, lengths, prompt=Prompt(torch.zeros(1, 80, 50), 3))
    model = tiny_acoustic(prompt_context=True)
    with pytest.raises(ValueError, match="must follow a non-empty transcript"):
        model.infer(ids, lengths, prompt=Prompt(torch.zeros(1, 80, 50), int(lengths[0])))
    with pytest.raises(ValueError, match="too short for its transcript"):
        model.infer(ids, lengths, prompt=Prompt(torch.zeros(1, 80, 2), 5))


@pytest.fixture
def prompt_synthesizer():
    hps = make_tiny_hps(**MULTI, prompt_context=True, speaker_conditioned_vocoder=False)
    torch.manual_seed(0)
    return TorchSynthesizer(FlowMatchingSynthesizer(len(text.symbols), hps), hps, len(text.symbols))


def test_synthesizer_speaks_after_a_reference_clip(prompt_synthesizer, lj_wavs):
    tts = prompt_synthesizer
    tts.set_reference(lj_wavs[1], "in being comparatively modern.")
    audio, sr, info = tts.synthesize("Hello there. Bye now.", SamplingConfig(steps=2), timings=True)
    assert info["sentences"] == 2 and len(audio) > 0 and np.isfinite(audio).all()
    assert len(info["durations"]) == 2 and info["timings"]["words"][0]["word"] == "Hello"
    chunks = list(tts.stream("Hello there. Bye now.", SamplingConfig(steps=2), quick_start=False))
    np.testing.assert_allclose(np.concatenate(chunks), audio, atol=1e-4)
    tts.set_reference(None)
    assert tts.reference is None


def test_bad_reference_clips_get_clear_errors(prompt_synthesizer, lj_wavs, tmp_path):
    tts = prompt_synthesizer
    with pytest.raises(AudioError, match="not found"):
        tts.set_reference(tmp_path / "missing.wav", "words")
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(2000, dtype=np.float32) + 0.1, 22050)
    with pytest.raises(AudioError, match="0.1 s long"):
        tts.set_reference(short, "words")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(22050, dtype=np.float32), 22050)
    with pytest.raises(AudioError, match="silent"):
        tts.set_reference(silent, "words")
    with pytest.raises(ValueError, match="transcript"):
        tts.set_reference(lj_wavs[0], "  ")
    plain_hps = make_tiny_hps()
    plain = TorchSynthesizer(FlowMatchingSynthesizer(len(text.symbols), plain_hps), plain_hps, len(text.symbols))
    with pytest.raises(ValueError, match="prompt context"):
        plain.set_reference(lj_wavs[0], "words")


# ----------------------------------------------------------------------------------------------- adaptation

def tiny_multi_speaker_base(path: Path, **changes) -> Path:
    """A tiny untrained three-speaker voice file (ann, bob, cy) to adapt; `changes` to its config."""
    hps = make_tiny_hps(**MULTI, speaker_conditioned_vocoder=False, **changes)
    torch.manual_seed(0)
    torch.save({"ema": FlowMatchingSynthesizer(len(text.symbols), hps).state_dict(), "config": hps.to_dict()}, path)
    return path


def test_clone_voice_adapts_only_the_conditioning_of_a_new_speaker(tmp_path, data_dir):
    from voices import clone_voice
    from training.checkpoint import load_checkpoint
    from training.voice_file import read_voice

    base = tiny_multi_speaker_base(tmp_path / "base.pth")
    run = tmp_path / "run"
    assert clone_voice.main(["--dataset", str(data_dir), "--base", str(base), "-m", str(run), "--name", "dee",
                             "--steps", "3", "--device", "cpu", "--adapt", "conditioning", "--vocoder-steps", "0"]) == 0
    voice = load_checkpoint(run / "voice.pth")
    assert voice["config"]["data"]["speaker_names"] == ["ann", "bob", "cy", "dee"]
    meta = voice["metadata"]["cloned_from"]
    assert meta["dataset"] == data_dir.name and meta["speaker"] == "dee" and len(meta["date"]) == 10
    before = read_voice(base).weights
    after = {k: v.float() for k, v in read_voice(run / "voice.pth").weights.items()}
    changed = {k for k, v in after.items() if k != "acoustic.emb_g.weight"
               and not torch.allclose(v, before[k].float(), atol=1e-3)}  # the export is float16
    assert changed and all(k.startswith(tuple(clone_voice.ADAPTED)) for k in changed), changed
    table = after["acoustic.emb_g.weight"]
    torch.testing.assert_close(table[:3], before["acoustic.emb_g.weight"], atol=1e-3, rtol=0)  # others kept
    assert not torch.allclose(table[3], before["acoustic.emb_g.weight"].mean(0), atol=1e-4)  # the new one learned
    tts = TorchSynthesizer.from_checkpoint(run / "voice.pth")
    audio, _, _ = tts.synthesize("Hello.", SamplingConfig(steps=2), speaker="dee")
    assert len(audio) > 0 and np.isfinite(audio).all()


def test_clone_voice_adapts_a_distilled_base_with_the_plain_flow_loss_and_the_measured_batches(tmp_path, data_dir):
    """The shipped voice has guidance distilled in (train.guidance_distill_scale 1, larger batches): a clone of
    it must not try to distill again, and adapts with the batches its recipe was measured with."""
    from voices import clone_voice

    base = tiny_multi_speaker_base(tmp_path / "base.pth", guidance_distill_scale=1.0, init_checkpoint="guided.pth",
                                   max_frames_per_batch=3000)
    run = tmp_path / "run"
    assert clone_voice.main(["--dataset", str(data_dir), "--base", str(base), "-m", str(run), "--name", "dee",
                             "--steps", "2", "--vocoder-steps", "0", "--device", "cpu"]) == 0
    adapted = load_config(run / "adapt.json").train
    assert adapted.guidance_distill_scale == 0.0
    assert (adapted.batch_size, adapted.max_frames_per_batch) == (16, 1500) == tuple(clone_voice.ADAPT_BATCH.values())
    assert TorchSynthesizer.from_checkpoint(run / "voice.pth").speaker_names[-1] == "dee"


def test_clone_voice_can_fine_tune_the_vocoder_on_the_same_clips(tmp_path, data_dir):
    from voices import clone_voice
    from training.voice_file import read_voice

    base = tiny_multi_speaker_base(tmp_path / "base.pth")
    run = tmp_path / "run"
    assert clone_voice.main(["--dataset", str(data_dir), "--base", str(base), "-m", str(run), "--name", "dee",
                             "--steps", "2", "--vocoder-steps", "2", "--vocoder-bf16", "--device", "cpu"]) == 0
    assert load_config(run / "vocoder" / "finetune.json").train.bf16_run  # --vocoder-bf16: the vocoder only
    assert not load_config(run / "adapt.json").train.bf16_run

    def half(weights, prefix):
        return {k: v.half().float() for k, v in weights.items() if k.startswith(prefix)}

    before = read_voice(base).weights
    tuned = read_voice(run / "vocoder" / "G_2.pth", use_ema=False).weights  # the vocoder run's raw weights
    assert any(not torch.equal(v, before[k]) for k, v in tuned.items() if k.startswith("generator."))
    after = read_voice(run / "voice.pth").weights
    torch.testing.assert_close(half(after, "generator."), half(read_voice(run / "vocoder" / "G_2.pth").weights,
                                                                "generator."))
    torch.testing.assert_close(half(after, "acoustic."), half(read_voice(run / "G_2.pth").weights, "acoustic."))
    assert read_voice(run / "voice.pth").checkpoint["metadata"]["cloned_from"]["speaker"] == "dee"


def test_clone_voice_refuses_a_single_speaker_base_and_a_folder_without_metadata(tmp_path, data_dir, capsys):
    from voices import clone_voice

    hps = make_tiny_hps()
    base = tmp_path / "single.pth"
    torch.save({"ema": FlowMatchingSynthesizer(len(text.symbols), hps).state_dict(), "config": hps.to_dict()}, base)
    assert clone_voice.main(["--dataset", str(data_dir), "--base", str(base), "-m", str(tmp_path / "r")]) == 2
    assert "single-speaker voice" in capsys.readouterr().err
    multi = make_tiny_hps(**MULTI)
    base = tmp_path / "multi.pth"
    torch.save({"ema": FlowMatchingSynthesizer(len(text.symbols), multi).state_dict(), "config": multi.to_dict()}, base)
    assert clone_voice.main(["--dataset", str(tmp_path), "--base", str(base), "-m", str(tmp_path / "r")]) == 2
    assert "no metadata.csv" in capsys.readouterr().err
    assert clone_voice.main(["--dataset", str(data_dir), "--base", str(base), "-m", str(tmp_path / "r"),
                             "--name", "bob"]) == 2
    assert "already has a speaker named 'bob'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ benchmark

def test_voices_benchmark_scores_guidance_and_similarity(tmp_path, data_dir, lj_wavs):
    """benchmarks/bench_voices.py on a corpus of the four LJ clips posing as two voices: every row has WER, MCD,
    RTF and a similarity on the scale the recordings set; catches --scales not reaching the sampler."""
    import json
    import sys

    sys.path.insert(0, str(data_dir.parents[1] / "benchmarks"))
    import bench_voices

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    texts = [line.split("|")[2] for line in (data_dir / "metadata.csv").read_text().splitlines()]
    (corpus / "speakers.json").write_text(json.dumps({"names": ["ann", "bob"], "held_out": "cy"}))
    (corpus / "train.txt").write_text("".join(f"{w}|{i % 2}|x\n" for i, w in enumerate(lj_wavs)))
    for i, name in enumerate(["ann", "bob"]):
        (corpus / f"test_{name}.txt").write_text("".join(f"{lj_wavs[j]}|{i}|{texts[j]}\n" for j in (i, i + 2)))
    hps = make_tiny_hps(**{**MULTI, "n_speakers": 2, "speaker_names": ["ann", "bob"]})
    torch.manual_seed(0)
    model = FlowMatchingSynthesizer(len(text.symbols), hps)
    wake_velocity_net(model.acoustic.cfm.estimator)  # else v = 0 and no scale could change anything
    voice = tmp_path / "multi.pth"
    torch.save({"ema": model.state_dict(), "config": hps.to_dict()}, voice)
    out = tmp_path / "report.json"
    assert bench_voices.main(["guidance", "--voice", str(voice), "--corpus", str(corpus), "--scales", "0", "2",
                        "--limit", "2", "--steps", "2", "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert [(r["scale"], r["voice"]) for r in rows] == [(0, "ann"), (0, "bob"), (2, "ann"), (2, "bob")]
    for row in rows:
        assert row["scored"] == 2 and 0 <= row["wer_synth"] and row["mcd_mean"] > 0 and row["nfe"] == 2
        assert -1 <= row["similarity"] <= 1 and row["wer_ref"] < 0.5  # real LJ Speech: the recogniser's ceiling
    for plain, guided in zip(rows[:2], rows[2:]):  # the scale reaches the sampler (measured: 0.03-0.04 dB apart)
        assert abs(guided["mcd_mean"] - plain["mcd_mean"]) > 0.01
    for level in report["levels"].values():  # one real speaker posing as two: no order between the levels
        assert -1 <= level["different"] <= 1 and -1 <= level["same"] <= 1

    assert bench_voices.main(["blend", "--voice", str(voice), "--corpus", str(corpus), "--pairs", "ann:bob",
                              "--limit", "2", "--output", str(out)]) == 0
    row, = json.loads(out.read_text())["rows"]
    assert row["pair"] == "ann:bob" and set(row) >= {"A", "B", "blend", "blend_between_recorded", "blend_between_model"}
    for reading in (row["A"], row["B"], row["blend"]):
        assert all(-1 <= reading[k] <= 1 for k in ("to_recorded_A", "to_recorded_B", "to_model_A", "to_model_B"))
    assert row["A"]["to_model_A"] > row["B"]["to_model_A"]  # speakers differ even untrained (a woken velocity net)


def test_default_speaker_is_used_when_none_is_asked_for():
    hps = make_tiny_hps(**MULTI, default_speaker="bob")
    tts = TorchSynthesizer(FlowMatchingSynthesizer(len(text.symbols), hps), hps, len(text.symbols))
    assert tts.validate_speaker(None) == 1 and tts.validate_speaker("cy") == 2
    plain = make_tiny_hps(**MULTI)
    assert TorchSynthesizer(FlowMatchingSynthesizer(len(text.symbols), plain), plain, 1).validate_speaker(None) == 0
    from config import ConfigError
    with pytest.raises(ConfigError, match="default_speaker 'dee' is not one of"):
        make_tiny_hps(**MULTI, default_speaker="dee")
