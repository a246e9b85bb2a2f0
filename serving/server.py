"""An OpenAI-compatible speech server with a web page: one or more voice files, one synthesis at a time.

    python -m serving.server                                   # the default voice on http://127.0.0.1:8000
    python -m serving.server --checkpoint pretrained/multispeaker.pth my_clone/voice.pth
    python -m serving.server --onnx onnx/demo_voice            # the torch-free runtime
    curl -s 127.0.0.1:8000/v1/audio/speech -H 'Content-Type: application/json' \
        -d '{"model": "flow-tts", "input": "Hello there.", "voice": "awb"}' -o hello.wav

Endpoints:
  POST /v1/audio/speech  OpenAI's fields: model (any string), input (text, at most --max-chars), voice (a
                         name from /v1/voices: a speaker of a multi-speaker voice file, or a single-speaker
                         file's name; or a blend of one file's speakers, "awb(7)+slt_hts(3)"; left out: the
                         first file's default speaker), response_format wav | pcm |
                         flac | json, speed (0.25 to 4; 2 speaks twice as fast). Extras: steps, seed (0 to
                         2**32 - 1), cfg_scale (guidance; only for voices trained with it), pitch
                         (semitones, -12 to 12), pitch_range (0 to 3, 1 as predicted), energy (dB, -20 to 20)
                         (pitch and energy: voices with prosody conditioning). An input that
                         starts with <speak> is SSML (docs/inference.md), spoken whole. Left out, steps and
                         cfg_scale are the voice file's own defaults. pcm streams while the text is spoken;
                         wav, flac come whole (the WAV header then holds the true length); json gives
                         {"audio": base64 WAV, "sample_rate", "timings": {"words", "phonemes"}}.
  GET  /v1/voices        {"voices": [{"name", "voice_file", "speaker", "sample_rate", "guidance", "defaults",
                         "prosody" (whether pitch, pitch_range and energy are realised)}]}
  GET  /health           {"status": "ok", "voices", "busy": requests admitted and not yet finished}
  GET  /                 the web page (serving/web/index.html)
Every error is OpenAI's JSON shape {"error": {"message", "type", "code"}}: 400 (bad values), 404, 405, 411
(a body without Content-Length), 413 (input or body too long), 422 (malformed JSON, unknown fields), 503
(queue full); never a 500 for the caller's mistakes. One synthesis runs at a time, up to --max-queue more
wait. A client that goes away frees the model at the next audio chunk and its queue slot at once. SIGTERM
stops new connections, lets running requests finish (at most --drain-seconds) and exits.
Binds to 127.0.0.1 unless --host says otherwise.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import functools
import io
import socket
import struct
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import AsyncIterator, Dict, Iterator, List, Optional, Union

import numpy as np
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException

from audio import to_pcm16
from runtime.speaker_blend import is_blend, parse_blend
from sampling import MAX_CFG_SCALE, MAX_STEPS
from text.ssml import SsmlWarning, looks_like_ssml

HERE = Path(__file__).resolve().parent
WEB_PAGE = HERE / "web" / "index.html"
FORMATS = ("wav", "pcm", "flac", "json")
MAX_CHARS = 4096
MAX_SEED = 2 ** 32 - 1


class SpeechError(Exception):
    """A request the server refuses: HTTP status and a message for the caller."""

    def __init__(self, status: int, message: str, code: str = "invalid_request"):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class SpeechRequest(BaseModel):
    """OpenAI's speech request (model, input, voice, response_format, speed) and the project's extras.
    Unknown fields are refused, so a misspelt or unsupported option is not silently ignored."""
    model_config = ConfigDict(extra="forbid")
    model: str = "flow-tts"
    input: str
    voice: Optional[str] = None  # None: the first voice file's default speaker
    response_format: str = "wav"
    speed: float = 1.0
    steps: Optional[int] = None
    seed: int = 0
    cfg_scale: Optional[float] = None
    pitch: float = 0.0
    pitch_range: float = 1.0
    energy: float = 0.0


@dataclasses.dataclass(frozen=True)
class Voice:
    """One name a client passes as `voice`: a voice file's synthesizer and the speaker in it (None: its default)."""
    name: str
    voice_file: str
    tts: object
    speaker: Union[None, int, str]


def voice_catalog(voice_files: Dict[str, object]) -> Dict[str, Voice]:
    """name -> Voice for every speaker of every voice file. A speaker is named as in its file; a name that an
    earlier file already uses becomes FILE:SPEAKER; a single-speaker file is named after the file."""
    catalog: Dict[str, Voice] = {}
    for file, tts in voice_files.items():
        names = tts.speaker_names
        speakers = names or (list(range(tts.n_speakers)) if tts.n_speakers > 1 else [None])
        for speaker in speakers:
            if speaker is None:
                name = file
            elif names and speaker not in catalog:
                name = speaker
            else:  # unnamed speakers, or a name an earlier file took
                name = f"{file}:{speaker}"
            if name in catalog:
                raise ValueError(f"two voice files are both named {file!r}; rename one of them")
            catalog[name] = Voice(name, file, tts, speaker)
    return catalog


