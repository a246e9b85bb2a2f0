"""server.py over real HTTP on 127.0.0.1: the official openai client with every listed voice, the audio equal
to the Python API's, every error path, the queue, the fault drive (disconnects, huge bodies, bursts), SIGTERM,
the load-test script, and the web page in a real headless browser (Debian's chromium) when one is installed."""
from __future__ import annotations

import base64
import io
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import wave
from pathlib import Path

import pytest
import soundfile as sf
import torch
import uvicorn

try:
    from fixtures_checkpoint import ROOT, tiny_checkpoint  # noqa: F401  (pytest fixture)
except ImportError:  # tests/ imported as a package
    from tests.fixtures_checkpoint import ROOT, tiny_checkpoint  # noqa: F401
from conftest import make_tiny_hps, wake_velocity_net  # noqa: E402

import text  # noqa: E402
from audio import to_pcm16  # noqa: E402
from inference.synthesizer import TorchSynthesizer  # noqa: E402
from models import FlowMatchingSynthesizer  # noqa: E402
from serving import server  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
import load_test  # noqa: E402
import server_faults  # noqa: E402

LONG = " ".join(["The quick brown fox jumps over the lazy dog, and then it runs far away."] * 25)
HELLO = "Hello there, friend."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def guided_multi_speaker_voice(path: Path, speaker_names) -> Path:
    """An untrained tiny voice file of the multispeaker recipe: named speakers, trained with condition dropout
    (so guidance is allowed) and prosody conditioning, a velocity net and prosody embedding that are not zero (so
    guidance, speakers and prosody edits change the audio)."""
    hps = make_tiny_hps(n_speakers=len(speaker_names), gin_channels=8, speaker_names=list(speaker_names),
                        cond_drop_rate=0.2, cfg_scale=1.0, sampling_steps=3, sampling_method="midpoint",
                        prosody_conditioning=True)
    torch.manual_seed(0)
    model = FlowMatchingSynthesizer(len(text.symbols), hps)
    wake_velocity_net(model.acoustic.cfm.estimator)
    torch.nn.init.normal_(model.acoustic.prosody_embed.conv.weight, std=0.05)
    torch.save({"ema": model.state_dict(), "config": hps.to_dict(), "step": 1}, path)
    return path


@pytest.fixture(scope="module")
def voice_files(tiny_checkpoint, tmp_path_factory):
    """name -> TorchSynthesizer: the trained tiny voice (single speaker, no guidance) and a guided
    multi-speaker one with speakers ann and bob."""
    folder = tmp_path_factory.mktemp("voices")
    return {"tiny": TorchSynthesizer.from_checkpoint(tiny_checkpoint),
            "multi": TorchSynthesizer.from_checkpoint(guided_multi_speaker_voice(folder / "multi.pth", ["ann", "bob"]))}


@pytest.fixture(scope="module")
def base_url(voice_files):
    app = server.create_app(voice_files, max_queue=0, max_chars=3000)
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


def get_json(base_url: str, path: str):
    return json.loads(urllib.request.urlopen(base_url + path, timeout=30).read())


def api_pcm(tts, text_: str, speaker=None, seed=0, **sampling) -> bytes:
    """What the Python API says for a request: 16-bit PCM of synthesize() with the voice's defaults + sampling."""
    audio, _, _ = tts.synthesize(text_, tts.default_sampling.replace(**sampling), speaker=speaker, seed=seed)
    return to_pcm16(audio)


def test_voices_list_every_speaker_of_every_voice_file(base_url):
    voices = get_json(base_url, "/v1/voices")["voices"]
    assert [(v["name"], v["voice_file"], v["speaker"], v["guidance"]) for v in voices] == [
        ("tiny", "tiny", None, False), ("ann", "multi", "ann", True), ("bob", "multi", "bob", True)]
    assert all(v["sample_rate"] == 22050 for v in voices)
    assert [(v["defaults"]["steps"], v["defaults"]["method"], v["defaults"]["cfg_scale"]) for v in voices[1:]] == [
        (3, "midpoint", 1.0)] * 2  # the voice file's own defaults (model.sampling_steps, sampling_method, cfg_scale)
    assert get_json(base_url, "/health") == {"status": "ok", "voices": ["tiny", "ann", "bob"], "busy": 0}


