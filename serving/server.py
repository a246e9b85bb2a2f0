"""An OpenAI-compatible speech server with a web page: one model instance, safe under concurrent requests.

    python -m serving.server                                     # the default voice on http://127.0.0.1:8000
    python -m serving.server --onnx onnx/demo_voice --name demo  # the torch-free runtime
    curl -s 127.0.0.1:8000/v1/audio/speech -H 'Content-Type: application/json' \
        -d '{"model": "flow-tts", "input": "Hello there.", "voice": "demo"}' -o hello.wav

Endpoints:
  POST /v1/audio/speech  OpenAI's fields: model (any string), input (text, at most --max-chars), voice (a
                         name from /v1/voices), response_format wav | pcm | flac | json, speed (0.25 to 4;
                         2 speaks twice as fast). Extras: steps, seed, cfg_scale (guidance: only 0 or 1
                         until a model is trained with it). wav and pcm stream while the text is spoken
                         (the WAV header then says "length unknown"); flac comes whole; json gives
                         {"audio": base64 WAV, "sample_rate", "timings": {"words", "phonemes"}}.
  GET  /v1/voices        [{"name", "sample_rate", "speakers"}]
  GET  /health           {"status": "ok", ...}
  GET  /                 the web page (serving/web/index.html)
Bad requests get a JSON error {"error": {"message", "type", "code"}} with 400 (empty input, unknown
voice or format, bad values), 413 (input too long) or 422 (malformed JSON / fields); never a 500 for
the caller's mistakes. One synthesis runs at a time; up to --max-queue more wait; beyond that 503.
Binds to 127.0.0.1 unless --host says otherwise.
"""
from __future__ import annotations

import argparse
import base64
import io
import struct
import sys
import threading
from pathlib import Path
from typing import Dict, Iterator, Optional

import numpy as np
from pydantic import BaseModel

from audio import to_pcm16
from sampling import MAX_STEPS

HERE = Path(__file__).resolve().parent
WEB_PAGE = HERE / "web" / "index.html"
FORMATS = ("wav", "pcm", "flac", "json")
MAX_CHARS = 4096


class SpeechError(Exception):
    """A request the server refuses: HTTP status and a message for the caller."""

    def __init__(self, status: int, message: str, code: str = "invalid_request"):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class SpeechRequest(BaseModel):
    """OpenAI's speech request (model, input, voice, response_format, speed) and the project's extras."""
    model: str = "flow-tts"
    input: str
    voice: Optional[str] = None  # None: the server's first voice
    response_format: str = "wav"
    speed: float = 1.0
    steps: Optional[int] = None
    seed: int = 0
    cfg_scale: Optional[float] = None


class SynthesisQueue:
    """One synthesis at a time on the shared model; at most `max_waiting` requests wait, the rest get 503."""

    def __init__(self, max_waiting: int):
        self.lock = threading.Lock()
        self.max_waiting = max_waiting
        self.admitted = 0
        self.count_lock = threading.Lock()

    def admit(self) -> None:
        with self.count_lock:
            if self.admitted > self.max_waiting:  # one running + max_waiting waiting
                raise SpeechError(503, "the server is busy (queue full); retry in a moment", "server_busy")
            self.admitted += 1

    def release(self) -> None:
        with self.count_lock:
            self.admitted -= 1


def wav_header(sample_rate: int, n_samples: Optional[int] = None) -> bytes:
    """A 16-bit mono WAV header; n_samples None writes the 'unknown length' sizes used for streaming."""
    data = 0xFFFFFFFF - 36 if n_samples is None else 2 * n_samples
    return (b"RIFF" + struct.pack("<I", min(0xFFFFFFFF, 36 + data)) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, 2 * sample_rate, 2, 16) + b"data" + struct.pack("<I", data))


