"""server.py over real HTTP on 127.0.0.1: the official openai client, every error path, the queue, the
load-test script, and the web page in a real headless browser (Debian's chromium) when one is installed."""
from __future__ import annotations

import io
import json
import shutil
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

try:
    from fixtures_checkpoint import ROOT, tiny_checkpoint  # noqa: F401  (pytest fixture)
except ImportError:  # tests/ imported as a package
    from tests.fixtures_checkpoint import ROOT, tiny_checkpoint  # noqa: F401

from serving import server  # noqa: E402
from inference.synthesizer import TorchSynthesizer  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
import load_test  # noqa: E402

LONG = " ".join(["The quick brown fox jumps over the lazy dog, and then it runs far away."] * 25)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def base_url(tiny_checkpoint):
    tts = TorchSynthesizer.from_checkpoint(tiny_checkpoint)
    app = server.create_app({"tiny": tts}, max_queue=0, max_chars=3000)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def post(base_url: str, payload, raw: bool = False):
    data = payload if raw else json.dumps(payload).encode()
    req = urllib.request.Request(base_url + "/v1/audio/speech", data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as reply:
            return reply.status, reply.read(), dict(reply.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_openai_client_works_unchanged(base_url, tmp_path):
    from openai import OpenAI

    client = OpenAI(base_url=base_url + "/v1", api_key="not-needed")
    reply = client.audio.speech.create(model="flow-tts", voice="tiny", input="Hello there. How are you?",
                                       response_format="wav", speed=1.0)
    path = tmp_path / "speech.wav"
    path.write_bytes(reply.content)
    audio, sr = sf.read(str(path), dtype="float32")
    assert sr == 22050 and len(audio) > 2000 and np.isfinite(audio).all()
    flac = client.audio.speech.create(model="flow-tts", voice="tiny", input="Hello there.", response_format="flac",
                                      extra_body={"steps": 2, "seed": 3})
    audio, sr = sf.read(io.BytesIO(flac.content), dtype="float32")
    assert sr == 22050 and len(audio) > 1000


def test_pcm_and_json_formats(base_url):
    status, pcm, headers = post(base_url, {"input": "Hello there.", "voice": "tiny", "response_format": "pcm",
                                           "steps": 2, "seed": 1})
    assert status == 200 and headers["x-sample-rate"] == "22050" and len(pcm) % 2 == 0 and len(pcm) > 1000
    status, body, _ = post(base_url, {"input": "Hello there, friend.", "voice": "tiny", "response_format": "json",
                                      "steps": 2, "seed": 1, "speed": 0.5})
    data = json.loads(body)
    assert status == 200 and [w["word"] for w in data["timings"]["words"]] == ["Hello", "there,", "friend."]
    import base64
    audio, sr = sf.read(io.BytesIO(base64.b64decode(data["audio"])), dtype="float32")
    assert sr == 22050 and abs(len(audio) / sr - data["audio_seconds"]) < 1e-6
    # speed 0.5 speaks twice as slowly as speed 1 (durations scale with 1 / speed, frames are rounded up)
    fast = json.loads(post(base_url, {"input": "Hello there, friend.", "voice": "tiny", "response_format": "json",
                                      "steps": 2, "seed": 1})[1])
    assert 1.6 < data["audio_seconds"] / fast["audio_seconds"] < 2.4


@pytest.mark.parametrize("payload, status, needle", [
    ({"input": "   ", "voice": "tiny"}, 400, "input is empty"),
    ({"input": "x" * 3001, "voice": "tiny"}, 413, "limit is 3000"),
    ({"input": "Hello.", "voice": "alloy"}, 400, "unknown voice 'alloy'; available: tiny"),
    ({"input": "Hello.", "voice": "tiny", "response_format": "mp3"}, 400, "use one of wav, pcm, flac, json"),
    ({"input": "Hello.", "voice": "tiny", "speed": 10}, 400, "speed must be in"),
    ({"input": "Hello.", "voice": "tiny", "steps": 5000}, 400, "steps must be in"),
    ({"input": "Hello.", "voice": "tiny", "cfg_scale": 3.0}, 400, "guidance"),
    ({"input": "...", "voice": "tiny"}, 400, "nothing speakable"),
    ({"voice": "tiny"}, 422, "input"),
    ({"input": 5, "voice": "tiny"}, 422, "input"),
])
def test_bad_requests_get_json_errors(base_url, payload, status, needle):
    got, body, _ = post(base_url, payload)
    error = json.loads(body)["error"]
    assert got == status and needle in error["message"], (got, error)


def test_malformed_json_is_422_not_500(base_url):
    got, body, _ = post(base_url, b"{not json", raw=True)
    assert got == 422 and "error" in json.loads(body)


def test_voices_health_and_page(base_url):
    voices = json.loads(urllib.request.urlopen(base_url + "/v1/voices", timeout=30).read())
    assert voices == {"voices": [{"name": "tiny", "sample_rate": 22050, "speakers": 0}]}
    assert json.loads(urllib.request.urlopen(base_url + "/health", timeout=30).read())["status"] == "ok"
    page = urllib.request.urlopen(base_url + "/", timeout=30).read().decode()
    assert "<textarea" in page and "/v1/audio/speech" in page


def test_full_queue_answers_503(base_url):
    """max_queue 0: while one long synthesis runs, another request is refused at once with 503."""
    result = {}
    worker = threading.Thread(target=lambda: result.update(long=post(base_url, {"input": LONG, "voice": "tiny",
                                                                                 "steps": 8})[0]))
    worker.start()
    for _ in range(400):
        if json.loads(urllib.request.urlopen(base_url + "/health", timeout=30).read())["busy"]:
            break
        time.sleep(0.01)
    got, body, _ = post(base_url, {"input": "Hello.", "voice": "tiny"})
    worker.join(timeout=300)
    assert got == 503 and "busy" in json.loads(body)["error"]["message"]
    assert result["long"] == 200


def test_load_test_script(base_url):
    report = load_test.run(base_url, "tiny", requests=4, concurrency=1, timeout=120)
    assert report["status_codes"] == {"200": 4} and report["latency"].startswith("p50")
    with pytest.raises(ValueError, match="this machine only"):
        load_test.run("http://10.0.0.1:8000", "tiny", 1, 1, 1)


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None or shutil.which("chromedriver") is None,
                    reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)")
def test_web_page_in_a_real_browser(base_url, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = _chromium()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--autoplay-policy=no-user-gesture-required", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'u'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(shutil.which("chromedriver")))
    try:
        driver.set_window_size(900, 900)
        driver.get(base_url + "/")
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#voice option"))
        box = driver.find_element(By.ID, "text")
        box.clear()
        box.send_keys("Hello there. This is a test of the page, with several words to highlight.")
        driver.find_element(By.ID, "steps").clear()
        driver.find_element(By.ID, "steps").send_keys("2")
        driver.find_element(By.ID, "speak").click()
        WebDriverWait(driver, 120).until(lambda d: d.execute_script(
            "const a = document.getElementById('player'); return a.duration > 0 && isFinite(a.duration);"))
        duration = driver.execute_script("return document.getElementById('player').duration")
        words = driver.find_elements(By.CSS_SELECTOR, "#words span")
        assert duration > 1.0 and len(words) == 14
        assert driver.find_element(By.ID, "download").get_attribute("href").startswith("blob:")
        seen = set()
        for t in (0.05, duration * 0.5, duration * 0.9):  # seek: highlighting follows the playback position
            driver.execute_script(f"const a = document.getElementById('player'); a.currentTime = {t};")
            time.sleep(0.3)
            current = driver.execute_script(
                "const s = document.querySelector('#words span.current'); return s ? +s.dataset.index : -1;")
            spoken = len(driver.find_elements(By.CSS_SELECTOR, "#words span.spoken"))
            seen.add((current, spoken))
        assert len({spoken for _, spoken in seen}) == 3  # more words are marked spoken as time advances
        shot = Path(tmp_path) / "web_page.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 1000
        print(f"screenshot: {shot}")
    finally:
        driver.quit()