def test_a_speaker_name_taken_by_an_earlier_file_is_qualified(voice_files):
    catalog = server.voice_catalog({"multi": voice_files["multi"], "again": voice_files["multi"]})
    assert list(catalog) == ["ann", "bob", "again:ann", "again:bob"] and catalog["again:bob"].speaker == "bob"


def test_openai_client_speaks_every_listed_voice(base_url, voice_files):
    """The official client, voice = each name /v1/voices lists; each answer is that speaker's audio (equal to
    the Python API's), and a saved WAV's header gives its true length."""
    from openai import OpenAI

    client = OpenAI(base_url=base_url + "/v1", api_key="not-needed")
    for v in get_json(base_url, "/v1/voices")["voices"]:
        reply = client.audio.speech.create(model="flow-tts", voice=v["name"], input=HELLO, response_format="wav",
                                           extra_body={"steps": 2, "seed": 3})
        with wave.open(io.BytesIO(reply.content)) as w:
            frames = w.readframes(w.getnframes())
            assert w.getframerate() == 22050 and w.getnframes() * 2 == len(reply.content) - 44
        assert frames == api_pcm(voice_files[v["voice_file"]], HELLO, v["speaker"], seed=3, steps=2), v["name"]
    flac = client.audio.speech.create(model="flow-tts", voice="bob", input="Hello there.", response_format="flac")
    audio, sr = sf.read(io.BytesIO(flac.content), dtype="float32")
    assert sr == 22050 and len(audio) > 1000


def test_streamed_pcm_and_json_equal_the_python_api(base_url, voice_files):
    """The server must speak the request's text, seed, steps and speed: its bytes equal the API's, and changing
    any of them changes the bytes."""
    tts = voice_files["multi"]
    request = {"input": HELLO, "voice": "ann", "response_format": "pcm", "steps": 2, "seed": 1}
    status, pcm, headers = post(base_url, request)
    assert status == 200 and headers["x-sample-rate"] == "22050"
    assert pcm == api_pcm(tts, HELLO, "ann", seed=1, steps=2)
    for change in ({"seed": 2}, {"steps": 3}, {"input": "Hello there, friends."}, {"voice": "bob"}):
        assert post(base_url, {**request, **change})[1] != pcm, change
    defaults = {k: v for k, v in request.items() if k != "steps"}  # the voice file's 3 midpoint steps
    assert post(base_url, defaults)[1] == api_pcm(tts, HELLO, "ann", seed=1) != pcm
    status, body, _ = post(base_url, {**request, "response_format": "json", "speed": 0.5})
    data = json.loads(body)
    assert status == 200 and [w["word"] for w in data["timings"]["words"]] == ["Hello", "there,", "friend."]
    audio, sr = sf.read(io.BytesIO(base64.b64decode(data["audio"])), dtype="int16")
    assert sr == 22050 and audio.tobytes() == api_pcm(tts, HELLO, "ann", seed=1, steps=2, duration_scale=2.0)
    assert len(audio) * 2 > len(pcm) * 1.2  # speed 0.5: longer (an untrained voice's rounded durations)


def test_a_blend_of_one_files_speakers_is_a_voice(base_url, voice_files):
    """OpenAI-style `voice: "ann(3)+bob(1)"` speaks as the Python API's blend; either parent alone differs."""
    request = {"input": HELLO, "voice": "ann(3)+bob(1)", "response_format": "pcm", "steps": 2}
    status, pcm, _ = post(base_url, request)
    assert status == 200 and pcm == api_pcm(voice_files["multi"], HELLO, "ann:0.75,bob:0.25", steps=2)
    assert pcm not in (post(base_url, {**request, "voice": v})[1] for v in ("ann", "bob"))


def test_cfg_scale_is_honoured_where_the_voice_was_trained_with_guidance(base_url, voice_files):
    request = {"input": HELLO, "voice": "bob", "response_format": "pcm", "steps": 2}
    unguided, guided = (post(base_url, {**request, "cfg_scale": s})[1] for s in (0.0, 2.0))
    assert unguided != guided
    assert guided == api_pcm(voice_files["multi"], HELLO, "bob", steps=2, cfg_scale=2.0)
    status, body, _ = post(base_url, {**request, "voice": "tiny", "cfg_scale": 2.0})
    assert status == 400 and "without condition dropout" in json.loads(body)["error"]["message"]
    assert post(base_url, {**request, "voice": "tiny", "cfg_scale": 0.0})[0] == 200