def create_app(voices: Dict[str, object], max_queue: int = 4, max_chars: int = MAX_CHARS):
    """The FastAPI app. voices: name -> a synthesizer (synthesize.Synthesizer or onnx_runtime.OnnxSynthesizer)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse

    app = FastAPI(title="flow-matching TTS", description=__doc__.split("\n\n")[0])
    queue = SynthesisQueue(max_queue)

    def error(status: int, message: str, code: str) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": "invalid_request_error" if status < 500
                                       else "server_error", "code": code}}, status_code=status)

    @app.exception_handler(SpeechError)
    async def speech_error(_: Request, e: SpeechError):
        return error(e.status, e.message, e.code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error(422, f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request body",
                     "invalid_field")

    def check(req: SpeechRequest):
        """(synthesizer, SamplingConfig) for a request, or SpeechError."""
        req.voice = req.voice or next(iter(voices))
        if req.voice not in voices:
            raise SpeechError(400, f"unknown voice {req.voice!r}; available: {', '.join(voices)}", "unknown_voice")
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
        if req.cfg_scale not in (None, 0.0, 1.0):
            raise SpeechError(400, "this voice was trained without classifier-free guidance: cfg_scale must be "
                                   "0 or 1 (or left out)", "guidance_unsupported")
        tts = voices[req.voice]
        sampling = tts.default_sampling.replace(duration_scale=1.0 / req.speed, **({"steps": req.steps} if req.steps else {}))
        try:
            sentences = tts.sentences(req.input)
            tts.text_to_ids(sentences[0])
        except ValueError as e:
            raise SpeechError(400, str(e), "unspeakable_input") from None
        return tts, sampling

    def locked(chunks: Iterator[bytes]) -> Iterator[bytes]:
        """Run a synthesis generator under the model lock; the queue slot is freed when it ends (the
        server always starts a response body it created, so the slot is not lost)."""
        try:
            with queue.lock:
                yield from chunks
        finally:
            queue.release()

    @app.post("/v1/audio/speech")
    def speech(req: SpeechRequest):
        tts, sampling = check(req)
        queue.admit()
        sr = tts.sample_rate
        if req.response_format in ("wav", "pcm"):
            pcm = (to_pcm16(chunk) for chunk in tts.stream(req.input, sampling, seed=req.seed))
            body = _prefixed(wav_header(sr), pcm) if req.response_format == "wav" else pcm
            return StreamingResponse(locked(body), media_type=f"audio/{req.response_format}",
                                     headers={"X-Sample-Rate": str(sr)})
        try:
            with queue.lock:
                audio, sr, info = tts.synthesize(req.input, sampling, seed=req.seed, timings=req.response_format == "json")
        finally:
            queue.release()
        if req.response_format == "flac":
            import soundfile as sf

            buffer = io.BytesIO()
            sf.write(buffer, np.clip(audio, -1, 1), sr, format="FLAC", subtype="PCM_16")
            return Response(buffer.getvalue(), media_type="audio/flac")
        wav = wav_header(sr, len(audio)) + to_pcm16(audio)
        return JSONResponse({"audio": base64.b64encode(wav).decode("ascii"), "sample_rate": sr,
                             "audio_seconds": len(audio) / sr, "timings": info["timings"]})

    @app.get("/v1/voices")
    def list_voices():
        return {"voices": [{"name": name, "sample_rate": tts.sample_rate, "speakers": tts.n_speakers}
                           for name, tts in voices.items()]}

    @app.get("/health")
    def health():
        return {"status": "ok", "voices": list(voices), "busy": queue.admitted}

    @app.get("/")
    def page():
        return FileResponse(WEB_PAGE, media_type="text/html")

    return app


def _prefixed(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def load_voice_for_server(args) -> object:
    if args.onnx:
        from runtime.onnx_synthesizer import OnnxSynthesizer
        return OnnxSynthesizer(args.onnx, threads=args.threads, int8=args.int8)
    import torch

    from inference.synthesizer import TorchSynthesizer
    if args.threads:
        torch.set_num_threads(args.threads)
    from training.voice_file import DEFAULT_VOICE
    return TorchSynthesizer.from_checkpoint(args.checkpoint or DEFAULT_VOICE, device=args.device)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="voice file or G_<step>.pth (default: pretrained/multispeaker.pth)")
    p.add_argument("--onnx", metavar="DIR", help="serve an export_onnx.py folder with the torch-free runtime")
    p.add_argument("--int8", action="store_true", help="with --onnx: the int8 graphs")
    p.add_argument("--name", default="demo", help="the voice's name in requests (default demo)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--max-queue", type=int, default=4, help="requests that may wait for the model (default 4)")
    p.add_argument("--max-chars", type=int, default=MAX_CHARS, help=f"longest input (default {MAX_CHARS})")
    args = p.parse_args(argv)
    try:
        tts = load_voice_for_server(args)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import uvicorn

    uvicorn.run(create_app({args.name: tts}, args.max_queue, args.max_chars), host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
