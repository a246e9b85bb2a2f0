"""Load test for server.py: N requests, C at a time, against a server on this machine; latency percentiles.

    python -m serving.server --onnx onnx/demo_voice &
    python benchmarks/load_test.py --url http://127.0.0.1:8000 --requests 40 --concurrency 4

Only loopback addresses are accepted. Every request has a timeout and the run is bounded by --requests,
so it always stops by itself. Prints time to first byte and total latency percentiles, the status codes
(503 = queue full, by design) and the audio seconds produced per wall second.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

TEXTS = ["Hello there, how are you today?", "Please call Stella and ask her to bring these things with her.",
         "The train leaves at seven forty five, so we should hurry.", "Where did Clara leave the sewing box?"]


def one_request(url: str, voice: str, text: str, timeout: float) -> dict:
    body = json.dumps({"model": "flow-tts", "input": text, "voice": voice, "response_format": "pcm"}).encode()
    req = urllib.request.Request(url + "/v1/audio/speech", body, {"Content-Type": "application/json"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as reply:
            first = reply.read(1)
            ttfb = time.perf_counter() - t0
            rest = reply.read()
            rate = int(reply.headers.get("X-Sample-Rate", "22050"))
            return {"status": reply.status, "ttfb": ttfb, "total": time.perf_counter() - t0,
                    "audio_seconds": (len(first) + len(rest)) / 2 / rate}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "total": time.perf_counter() - t0}
    except (urllib.error.URLError, TimeoutError) as e:
        return {"status": "error", "error": str(e), "total": time.perf_counter() - t0}


def percentiles(values, ps=(50, 90, 99)) -> str:
    if not values:
        return "-"
    values = sorted(values)
    return " ".join(f"p{p} {values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]:.3f}s" for p in ps)


def run(url: str, voice: str, requests: int, concurrency: int, timeout: float) -> dict:
    host = urllib.parse.urlparse(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"load tests run against this machine only (127.0.0.1, localhost, ::1), not {host}")
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda i: one_request(url, voice, TEXTS[i % len(TEXTS)], timeout), range(requests)))
    wall = time.perf_counter() - t0
    ok = [r for r in results if r["status"] == 200]
    codes = {}
    for r in results:
        codes[str(r["status"])] = codes.get(str(r["status"]), 0) + 1
    return {"requests": requests, "concurrency": concurrency, "wall_seconds": wall, "status_codes": codes,
            "ttfb": percentiles([r["ttfb"] for r in ok]), "latency": percentiles([r["total"] for r in ok]),
            "mean_latency": statistics.mean(r["total"] for r in ok) if ok else None,
            "audio_seconds_per_second": sum(r["audio_seconds"] for r in ok) / wall}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--voice", default=None, help="a name from /v1/voices (default: the server's default voice)")
    p.add_argument("--requests", type=int, default=20)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--timeout", type=float, default=120.0, help="per request, seconds")
    args = p.parse_args(argv)
    if not 1 <= args.requests <= 10000 or not 1 <= args.concurrency <= 64:
        p.error("--requests must be in [1, 10000] and --concurrency in [1, 64]")
    try:
        report = run(args.url.rstrip("/"), args.voice, args.requests, args.concurrency, args.timeout)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0 if report["status_codes"].get("200") else 1


if __name__ == "__main__":
    sys.exit(main())