def resolve_voice(catalog: Dict[str, Voice], name: str):
    """A request's `voice` -> (synthesizer, speaker): a catalog name, or a blend of catalog names of one voice file
    ("awb(7)+slt_hts(3)", runtime/speaker_blend.py), passed on as a blend of that file's own speakers.
    ValueError for an unknown name, a malformed blend or one across voice files."""
    if name in catalog:
        return catalog[name].tts, catalog[name].speaker
    if not is_blend(name):
        raise ValueError(f"unknown voice {name!r}; available: {', '.join(catalog)}")
    parts = parse_blend(name)
    unknown = [part for part, _ in parts if part not in catalog]
    if unknown:
        raise ValueError(f"unknown voice {unknown[0]!r} in the blend {name!r}; available: {', '.join(catalog)}")
    files = {catalog[part].voice_file for part, _ in parts}
    if len(files) > 1:
        raise ValueError(f"the blend {name!r} mixes voice files ({', '.join(sorted(files))}); blend speakers of "
                         f"one voice file")
    voice = catalog[parts[0][0]]
    if voice.speaker is None:
        raise ValueError(f"{voice.voice_file} has a single speaker; there is nothing to blend")
    return voice.tts, ",".join(f"{catalog[part].speaker}:{weight:g}" for part, weight in parts)


class SynthesisQueue:
    """One synthesis at a time on the shared model; at most `max_waiting` requests wait, the rest get 503.
    Used from the event loop only, so the counter needs no lock. The model runs on one worker thread, always
    the same: calls cannot overlap, and memory stays in one allocator arena instead of growing one per thread."""

    def __init__(self, max_waiting: int):
        self.model = asyncio.Lock()
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="synthesis")
        self.max_waiting = max_waiting
        self.admitted = 0

    async def run(self, fn, *args, **kwargs):
        """fn(*args, **kwargs) on the worker thread. If the caller is cancelled, the call still finishes there
        (before any later one), so a generator is never closed while it runs."""
        return await asyncio.wrap_future(self.worker.submit(functools.partial(fn, *args, **kwargs)))

    def admit(self) -> None:
        if self.admitted > self.max_waiting:  # one running + max_waiting waiting
            raise SpeechError(503, "the server is busy (queue full); retry in a moment", "server_busy")
        self.admitted += 1

    def release(self) -> None:
        self.admitted -= 1


def wav_header(sample_rate: int, n_samples: int) -> bytes:
    """A 16-bit mono WAV header for n_samples samples."""
    data = 2 * n_samples
    return (b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, 2 * sample_rate, 2, 16) + b"data" + struct.pack("<I", data))


def error_response(status: int, message: str, code: str, headers: Optional[dict] = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": code}}, status_code=status,
                        headers=headers)