def test_pitch_range_and_energy_are_honoured_where_the_voice_has_prosody_conditioning(base_url, voice_files):
    request = {"input": HELLO, "voice": "bob", "response_format": "pcm", "steps": 2}
    plain = post(base_url, request)[1]
    edited = post(base_url, {**request, "pitch": 3.0, "pitch_range": 1.5, "energy": -4.0})[1]
    assert edited != plain
    assert edited == api_pcm(voice_files["multi"], HELLO, "bob", steps=2, pitch_shift=3.0, pitch_range=1.5,
                             energy_db=-4.0)
    voices = {v["name"]: v["prosody"] for v in get_json(base_url, "/v1/voices")["voices"]}
    assert voices == {"tiny": False, "ann": True, "bob": True}
    status, body, _ = post(base_url, {**request, "voice": "tiny", "pitch": 2.0})
    assert status == 400 and "prosody conditioning" in json.loads(body)["error"]["message"]


def test_an_input_starting_with_speak_is_ssml(base_url, voice_files):
    """<speak> input is read as SSML (a break, a voice switch) and answers what synthesize_ssml gives."""
    tts = voice_files["multi"]
    document = '<speak>Hello there. <break time="300ms"/><voice name="bob">Good morning.</voice></speak>'
    audio, _, _ = tts.synthesize_ssml(document, tts.default_sampling.replace(steps=2), "ann", seed=5)
    for fmt in ("pcm", "wav"):
        status, body, _ = post(base_url, {"input": document, "voice": "ann", "response_format": fmt, "steps": 2,
                                          "seed": 5})
        assert status == 200 and body[-len(audio) * 2:] == to_pcm16(audio), fmt
    for document, needle in (("<speak>Hello <break time='x'/></speak>", "break"),
                             ("<speak>Hello <b>there</speak>", "line 1, column"),
                             ('<speak><voice name="zed">Hi.</voice></speak>', "unknown speaker 'zed'"),
                             ('<speak><prosody pitch="+10st"><prosody pitch="+10st">Hi.</prosody></prosody></speak>',
                              "adds up to too much")):
        status, body, _ = post(base_url, {"input": document, "voice": "ann"})
        assert status == 400 and needle in json.loads(body)["error"]["message"], body


