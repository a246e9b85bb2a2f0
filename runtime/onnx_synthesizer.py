"""Torch-free synthesis from an export_onnx.py folder: onnxruntime for the graphs, numpy for the rest.

    from .onnx_synthesizer import OnnxSynthesizer
    tts = OnnxSynthesizer("onnx/demo_voice", threads=2)
    audio, sample_rate, info = tts.synthesize("Hello there.")       # SamplingConfig from voice.json
    python inference_flow_matching.py --onnx onnx/demo_voice --text "Hello there." --output out.wav

Same path as the torch TorchSynthesizer: sentences -> ids (text front end) -> encoder graph -> durations
round(exp(logw) * duration_scale) -> length regulation -> the ODE loop (ode.py's solvers on numpy arrays,
one velocity graph call per network evaluation) -> de-normalized mel -> vocoder graph -> sentences joined
with pauses. Noise comes from numpy's generator, so a waveform is not bit-identical to the torch path
(at temperature 0 it is, within float tolerance). Nothing here imports torch.
"""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

import excitation
import ode
from . import pipeline
from . import streaming
import text as text_lib
from sampling import SamplingConfig, is_finite_number


class OnnxVoiceError(ValueError):
    """An export folder is missing a file or does not fit this code."""


def _session(path: Path, threads: int):
    """An onnxruntime CPU session on `threads` intra-op threads that do not spin; OnnxVoiceError naming the file
    when the graph does not load (truncated, empty, not ONNX)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's own classes (InvalidProtobuf, Fail, ...): one line, not a traceback
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][-200:]
        raise OnnxVoiceError(f"{path} is not a usable ONNX graph (truncated or damaged?): {reason}; export the "
                             f"voice again with `python -m inference.export_onnx`") from None


def _positive_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x > 0


def _str_list(x) -> bool:
    return isinstance(x, list) and all(isinstance(v, str) for v in x)


# voice.json: key -> (check, what it must be). Everything the runtime reads, so a bad folder fails at load.
VOICE_KEYS = {
    "symbols": (_str_list, "a list of symbols"),
    "text_cleaners": (lambda x: _str_list(x) and bool(x) and all(c in text_lib.CLEANERS for c in x),
                      f"a list of text cleaners among {', '.join(text_lib.CLEANERS)}"),
    "language": (lambda x: isinstance(x, str) and bool(x), "an espeak language name such as en-us"),
    "add_blank": (lambda x: isinstance(x, bool), "true or false"),
    "sample_rate": (_positive_int, "a positive integer"),
    "hop_length": (_positive_int, "a positive integer"),
    "n_mel_channels": (_positive_int, "a positive integer"),
    "mel_mean": (is_finite_number, "a finite number"),
    "mel_std": (lambda x: is_finite_number(x) and x > 0, "a positive number"),
    "prior_start": (lambda x: isinstance(x, bool), "true or false"),
    "n_speakers": (lambda x: isinstance(x, int) and not isinstance(x, bool) and x >= 0, "an integer >= 0"),
    "cond_channels": (_positive_int, "a positive integer"),
}
OPTIONAL_KEYS = {
    "speaker_names": (_str_list, "a list of names"),
    "default_speaker": (lambda x: isinstance(x, str), "a speaker name"),
    "sampling": (lambda x: isinstance(x, dict), "an object of sampling settings"),
    "prosody_conditioning": (lambda x: isinstance(x, bool), "true or false"),
    "vocoder": (lambda x: x in ("mb_istft", "source_filter"), "'mb_istft' or 'source_filter'"),
}


def read_voice_json(path: Path) -> dict:
    """voice.json, checked: OnnxVoiceError naming the file for anything the runtime could not use."""
    def bad(problem: str) -> OnnxVoiceError:
        return OnnxVoiceError(f"{path} is not a valid voice.json: {problem}; export the voice again with "
                              f"`python -m inference.export_onnx VOICE.pth {path.parent}`")

    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(f"not JSON ({e})") from None
    except OSError as e:
        raise OnnxVoiceError(f"{path} cannot be read: {e.strerror or e}") from None
    if not isinstance(info, dict):
        raise bad(f"it holds a JSON {type(info).__name__}, not an object")
    for key, (ok, what) in VOICE_KEYS.items():
        if key not in info:
            raise bad(f"it lacks {key!r}")
        if not ok(info[key]):
            raise bad(f"{key} must be {what}, got {info[key]!r:.80}")
    for key, (ok, what) in OPTIONAL_KEYS.items():
        if key in info and not ok(info[key]):
            raise bad(f"{key} must be {what}, got {info[key]!r:.80}")
    names = info.get("speaker_names", [])
    if names and len(names) != max(info["n_speakers"], 1):
        raise bad(f"{len(names)} speaker_names for {info['n_speakers']} speakers")
    if info.get("default_speaker") and info["default_speaker"] not in names:
        raise bad(f"default_speaker {info['default_speaker']!r} is not among speaker_names")
    try:
        _sampling(info)
    except (TypeError, ValueError) as e:
        raise bad(f"sampling: {e}") from None
    return info


def _sampling(info: dict) -> SamplingConfig:
    """The default SamplingConfig stored in voice.json (its known fields; ValueError for a bad value)."""
    stored = info.get("sampling", {})
    return SamplingConfig(**{f.name: stored[f.name] for f in fields(SamplingConfig) if f.name in stored})


# Inputs each graph must take (export_onnx.py), and the voice.json size its channel axis must have.
GRAPH_INPUTS = {"encoder": {"ids": None, "lengths": None}, "velocity": {"x": "n_mel_channels", "mask": None,
                "cond": "cond_channels", "t": None}, "vocoder": {"mel": "n_mel_channels"},
                "pitch": {"mel": "n_mel_channels"}}


def _check_graph(session, role: str, path: Path, info: dict) -> None:
    """OnnxVoiceError unless the graph takes the inputs of its role with voice.json's channel counts."""
    inputs = {i.name: i.shape for i in session.get_inputs()}
    if role == "encoder" and info["n_speakers"] > 1 and "speaker_weights" not in inputs:
        raise OnnxVoiceError(f"{path} takes speaker ids, not speaker weights: it was exported before voice "
                             f"blending; export the voice again")
    if role == "encoder" and info.get("prosody_conditioning") and "prosody_edit" not in inputs:
        raise OnnxVoiceError(f"{path} takes no prosody_edit but voice.json says the voice has prosody conditioning: "
                             f"the files come from different exports; export the voice again")
    if role == "vocoder" and (info.get("vocoder") == "source_filter") != ("f0" in inputs):
        raise OnnxVoiceError(f"{path} does not fit voice.json's vocoder {info.get('vocoder', 'mb_istft')!r}: the "
                             f"files come from different exports; export the voice again")
    for name, key in GRAPH_INPUTS[role].items():
        if name not in inputs:
            raise OnnxVoiceError(f"{path} is not a {role} graph (no input {name!r}; it takes "
                                 f"{', '.join(inputs)}); export the voice again")
        shape = inputs[name]
        if key and len(shape) == 3 and isinstance(shape[1], int) and shape[1] != info[key]:
            raise OnnxVoiceError(f"{path} takes {shape[1]} channels in {name!r} but voice.json says {key} "
                                 f"{info[key]}: the files come from different exports; export the voice again")