class BodyLimit:
    """ASGI middleware: a request whose Content-Length exceeds `limit` bytes gets 413 before its body is read;
    one with a body but no Content-Length (chunked) gets 411. So no request can make the server buffer more."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            length = headers.get(b"content-length")
            if length is None and b"transfer-encoding" in headers:
                return await error_response(411, "send the request body with a Content-Length header",
                                            "length_required")(scope, receive, send)
            if length is not None and (not length.isdigit() or int(length) > self.limit):
                return await error_response(413, f"the request body is over {self.limit} bytes; send only the "
                                                 f"fields of a speech request", "body_too_large")(scope, receive, send)
        await self.app(scope, receive, send)


def create_app(voice_files: Dict[str, object], max_queue: int = 4, max_chars: int = MAX_CHARS):
    """The ASGI app. voice_files: name -> a synthesizer (TorchSynthesizer or OnnxSynthesizer); see voice_catalog."""
    catalog = voice_catalog(voice_files)
    default_tts = next(iter(voice_files.values()))
    app = FastAPI(title="flow-matching TTS", description=__doc__.split("\n\n")[0])
    queue = SynthesisQueue(max_queue)

    class SlotStreamingResponse(StreamingResponse):
        """Closes its body and gives the queue slot back however the response ends: finished, failed, or the
        client gone before the first byte or in the middle."""

        async def __call__(self, scope, receive, send):
            try:
                await super().__call__(scope, receive, send)
            finally:
                await self.body_iterator.aclose()
                queue.release()

    @app.exception_handler(SpeechError)
    async def speech_error(_: Request, e: SpeechError):
        return error_response(e.status, e.message, e.code)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, e: HTTPException):
        return error_response(e.status_code, str(e.detail), str(e.detail).lower().replace(" ", "_"),
                              getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        if first.get("type") == "extra_forbidden":
            fields = ", ".join(SpeechRequest.model_fields)
            return error_response(422, f"unknown field {where!r}; the fields are {fields} (voice names the "
                                       f"speaker)", "unknown_field")
        return error_response(422, f"{where}: {first.get('msg', 'invalid request')}" if where else
                              "invalid request body", "invalid_field")

    def check(req: SpeechRequest):
        """(synthesizer, speaker, SamplingConfig) for a request, or SpeechError."""
        try:
            tts, speaker = resolve_voice(catalog, req.voice) if req.voice is not None else (default_tts, None)
        except ValueError as e:
            raise SpeechError(400, str(e), "unknown_voice") from None
        if req.response_format not in FORMATS:
            raise SpeechError(400, f"response_format {req.response_format!r} is not supported; use one of "
                                   f"{', '.join(FORMATS)}", "unsupported_format")
        if not req.input.strip():
            raise SpeechError(400, "input is empty; give some text to speak", "empty_input")
        if len(req.input) > max_chars:
            raise SpeechError(413, f"input has {len(req.input)} characters; the limit is {max_chars} (split the "
                                   f"text into several requests)", "input_too_long")
        if not 0.25 <= req.speed <= 4.0:
            raise SpeechError(400, f"speed must be in [0.25, 4.0], got {req.speed}", "invalid_speed")
        if req.steps is not None and not 1 <= req.steps <= MAX_STEPS:
            raise SpeechError(400, f"steps must be in [1, {MAX_STEPS}], got {req.steps}", "invalid_steps")
        if not 0 <= req.seed <= MAX_SEED:
            raise SpeechError(400, f"seed must be in [0, {MAX_SEED}], got {req.seed}", "invalid_seed")
        sampling = tts.default_sampling.replace(duration_scale=1.0 / req.speed)
        if req.steps is not None:
            sampling = sampling.replace(steps=req.steps)
        if req.cfg_scale is not None:
            if not 0 <= req.cfg_scale <= MAX_CFG_SCALE:
                raise SpeechError(400, f"cfg_scale must be in [0, {MAX_CFG_SCALE:g}], got {req.cfg_scale}",
                                  "invalid_cfg_scale")
            refusal = tts.guidance_refusal
            if req.cfg_scale > 0 and refusal:
                raise SpeechError(400, refusal, "guidance_unsupported")
            sampling = sampling.replace(cfg_scale=req.cfg_scale)
        try:
            sampling = sampling.replace(pitch_shift=req.pitch, pitch_range=req.pitch_range, energy_db=req.energy)
        except ValueError as e:
            raise SpeechError(400, str(e), "invalid_prosody") from None
        try:
            tts.check_sampling(sampling)
        except ValueError as e:
            raise SpeechError(400, str(e), "prosody_unsupported") from None
        try:
            if looks_like_ssml(req.input):
                with warnings.catch_warnings():  # what is accepted but not realised is not the caller's error
                    warnings.simplefilter("ignore", SsmlWarning)
                    tts.ssml_segments(req.input, sampling)
            else:
                tts.text_to_ids(tts.sentences(req.input)[0])
        except ValueError as e:
            raise SpeechError(400, str(e), "unspeakable_input") from None
        return tts, speaker, sampling

    async def pcm_stream(chunks: Iterator[np.ndarray], request: Request) -> AsyncIterator[bytes]:
        """16-bit PCM chunk by chunk under the model lock, each computed on the model's thread; a client that
        has gone stops the synthesis before the next chunk."""
        try:
            async with queue.model:
                while not await request.is_disconnected():
                    chunk = await queue.run(next, chunks, None)
                    if chunk is None:
                        break
                    yield to_pcm16(chunk)
        finally:
            queue.worker.submit(chunks.close)  # after the chunk in flight, if any

    @app.post("/v1/audio/speech")
    async def speech(req: SpeechRequest, request: Request):
        tts, speaker, sampling = await run_in_threadpool(check, req)
        queue.admit()
        ssml = looks_like_ssml(req.input)
        if req.response_format == "pcm" and not ssml:
            try:
                chunks = tts.stream(req.input, sampling, speaker=speaker, seed=req.seed)
            except BaseException:
                queue.release()
                raise
            return SlotStreamingResponse(pcm_stream(chunks, request), media_type="audio/pcm",
                                         headers={"X-Sample-Rate": str(tts.sample_rate)})
        try:
            async with queue.model:
                if await request.is_disconnected():  # gave up while waiting: nobody to answer
                    return Response(status_code=499)
                if ssml:  # spoken whole, in every format
                    audio, sr, info = await queue.run(tts.synthesize_ssml, req.input, sampling, speaker, req.seed)
                else:
                    audio, sr, info = await queue.run(tts.synthesize, req.input, sampling, speaker=speaker,
                                                      seed=req.seed, timings=req.response_format == "json")
        finally:
            queue.release()
        if req.response_format == "pcm":
            return Response(to_pcm16(audio), media_type="audio/pcm", headers={"X-Sample-Rate": str(sr)})
        if req.response_format == "flac":
            import soundfile as sf

            buffer = io.BytesIO()
            sf.write(buffer, np.clip(audio, -1, 1), sr, format="FLAC", subtype="PCM_16")
            return Response(buffer.getvalue(), media_type="audio/flac")
        wav = wav_header(sr, len(audio)) + to_pcm16(audio)
        if req.response_format == "wav":
            return Response(wav, media_type="audio/wav")
        return JSONResponse({"audio": base64.b64encode(wav).decode("ascii"), "sample_rate": sr,
                             "audio_seconds": len(audio) / sr, "timings": info.get("timings")})

    @app.get("/v1/voices")
    def list_voices():
        return {"voices": [{"name": v.name, "voice_file": v.voice_file, "speaker": v.speaker,
                            "sample_rate": v.tts.sample_rate, "guidance": v.tts.guidance_refusal is None,
                            "defaults": dataclasses.asdict(v.tts.default_sampling),
                            "prosody": v.tts.realises_prosody} for v in catalog.values()]}

    @app.get("/health")
    def health():
        return {"status": "ok", "voices": list(catalog), "busy": queue.admitted}

    @app.get("/")
    def page():
        return FileResponse(WEB_PAGE, media_type="text/html")

    # a request body holds at most max_chars characters of 6 bytes each (JSON's \\uXXXX) and a few short fields
    return BodyLimit(app, 6 * max_chars + 16384)


def load_voice_files(checkpoints: List[str], onnx_dirs: List[str], device: str, threads: Optional[int],
                     int8: bool) -> Dict[str, object]:
    """name (the file's stem, an ONNX folder's name) -> synthesizer; every file is checked completely here,
    so a broken one stops the server before it starts."""
    voices: Dict[str, object] = {}

    def add(name: str, path: str, tts) -> None:
        if name in voices:
            raise ValueError(f"two voice files are both named {name!r} ({path}); copy one under another name")
        voices[name] = tts

    for folder in onnx_dirs:
        from runtime.onnx_synthesizer import OnnxSynthesizer
        add(Path(folder).resolve().name, folder, OnnxSynthesizer(folder, threads=threads, int8=int8))
    if checkpoints or not onnx_dirs:
        import torch

        from inference.synthesizer import TorchSynthesizer
        from training.voice_file import DEFAULT_VOICE
        if threads:
            torch.set_num_threads(threads)
        for path in checkpoints or [str(DEFAULT_VOICE)]:
            add(Path(path).stem, path, TorchSynthesizer.from_checkpoint(path, device=device))
    return voices


def check_port_free(host: str, port: int) -> None:
    """OSError with one line when host:port cannot be bound (in use, or not an address of this machine)."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:
        raise OSError(f"cannot listen on {host}:{port} ({e.strerror or e}); choose another --port or --host") from None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", nargs="+", default=[], metavar="VOICE",
                   help="voice files or G_<step>.pth (default: pretrained/multispeaker.pth unless --onnx is given)")
    p.add_argument("--onnx", nargs="+", default=[], metavar="DIR", help="export_onnx.py folders (torch-free runtime)")
    p.add_argument("--int8", action="store_true", help="with --onnx: the int8 graphs")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--max-queue", type=int, default=4, help="requests that may wait for the model (default 4)")
    p.add_argument("--max-chars", type=int, default=MAX_CHARS, help=f"longest input (default {MAX_CHARS})")
    p.add_argument("--drain-seconds", type=float, default=30.0,
                   help="on SIGTERM, how long running requests may finish (default 30)")
    args = p.parse_args(argv)
    for name, low, high in (("port", 1, 65535), ("max_queue", 0, 10000), ("max_chars", 1, 10 ** 6),
                            ("threads", 1, 1024), ("drain_seconds", 0, 3600)):
        value = getattr(args, name)
        if value is not None and not low <= value <= high:
            p.error(f"--{name.replace('_', '-')} must be in [{low}, {high}], got {value}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        check_port_free(args.host, args.port)
        voices = load_voice_files(args.checkpoint, args.onnx, args.device, args.threads, args.int8)
        app = create_app(voices, args.max_queue, args.max_chars)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, timeout_graceful_shutdown=args.drain_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