@pytest.mark.parametrize("payload, status, needle", [
    ({"input": "   ", "voice": "tiny"}, 400, "input is empty"),
    ({"input": "x" * 3001, "voice": "tiny"}, 413, "limit is 3000"),
    ({"input": "Hello.", "voice": "alloy"}, 400, "unknown voice 'alloy'; available: tiny, ann, bob"),
    ({"input": "Hello.", "voice": "ann(1)+zed(1)"}, 400, "unknown voice 'zed' in the blend 'ann(1)+zed(1)'"),
    ({"input": "Hello.", "voice": "ann(1)+tiny(1)"}, 400, "mixes voice files (multi, tiny)"),
    ({"input": "Hello.", "voice": "ann(0)+bob(1)"}, 400, "weights are positive numbers"),
    ({"input": "Hello.", "voice": "tiny", "response_format": "mp3"}, 400, "use one of wav, pcm, flac, json"),
    ({"input": "Hello.", "voice": "tiny", "speed": 10}, 400, "speed must be in"),
    ({"input": "Hello.", "voice": "tiny", "steps": 5000}, 400, "steps must be in"),
    ({"input": "Hello.", "voice": "ann", "cfg_scale": -1}, 400, "cfg_scale must be in"),
    ({"input": "Hello.", "voice": "tiny", "seed": -1}, 400, "seed must be in [0, 4294967295]"),
    ({"input": "Hello.", "voice": "ann", "pitch": 20}, 400, "pitch shift (semitones) must be a number in [-12, 12]"),
    ({"input": "Hello.", "voice": "ann", "pitch_range": -1}, 400, "pitch range factor must be"),
    ({"input": "Hello.", "voice": "ann", "energy": 99}, 400, "energy change (dB) must be"),
    ({"input": "Hello.", "voice": "tiny", "seed": 2 ** 32}, 400, "seed must be in"),
    ({"input": "Hello.", "speaker": "bob"}, 422, "unknown field 'speaker'"),
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


def test_wrong_method_and_path_answer_in_openai_error_shape(base_url):
    for method, path, status in (("GET", "/v1/audio/speech", 405), ("POST", "/v1/voices", 405),
                                 ("GET", "/v1/nothing", 404)):
        req = urllib.request.Request(base_url + path, method=method, data=b"{}" if method == "POST" else None)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=30)
        assert e.value.code == status and set(json.loads(e.value.read())["error"]) == {"message", "type", "code"}


def test_page_is_served(base_url):
    page = urllib.request.urlopen(base_url + "/", timeout=30).read().decode()
    assert "<textarea" in page and "/v1/audio/speech" in page and "/v1/voices" in page


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


def test_bad_flags_a_busy_port_and_a_broken_voice_stop_the_server_before_it_starts(capsys, tmp_path):
    for argv, needle in ((["--port", "99999"], "--port must be in [1, 65535], got 99999"),
                         (["--max-queue", "-1"], "--max-queue must be in"), (["--threads", "0"], "--threads must be")):
        with pytest.raises(SystemExit) as e:
            server.main(argv)
        assert e.value.code == 2 and needle in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert server.main(["--port", str(taken.getsockname()[1]), "--checkpoint", "missing.pth"]) == 2
        assert "cannot listen on 127.0.0.1" in capsys.readouterr().err
    assert server.main(["--port", str(free_port()), "--checkpoint", str(tmp_path / "missing.pth")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing.pth" in err and err.count("\n") == 1
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "voice.json").write_text("[]")  # an ONNX folder that would fail every request
    assert server.main(["--port", str(free_port()), "--onnx", str(tmp_path / "broken")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "voice.json" in err and err.count("\n") == 1


@pytest.fixture(scope="module")
def server_process(tiny_checkpoint, tmp_path_factory):
    """`python -m serving.server` as a user starts it (its own process, so its memory can be watched)."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "serving.server", "--checkpoint", str(tiny_checkpoint),
                                 "--port", str(port), "--max-queue", "2", "--threads", "1", "--drain-seconds", "60"],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            get_json(url, "/health")
            break
        except OSError:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
    yield proc, url
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_server_survives_disconnects_huge_bodies_and_bursts(server_process):
    """benchmarks/server_faults.py, two rounds: disconnects mid-stream and before the first byte, a 200 MB body,
    bursts over the queue; then the same answer as before, nothing busy, memory flat."""
    proc, url = server_process
    report = server_faults.run(url, rounds=2, burst_clients=5, body_mb=200, pid=proc.pid)
    print(report)
    assert report["busy_after"] == 0 and report["same_answer_after"], report
    assert set(report["oversized"]) == {413} and all(b > 1024 for b in report["mid_stream_bytes"]), report
    assert all("503" in b and "200" in b for b in report["bursts"]), report  # queue 2: five at once overflow
    assert report["rss_growth_mb"] < 50, report


def test_sigterm_lets_the_running_request_finish_then_exits(server_process, tiny_checkpoint):
    """SIGTERM while a stream runs: the stream still delivers every byte, then the server exits (uvicorn ends
    by re-raising the signal, the conventional status of a process stopped by SIGTERM)."""
    proc, url = server_process
    request = {"input": LONG[:600], "response_format": "pcm", "steps": 2, "seed": 4}
    result = {}
    worker = threading.Thread(target=lambda: result.update(reply=post(url, request)))
    worker.start()
    while not get_json(url, "/health")["busy"]:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    worker.join(timeout=120)
    status, pcm, _ = result["reply"]
    tts = TorchSynthesizer.from_checkpoint(tiny_checkpoint)
    chunks = tts.stream(request["input"], tts.default_sampling.replace(steps=2), seed=4)
    assert status == 200 and pcm == b"".join(to_pcm16(chunk) for chunk in chunks)
    assert proc.wait(timeout=60) in (0, -signal.SIGTERM)


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None or shutil.which("chromedriver") is None,
                    reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)")
def test_web_page_in_a_real_browser(base_url, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select
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
        Select(driver.find_element(By.ID, "voice")).select_by_value("bob")  # not the default voice
        assert driver.find_element(By.ID, "steps").get_attribute("value") == str(get_json(
            base_url, "/v1/voices")["voices"][2]["defaults"]["steps"])  # the voice's own default steps
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
