"""The service over a real socket: `fe_serve` run by uvicorn on a free loopback port, every endpoint and error status,
the API key, the limits, unreadable uploads, concurrent writers (nothing lost, ids unique), searches answered while
a write runs, and a server killed with SIGKILL in a stream of adds (every acknowledged add is there after a
restart). nbs/17a_serve.ipynb explains the design."""
import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

httpx = pytest.importorskip("httpx")

from conftest import grey_png  # noqa: E402
from feature_extraction.data import demo_data  # noqa: E402
from feature_extraction.gallery import Gallery  # noqa: E402

KEY = "test key 123"


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> dict:
    "The demo network (untrained) exported with ONNX, and a gallery of 100 demo test images: what a server serves."
    import paddle
    from feature_extraction.config import load_config
    from feature_extraction.export import export_model
    from feature_extraction.inference import preprocess_ops
    from feature_extraction.model import build_model
    folder = tmp_path_factory.mktemp("served")
    paddle.seed(0)
    model = build_model(load_config(demo_data().parent / "demo.yaml")["Arch"]).eval()
    model_dir = export_model(model, folder / "model", preprocess_ops({"Global": {"image_shape": [3, 48, 48]}}),
                             formats=("paddle", "onnx"))
    lines = (demo_data() / "test_list.txt").read_text().splitlines()[:100]
    images = [demo_data() / line.split()[0] for line in lines]
    listing = folder / "gallery.tsv"
    listing.write_text("".join(f"{image}\t{image.parent.name}\n" for image in images))
    done = subprocess.run(["fe_index", "build", str(folder / "index"), str(listing), "--model", str(model_dir)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (folder / "key").write_text(KEY + "\n")
    return {"model": model_dir, "index": folder / "index", "images": images, "key_file": folder / "key"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    "`fe_serve` in a process of its own, on a free loopback port; stopped on exit."
    def __init__(self, model, index, *options):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = ["fe_serve", str(model), str(index), "--port", str(self.port), "--device", "cpu",
                   "--num-threads", "1"]
        self.process = subprocess.Popen(command + [str(option) for option in options], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.communicate()
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200: return
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError("the server did not start")

    def __enter__(self): return self

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


def copy_index(served, tmp_path) -> Path:
    shutil.copytree(served["index"], tmp_path / "index")
    return tmp_path / "index"


def jpeg(seed: int) -> bytes:
    "A distinct small image (noise over a gradient), JPEG-encoded."
    rng = np.random.default_rng(seed)
    image = (np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3) * rng.random() + rng.integers(0, 60, (64, 64, 3)))
    return cv2.imencode(".jpg", np.clip(image, 0, 255).astype(np.uint8))[1].tobytes()


def test_every_endpoint_over_a_real_socket(served, tmp_path):
    index = copy_index(served, tmp_path)
    one, two = served["images"][5].read_bytes(), served["images"][50].read_bytes()
    with Server(served["model"], index, "--api-key-file", served["key_file"]) as server, \
            httpx.Client(base_url=server.url, timeout=60) as client:
        found = client.post("/search", files=[("images", ("a.jpg", one)), ("images", ("x.jpg", b"junk"))],
                            data={"k": "3"}).json()["results"]
        assert found[0]["items"][0]["path"] == str(served["images"][5]) and len(found[0]["items"]) == 3
        assert list(found[1]) == ["error"]
        as_json = client.post("/search", json={"images": [base64.b64encode(two).decode()], "k": 1}).json()
        assert as_json["results"][0]["items"][0]["path"] == str(served["images"][50])
        headers = {"X-API-Key": KEY}
        ids = client.post("/items", files={"images": ("n.jpg", jpeg(1))}, data={"labels": "new"}, headers=headers)
        assert ids.status_code == 200 and ids.json() == {"ids": [100]}
        assert client.get("/items/100").json()["label"] == "new"
        assert client.get("/items/100/image").content == jpeg(1)
        assert client.get("/items", params={"label": "new"}).json()["total"] == 1
        listed = client.get("/items", params={"offset": 95, "limit": 10}).json()
        assert listed["total"] == 101 and [item["id"] for item in listed["items"]] == list(range(95, 101))
        info = client.get("/info").json()
        assert (info["count"], info["version"], info["index_type"]) == (101, "v000002", "Flat")
        assert client.get("/health").json() == {"status": "ok"}
        metrics = client.get("/metrics").text
        assert 'route="/search",status="200"' in metrics and "fe_gallery_vectors 101.0" in metrics
        assert client.get("/docs").status_code == 200 and "<html" in client.get("/").text
        assert client.delete("/items/100", headers=headers).json() == {"removed": [100]}
        assert client.delete("/items", params={"label": served["images"][0].parent.name},
                             headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert len(Gallery.load(index)) < 100  # the writes are on disk


def test_every_error_status(served, tmp_path):
    index = copy_index(served, tmp_path)
    one = served["images"][5].read_bytes()
    with Server(served["model"], index, "--api-key-file", served["key_file"]) as server, \
            httpx.Client(base_url=server.url, timeout=60) as client:
        headers = {"X-API-Key": KEY}
        statuses = {
            400: client.post("/search", content=b"{", headers={"content-type": "application/json"}),
            401: client.post("/items", files={"images": ("a.jpg", one)}, data={"labels": "a"},
                             headers={"X-API-Key": "wrong"}),
            404: client.delete("/items/12345", headers=headers),
            405: client.put("/items/1"),
            413: client.post("/search", content=b"x" * (33 * 2**20), headers={"content-type": "application/json"}),
            415: client.post("/search", content=b"hello", headers={"content-type": "text/plain"}),
            422: client.post("/items", files=[("images", ("a.jpg", one)), ("images", ("b.jpg", b"junk"))],
                             data={"labels": ["a", "b"]}, headers=headers),
        }
        for status, response in statuses.items():
            assert response.status_code == status, (status, response.text)
        assert client.delete("/items/1").status_code == 401  # removing needs the key too
        bomb = client.post("/search", files={"images": ("bomb.png", grey_png(10000))}).json()["results"][0]
        assert "10000 x 10000 pixels is more than feature_extraction.data.MAX_IMAGE_PIXELS" in bomb["error"], bomb
        too_many = client.post("/search", files=[("images", ("a.jpg", one))] * 65)
        assert too_many.status_code == 413 and "at most 64 per request" in too_many.json()["detail"]
        assert client.get("/info").json()["count"] == 100  # nothing was added or removed


def test_a_busy_server_answers_503(served, tmp_path):
    from fastapi.testclient import TestClient
    from feature_extraction.serve import ServeSettings, create_app
    settings = ServeSettings(max_batch=2, max_queue=1, device="cpu")
    app = create_app(served["model"], copy_index(served, tmp_path), settings)
    service, gate = app.state.service, threading.Event()
    model = service.process
    service.process = lambda jobs: gate.wait(60) and model(jobs)  # the model is held up
    one = {"images": ("a.jpg", served["images"][5].read_bytes())}
    with TestClient(app) as client, ThreadPoolExecutor(2) as pool:
        first = pool.submit(client.post, "/search", files=one)
        time.sleep(0.5)  # the batcher has taken it, and waits for the model
        second = pool.submit(client.post, "/search", files=one)
        time.sleep(0.5)  # it fills the queue
        third = client.post("/search", files=one)
        assert third.status_code == 503 and "the server is busy" in third.json()["detail"], third.text
        gate.set()
        assert (first.result().status_code, second.result().status_code) == (200, 200)


def test_concurrent_writers_lose_nothing(served, tmp_path):
    index = copy_index(served, tmp_path)
    with Server(served["model"], index) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        def add(i):
            response = client.post("/items", files={"images": (f"{i}.jpg", jpeg(100 + i))}, data={"labels": f"w{i}"})
            assert response.status_code == 200, response.text
            return response.json()["ids"][0]
        outside = tmp_path / "outside"
        outside.mkdir()
        for i in range(6): (outside / f"{i}.jpg").write_bytes(jpeg(1000 + i))
        fe_index = subprocess.Popen(["fe_index", "add", str(index), str(outside), "--model", str(served["model"]),
                                     "--num-threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        searches = []
        def search(_):
            response = client.post("/search", files={"images": ("q.jpg", served["images"][7].read_bytes())})
            searches.append(response.status_code)
        with ThreadPoolExecutor(8) as pool:
            writes = pool.map(add, range(24))
            list(pool.map(search, range(24)))
            ids = list(writes)
        out, err = fe_index.communicate(timeout=300)
        assert fe_index.returncode == 0, err
        assert searches == [200] * 24  # searches are answered while writes go on
        assert len(set(ids)) == 24
        gallery = Gallery.load(index)
        assert len(gallery) == 100 + 24 + 6
        assert {gallery.items[i].label for i in ids} == {f"w{i}" for i in range(24)}
        assert len(set(gallery.ids.tolist())) == len(gallery)
        assert client.get("/info").json()["count"] == 130  # the server sees the outside writer's version too


def test_a_killed_server_keeps_every_acknowledged_add(served, tmp_path):
    index = copy_index(served, tmp_path)
    acknowledged, stop = [], threading.Event()
    server = Server(served["model"], index)
    def stream():
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for i in range(1000):
                if stop.is_set(): return
                try:
                    response = client.post("/items", files={"images": (f"{i}.jpg", jpeg(5000 + i))},
                                           data={"labels": f"s{i}"})
                except httpx.TransportError:
                    return  # the server is gone: this add was not acknowledged
                if response.status_code == 200: acknowledged.append((response.json()["ids"][0], f"s{i}"))
    writer = threading.Thread(target=stream)
    writer.start()
    deadline = time.monotonic() + 120
    while len(acknowledged) < 8 and time.monotonic() < deadline: time.sleep(0.05)
    os.kill(server.process.pid, signal.SIGKILL)  # in the middle of the stream
    server.process.wait(30)
    stop.set()
    writer.join(60)
    assert len(acknowledged) >= 8
    with Server(served["model"], index) as restarted, httpx.Client(base_url=restarted.url, timeout=60) as client:
        for item_id, label in acknowledged:
            assert client.get(f"/items/{item_id}").json()["label"] == label
        assert client.post("/search", files={"images": ("q.jpg", jpeg(5000))}).status_code == 200
    gallery = Gallery.load(index)
    assert len(gallery) >= 100 + len(acknowledged)


def test_fe_serve_without_the_serve_extra_says_what_to_install(served):
    code = ("import sys\nsys.modules['fastapi'] = None\nfrom feature_extraction.cli import fe_serve\n"
            f"sys.exit(fe_serve([{str(served['model'])!r}, {str(served['index'])!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1 and "pip install 'feature_extraction[serve]'" in done.stderr, done.stderr


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    "Headless Chromium driven by Debian's chromedriver through selenium (nothing downloaded); skipped (failed in CI)."
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (chromium and chromedriver):
        message = "the browser test needs Debian's chromium and chromium-driver (apt-get install chromium-driver)"
        if os.environ.get("CI"): pytest.fail(message)
        pytest.skip(message)
    from selenium.webdriver.chrome.service import Service as ChromeService
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--window-size=1280,1000", f"--user-data-dir={tmp_path_factory.mktemp('profile')}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=ChromeService(executable_path=chromedriver), options=options)
    yield driver
    driver.quit()


ARTIFACTS = Path(os.environ.get("FE_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))


def test_the_web_page_in_chromium(served, tmp_path, browser):
    "Upload a demo image, see its own label first, add it under a new label, find it in the gallery, remove it."
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    index = copy_index(served, tmp_path)
    image = served["images"][30]
    wait = WebDriverWait(browser, 60)
    def text(element_id): return browser.find_element(By.ID, element_id).text
    with Server(served["model"], index, "--api-key-file", served["key_file"]) as server:
        browser.get(f"{server.url}/")
        wait.until(lambda _: "images of" in text("info"))
        assert text("info").startswith("100 images of")
        browser.find_element(By.ID, "file").send_keys(str(image))
        wait.until(lambda _: browser.find_elements(By.CSS_SELECTOR, "#results li"))
        cards = browser.find_elements(By.CSS_SELECTOR, "#results li")
        assert cards[0].find_element(By.CLASS_NAME, "label").text == image.parent.name  # its own label first
        assert text("verdict") == f"most like: {image.parent.name}"
        wait.until(lambda _: browser.execute_script(
            "return [...document.querySelectorAll('#results img')].every(img => img.complete && img.naturalWidth > 0)"))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "serve_results.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        results = browser.find_element(By.ID, "results")
        assert results.is_displayed() and results.rect["width"] > 300 and results.rect["height"] > 100
        assert results.rect["x"] + results.rect["width"] <= browser.execute_script("return window.innerWidth")
        browser.find_element(By.ID, "api-key").send_keys(KEY)
        browser.find_element(By.ID, "label").send_keys("found by the browser")
        browser.find_element(By.ID, "add").click()
        wait.until(lambda _: "Added as item" in text("message"))
        new_id = text("message").split("Added as item ")[1].split(" ")[0]
        browser.find_element(By.ID, "filter").send_keys("found by the browser")
        browser.find_element(By.CSS_SELECTOR, "#filter-form button").click()
        wait.until(lambda _: browser.find_elements(By.CSS_SELECTOR, f"#gallery-items li[data-id='{new_id}']"))
        assert text("page") == "1–1 of 1"
        browser.find_element(By.CSS_SELECTOR, f"#gallery-items li[data-id='{new_id}'] .remove").click()
        wait.until(lambda _: text("page") == "no items")
        assert text("message") == f"Removed item {new_id}."
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, errors
    assert len(Gallery.load(index)) == 100  # added and removed again