class _Data:
    """The fields of voice.json that text_lib.text_to_ids reads (a DataConfig stand-in)."""

    def __init__(self, info: dict):
        self.text_cleaners, self.language, self.add_blank = info["text_cleaners"], info["language"], info["add_blank"]
        self.speaker_names = info.get("speaker_names", [])
        self.default_speaker = info.get("default_speaker", "")


class OnnxSynthesizer(pipeline.SpeechPipeline):
    """Text -> waveform with the graphs of an export folder (see export_onnx.py); synthesize, stream and the
    text front end come from pipeline.SpeechPipeline. Sampling defaults: voice.json's.

    The folder is checked completely here (voice.json's keys and values, every graph loads and fits), so a
    server refuses a broken folder at start-up: OnnxVoiceError, one line naming the file."""

    def __init__(self, folder: Union[str, Path], threads: Optional[int] = None, int8: bool = False):
        folder = Path(folder)
        info_path = folder / "voice.json"
        if not info_path.is_file():
            raise OnnxVoiceError(f"{folder} is not an ONNX voice folder (no voice.json); make one with "
                                 f"`python -m inference.export_onnx VOICE.pth {folder}`")
        self.info = read_voice_json(info_path)
        if self.info["symbols"] != list(text_lib.symbols):
            raise OnnxVoiceError(f"{info_path} lists another symbol table than this code's text front end; "
                                 f"export the voice again with this version")
        # `threads` cores: the velocity net uses them as intra-op threads, without spinning (spinning
        # threads slowed it down here); the vocoder, whose convolutions gain nothing from intra-op threads,
        # instead vocodes that many pieces of the mel at once, each on one thread (with context, as
        # streaming does: the same samples).
        self.workers = max(1, threads or 1)
        names = {"encoder": "encoder", "velocity": "velocity_int8" if int8 else "velocity",
                 "vocoder": "vocoder_int8" if int8 else "vocoder"}
        self.source_filter = self.info.get("vocoder") == "source_filter"
        if self.source_filter:
            names["pitch"] = "pitch"
        self.sessions = {}
        for role, name in names.items():
            path = folder / f"{name}.onnx"
            if not path.is_file():
                hint = " (export with --int8)" if int8 else ""
                raise OnnxVoiceError(f"{path} is missing{hint}")
            self.sessions[role] = _session(path, self.workers if role == "velocity" else 1)
            _check_graph(self.sessions[role], role, path, self.info)
        self._pool = ThreadPoolExecutor(self.workers) if self.workers > 1 else None
        self.data = _Data(self.info)
        self._vocoder_takes_speaker = "g" in {i.name for i in self.sessions["vocoder"].get_inputs()}
        self.default_sampling = _sampling(self.info)
        # why cfg_scale > 0 cannot work for this voice, or None (exports older than this key: not refused)
        self.guidance_refusal = self.info.get("guidance_refusal")

    @property
    def sample_rate(self) -> int:
        return int(self.info["sample_rate"])

    @property
    def n_speakers(self) -> int:
        return int(self.info["n_speakers"])

    @property
    def hop_length(self) -> int:
        return int(self.info["hop_length"])

    @property
    def realises_prosody(self) -> bool:
        return bool(self.info.get("prosody_conditioning", False))

    # -- synthesis ------------------------------------------------------------------------------------

    def mel(self, ids: Sequence[int], sampling: SamplingConfig, rng: np.random.Generator,
            speaker_weights: Optional[np.ndarray] = None) -> Tuple[np.ndarray, Optional[np.ndarray], int, List[int]]:
        """One sentence's ids -> (de-normalized log-mel (1, n_mels, T), speaker conditioning or None, NFE,
        frames per token). speaker_weights: speaker_weights(speaker), None exactly for single-speaker voices."""
        feeds = {"ids": np.asarray([ids], dtype=np.int64), "lengths": np.asarray([len(ids)], dtype=np.int64)}
        if speaker_weights is not None:
            feeds["speaker_weights"] = speaker_weights[None]
        if self.realises_prosody:
            feeds["prosody_edit"] = np.asarray([sampling.prosody_edit], dtype=np.float32)
        h, mu, logw, *g = self.sessions["encoder"].run(None, feeds)
        g = g[0] if g else None
        # flow_matching.frames_per_token's rule (round, at least 1), in numpy
        durations = np.maximum(np.round(np.exp(logw[0].astype(np.float64)) * sampling.duration_scale), 1).astype(np.int64)
        frames = np.repeat(np.arange(len(ids)), durations)  # length regulation: token index of every frame
        h_y, mu_y = h[:, :, frames], mu[:, :, frames]
        cond = np.concatenate([h_y, mu_y], axis=1)
        extra = int(self.info["cond_channels"]) - cond.shape[1]  # a prompt_context model's (empty) mel context
        cond = np.concatenate([cond, np.zeros((1, extra, cond.shape[2]), np.float32)], axis=1) if extra else cond
        mask = np.ones((1, 1, len(frames)), dtype=np.float32)
        x = rng.standard_normal(mu_y.shape, dtype=np.float32) * np.float32(sampling.temperature)
        if self.info["prior_start"]:
            x = x + mu_y
        f = self._velocity(cond, mask, g, sampling.cfg_scale)
        x, nfe = ode.solve(f, x, sampling.time_grid_array().astype(np.float32), sampling.method)
        return x * np.float32(self.info["mel_std"]) + np.float32(self.info["mel_mean"]), g, nfe, durations.tolist()

    def _velocity(self, cond: np.ndarray, mask: np.ndarray, g: Optional[np.ndarray], scale: float) -> Callable:
        """v(x_t, t) for the ODE loop; with scale > 0 classifier-free guidance from one call on a batch of two
        (conditional, then no condition and the null speaker), as flow_matching does."""
        velocity = self.sessions["velocity"]
        guided = scale > 0
        if guided:
            cond = np.concatenate([cond, np.zeros_like(cond)])
            mask = np.concatenate([mask, mask])
            g = None if g is None else np.concatenate([g, np.zeros_like(g)])

        def f(x_t, t):
            x_in = np.concatenate([x_t, x_t]) if guided else x_t
            feeds = {"x": x_in.astype(np.float32), "mask": mask, "cond": cond,
                     "t": np.full((x_in.shape[0],), t, dtype=np.float32)}
            if g is not None:
                feeds["g"] = g
            v = velocity.run(None, feeds)[0]
            return v[:1] + np.float32(scale) * (v[:1] - v[1:]) if guided else v
        return f

    def vocode(self, mel: np.ndarray, g: Optional[np.ndarray] = None) -> np.ndarray:
        """(1, n_mels, T) log-mel -> (T * hop,) float32 waveform; in `workers` pieces run at once."""
        n = mel.shape[-1]
        piece = -(-n // self.workers)
        if self._pool is None or piece < streaming.CONTEXT_FRAMES:
            return self.vocode_window(mel, g, 0, n)
        windows = streaming.vocoder_windows(n, chunk=piece, first_chunk=piece)
        hop = self.hop_length
        parts = self._pool.map(lambda w: self.vocode_window(mel, g, w[2], w[3])[(w[0] - w[2]) * hop:
                                                                              (w[1] - w[2]) * hop], windows)
        return np.concatenate(list(parts))

    def vocode_window(self, mel: np.ndarray, g: Optional[np.ndarray], left: int, right: int) -> np.ndarray:
        """Frames [left, right) of the clip's mel (1, n_mels, T) -> ((right - left) * hop,) (pipeline.stream_sentences)."""
        mel = mel.astype(np.float32)
        feeds = {"mel": mel[..., left:right]}
        if g is not None and self._vocoder_takes_speaker:
            feeds["g"] = g
        if self.source_filter:  # the whole clip's pitch, the pulses' phase and the noise where the window starts
            f0, voicing = self.sessions["pitch"].run(None, {"mel": mel})
            feeds.update(f0=f0[:, left:right], voicing=voicing[:, left:right],
                         cycles0=excitation.start_cycles(f0, left, self.hop_length, self.sample_rate),
                         noise=excitation.noise_window(left * self.hop_length, (right - left) * self.hop_length)[None])
        return self.sessions["vocoder"].run(None, feeds)[0][0, 0]

    def sentence_steps(self, sampling: SamplingConfig, speaker: pipeline.Speaker):
        """(mel_of, vocode) for pipeline.stream_sentences."""
        weights = self.speaker_weights(speaker)

        def mel_of(ids, sentence_seed):
            return self.mel(ids, sampling, np.random.default_rng(sentence_seed), weights)[:3]

        return mel_of, self.vocode_window

    def synthesize_ids(self, sequences: Sequence[Sequence[int]], sampling: Optional[SamplingConfig] = None,
                       speaker: pipeline.Speaker = None, seed: int = 0) -> Tuple[List[np.ndarray], Dict[str, float]]:
        weights = self.speaker_weights(speaker)
        # One generator per sentence, seeded from (seed, index), as the torch TorchSynthesizer does.
        seeds = np.random.SeedSequence(int(seed)).generate_state(max(len(sequences), 1), dtype=np.uint64)
        info = {"nfe": sampling.nfe, "acoustic_seconds": 0.0, "vocoder_seconds": 0.0, "durations": []}
        waves = []
        for ids, s in zip(sequences, seeds):
            t0 = time.perf_counter()
            mel, g, info["nfe"], durations = self.mel(ids, sampling, np.random.default_rng(int(s)), weights)
            info["durations"].append(durations)
            t1 = time.perf_counter()
            waves.append(self.vocode(mel, g))
            info["acoustic_seconds"] += t1 - t0
            info["vocoder_seconds"] += time.perf_counter() - t1
        return waves, info
