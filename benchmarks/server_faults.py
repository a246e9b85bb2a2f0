"""Fault soak for serving/server.py: clients that misbehave, then checks that the server is still whole.

    python -m serving.server --max-queue 2 &
    python benchmarks/server_faults.py --url http://127.0.0.1:8000 --pid $! --rounds 50

Each round: a client that disconnects in the middle of a streamed (pcm) response, clients that disconnect
before their first byte while the model is busy, a body of --body-mb megabytes announced in Content-Length,
and a burst of concurrent clients over the queue's size (some answered 503 by design). After all rounds the
server must answer a reference request with the same bytes as before them, report `busy` 0, and (with
--pid, on Linux) its resident memory must have grown by less than --max-growth-mb from the end of a first,
warm-up round (which grows it once: the thread pool and the allocator's per-thread arenas) to the end. Loopback only; every
socket has a timeout, so the run always ends. tests/test_server.py runs a few rounds in the suite.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Optional

LONG_TEXT = " ".join(["The quick brown fox jumps over the lazy dog, and then it runs far away."] * 6)
REFERENCE = {"input": "Hello there, this is a check.", "response_format": "pcm", "steps": 2, "seed": 7}


def rss_mb(pid: int) -> Optional[float]:
    """Resident memory of process `pid` in MB (Linux /proc), None where it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _address(url: str):
    parsed = urllib.parse.urlparse(url)
    if parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"fault tests run against this machine only (127.0.0.1, localhost, ::1), not {parsed.hostname}")
    return parsed.hostname, parsed.port or 80


def _raw_request(url: str, payload: dict, timeout: float) -> socket.socket:
    """A connected socket that has sent POST /v1/audio/speech with `payload` (its response not read)."""
    body = json.dumps(payload).encode()
    sock = socket.create_connection(_address(url), timeout=timeout)
    sock.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    return sock


def post(url: str, payload: dict, timeout: float = 120):
    """(status, body bytes) of a well-behaved request."""
    req = urllib.request.Request(url + "/v1/audio/speech", json.dumps(payload).encode(),
                                 {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def health(url: str) -> dict:
    with urllib.request.urlopen(url + "/health", timeout=30) as reply:
        return json.loads(reply.read())


def disconnect_mid_stream(url: str, voice: Optional[str], timeout: float) -> int:
    """Read the headers and the first audio of a long pcm stream, then hang up; returns the bytes read."""
    with _raw_request(url, {"input": LONG_TEXT, "voice": voice, "response_format": "pcm", "steps": 2},
                      timeout) as sock:
        got = b""
        while b"\r\n\r\n" not in got or len(got) < got.index(b"\r\n\r\n") + 1024:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
    return len(got)


def disconnect_before_first_byte(url: str, voice: Optional[str], timeout: float, fmt: str) -> None:
    """Send a request and hang up at once, before any of the answer arrives."""
    _raw_request(url, {"input": LONG_TEXT, "voice": voice, "response_format": fmt, "steps": 2}, timeout).close()


def oversized_body(url: str, megabytes: int, timeout: float) -> Optional[int]:
    """Announce a `megabytes` MB body and send its first MB; returns the status answered (413 expected), or
    None when the server hung up without one."""
    sock = socket.create_connection(_address(url), timeout=timeout)
    with sock:
        prefix = b'{"input": "Hello.", "padding": "'
        sock.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % (megabytes << 20) + prefix)
        try:
            sock.sendall(b"x" * (1 << 20))
            reply = sock.recv(4096)
        except OSError:
            return None
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else None


def burst(url: str, voice: Optional[str], clients: int, timeout: float) -> dict:
    """`clients` concurrent requests; returns {status: count}."""
    payload = {"input": LONG_TEXT, "voice": voice, "response_format": "wav", "steps": 2}
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        statuses = list(pool.map(lambda _: post(url, payload, timeout)[0], range(clients)))
    return {str(s): statuses.count(s) for s in sorted(set(statuses))}


def wait_idle(url: str, seconds: float) -> int:
    """Poll /health until busy is 0 or `seconds` pass; returns the last busy count."""
    deadline = time.monotonic() + seconds
    while (busy := health(url)["busy"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return busy


def run(url: str, voice: Optional[str] = None, rounds: int = 1, burst_clients: int = 5, body_mb: int = 200,
        pid: Optional[int] = None, timeout: float = 120) -> dict:
    """Drive the faults `rounds` times; returns a report (see the module docstring for what must hold)."""
    _address(url)
    reference = dict(REFERENCE, voice=voice)
    status, expected = post(url, reference, timeout)
    if status != 200:
        raise RuntimeError(f"the reference request failed with {status}: {expected[:200]!r}")
    report = {"mid_stream_bytes": [], "oversized": [], "bursts": []}
    rss_before = None
    for i in range(rounds + 1):  # round 0 warms up (the thread pool, the allocator's per-thread arenas)
        if i == 1:
            rss_before = rss_mb(pid) if pid else None
        report["mid_stream_bytes"].append(disconnect_mid_stream(url, voice, timeout))
        with concurrent.futures.ThreadPoolExecutor(1) as pool:  # keep the model busy while three hang up
            busy = pool.submit(post, url, dict(reference, input=LONG_TEXT), timeout)
            for fmt in ("pcm", "wav", "json"):
                disconnect_before_first_byte(url, voice, timeout, fmt)
            busy.result()
        report["oversized"].append(oversized_body(url, body_mb, timeout))
        report["bursts"].append(burst(url, voice, burst_clients, timeout))
    report["busy_after"] = wait_idle(url, 30)
    status, again = post(url, reference, timeout)
    report["same_answer_after"] = status == 200 and again == expected
    rss_after = rss_mb(pid) if pid else None
    report["rss_growth_mb"] = None if rss_before is None or rss_after is None else round(rss_after - rss_before, 1)
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--voice", default=None, help="a name from /v1/voices (default: the server's default)")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--burst", type=int, default=5, help="concurrent clients per burst (default 5)")
    p.add_argument("--body-mb", type=int, default=200)
    p.add_argument("--pid", type=int, default=None, help="the server's process id, to watch its memory")
    p.add_argument("--max-growth-mb", type=float, default=50.0)
    args = p.parse_args(argv)
    report = run(args.url, args.voice, args.rounds, args.burst, args.body_mb, args.pid)
    print(json.dumps(report, indent=1))
    growth = report["rss_growth_mb"]
    whole = (report["busy_after"] == 0 and report["same_answer_after"] and set(report["oversized"]) <= {413}
             and (growth is None or growth < args.max_growth_mb))
    print("server whole after the faults" if whole else "FAILED: the server did not survive its clients")
    return 0 if whole else 1


if __name__ == "__main__":
    sys.exit(main())
