"""``dbgan serve``: the HTTP API on a real server, and the page in a real (headless Chromium) browser.

The browser test needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run``
installs them) and selenium (the ``[test]`` extra). It is skipped only when they
are absent *and* ``CI`` is not set; under ``CI=true`` it must run. Its screenshot
of the page after a deblur is saved in ``$DBGAN_TEST_ARTIFACTS`` (default: the
test's temporary folder) and its path printed.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_api import make_tiny_checkpoint  # noqa: E402

from dbgan.serve import DeblurService, ServeError, build_app, model_choices  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """uvicorn in a thread, on 127.0.0.1 and a free port."""

    def __init__(self, service: DeblurService):
        self.service = service
        self.port = _free_port()
        config = uvicorn.Config(build_app(service), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                break
            time.sleep(0.05)
        assert self.server.started, "uvicorn did not start"
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def request(self, path: str, data: bytes | None = None, method: str | None = None) -> tuple[int, bytes, dict]:
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/octet-stream")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    def upload(self, data: bytes, filename: str, model: str | None = None, coarse: str | None = None,
               blind: str | None = None) -> tuple[int, dict]:
        q = f"/api/jobs?filename={urllib.request.quote(filename)}" + (f"&model={urllib.request.quote(model)}" if model else "")
        q += f"&coarse_levels={urllib.request.quote(coarse)}" if coarse is not None else ""
        q += f"&blind={urllib.request.quote(blind)}" if blind is not None else ""
        status, body, _ = self.request(q, data=data, method="POST")
        return status, json.loads(body)

    def wait(self, job_id: str, timeout: float = 120) -> list[dict]:
        seen = []
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            _, body, _ = self.request(f"/api/jobs/{job_id}")
            s = json.loads(body)
            seen.append(s)
            if s["state"] in ("done", "error"):
                return seen
            time.sleep(0.02)
        raise AssertionError(f"job {job_id} did not finish: {seen[-1]}")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("serve") / "tiny.safetensors")


@pytest.fixture
def server(ckpt, tmp_path):
    service = DeblurService(OrderedDict([("tiny", ckpt)]), device="cpu", tile=32, max_upload_mb=1,
                            max_pixels=200_000, workdir=tmp_path / "work")
    srv = Server(service)
    yield srv
    srv.stop()
    assert not service.folder.exists(), "the server left its working folder behind"


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _photo(h=70, w=90) -> np.ndarray:
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut()[60 : 60 + h, 160 : 160 + w])


# --------------------------------------------------------------------------- HTTP API


def test_page_and_models(server):
    status, body, headers = server.request("/")
    assert status == 200 and b'id="file"' in body and b"/static/app.js" in body
    assert b"http://" not in body and b"https://" not in body  # no CDN: works offline
    status, js, headers = server.request("/static/app.js")
    assert status == 200 and "javascript" in headers["content-type"] and b"https://" not in js
    assert server.request("/static/../serve.py")[0] == 404
    models = json.loads(server.request("/api/models")[1])
    assert models["default"] == "tiny" and [m["id"] for m in models["models"]] == ["tiny"]
    assert [w["coarse_levels"] for w in models["blur_widths"]] == [0, 1, 2] and models["shake_px"] == 31


@pytest.mark.parametrize("key, value, bad, message", [
    ("coarse_levels", 1, ("7", "wide"), "coarse_levels must be one of 0, 1, 2"),  # the "blur width" choice
    ("blind", 31, ("16",), "blind must be 0 or 31"),  # the "camera shake" box
])
def test_page_choices_reach_the_deblurrer(server, key, value, bad, message):
    from dbgan.api import load_model

    arr = _photo()
    arg = {"coarse_levels": "coarse", "blind": "blind"}[key]
    status, job = server.upload(_png(arr), "choice.png", **{arg: str(value)})
    assert status == 201 and job[key] == value
    assert server.wait(job["id"])[-1]["state"] == "done"
    out = np.asarray(Image.open(io.BytesIO(server.request(f"/api/jobs/{job['id']}/result")[1])))
    ckpt = server.service.models["tiny"]
    np.testing.assert_array_equal(out, load_model(ckpt, device="cpu", tile=32, **{key: value})(arr))
    assert not np.array_equal(out, load_model(ckpt, device="cpu", tile=32)(arr))
    for b in bad:
        status, err = server.upload(_png(arr), "x.png", **{arg: b})
        assert status == 400 and message in err["error"]


def test_deblur_job_with_tile_progress(server, tmp_path):
    from dbgan.api import load_model

    arr = _photo()
    status, job = server.upload(_png(arr), "holiday photo.png")
    assert status == 201 and job["state"] in ("queued", "running")
    seen = server.wait(job["id"])
    assert seen[-1]["state"] == "done" and seen[-1]["progress"] == 1.0
    assert seen[-1]["tiles_total"] > 1 and seen[-1]["tiles_done"] == seen[-1]["tiles_total"]  # tiled: progress per tile
    status, data, headers = server.request(f"/api/jobs/{job['id']}/result")
    assert status == 200 and 'filename="holiday_photo_deblurred.png"' in headers["content-disposition"]
    out = np.asarray(Image.open(io.BytesIO(data)))
    expect = load_model(server.service.models["tiny"], device="cpu", tile=32)(arr)
    np.testing.assert_array_equal(out, expect)
    for name in ("before.png", "after.png"):
        status, data, headers = server.request(f"/api/jobs/{job['id']}/{name}")
        assert status == 200 and headers["content-type"] == "image/png"
    # every file the server wrote is inside its own folder
    files = [p for p in (tmp_path / "work").rglob("*") if p.is_file()]
    assert files and all(server.service.folder in p.parents for p in files)
    assert not [p for p in tmp_path.iterdir() if p.name != "work"]


def test_bad_uploads_are_refused_clearly(server, tmp_path):
    status, err = server.upload(b"this is not an image", "notes.png")
    assert status == 400 and "notes.png" in err["error"] and "\n" not in err["error"]
    status, err = server.upload(b"#!/bin/sh\n", "script.sh")
    assert status == 415 and "accepted: png" in err["error"]
    status, err = server.upload(b"\0" * (1024 * 1024 + 10), "huge.png")
    assert status == 413 and "upload limit of 1 MiB" in err["error"]
    big = np.zeros((500, 500, 3), dtype=np.uint8)  # 250 000 pixels > max_pixels 200 000, small file
    status, err = server.upload(_png(big), "wide.png")
    assert status == 413 and "decompression-bomb limit" in err["error"] and str(server.service.folder) not in err["error"]
    status, err = server.upload(_png(_photo()), "x.png", model="../../etc/passwd")
    assert status == 400 and "unknown model" in err["error"]
    status, err = server.upload(b"", "empty.png")
    assert status == 400 and "empty" in err["error"]
    # a hostile file name only names the download
    status, job = server.upload(_png(_photo(20, 20)), "../../../evil.png")
    assert status == 201
    server.wait(job["id"])
    assert not (tmp_path / "evil.png").exists() and not list(tmp_path.parent.glob("evil*"))
    _, _, headers = server.request(f"/api/jobs/{job['id']}/result")
    assert 'filename="evil_deblurred.png"' in headers["content-disposition"]
    assert server.request("/api/jobs/0123abcd")[0] == 404
    # nothing of the refused uploads is left behind
    jobs = [p for p in server.service.folder.iterdir() if p.is_dir()]
    assert len(jobs) == 1


def test_folder_removed_on_close_and_old_jobs_evicted(ckpt, tmp_path):
    service = DeblurService(OrderedDict([("tiny", ckpt)]), device="cpu", keep_jobs=2, workdir=tmp_path)
    ids = []
    for k in range(4):
        job = service.create(_png(_photo(16 + k, 16)), f"p{k}.png", None)
        ids.append(job.id)
        for _ in range(400):
            if job.state in ("done", "error"):
                break
            time.sleep(0.02)
        assert job.state == "done"
    assert len([p for p in service.folder.iterdir() if p.is_dir()]) <= 3 and service.get(ids[0]) is None
    service.close()
    assert not service.folder.exists()


def test_model_choices(ckpt, monkeypatch):
    import dbgan.models as models

    monkeypatch.setattr(models, "_folder", lambda: ckpt.parent / "none")
    with pytest.raises(ServeError, match="--model CHECKPOINT"):
        model_choices([])
    assert list(model_choices([str(ckpt)]).values()) == [ckpt]
    monkeypatch.setattr(models, "_folder", lambda: ckpt.parent)
    assert list(model_choices([])) == ["tiny"]


# --------------------------------------------------------------------------- in a real browser


def _chromium() -> tuple[str | None, str | None]:
    return (
        shutil.which("chromium") or shutil.which("chromium-browser"),
        shutil.which("chromedriver") or ("/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None),
    )


def test_browser_upload_wait_download(server, tmp_path):
    """Upload through the page, wait for the result, compare, download, screenshot."""
    browser, driver_path = _chromium()
    on_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC
        from selenium.webdriver.support.ui import WebDriverWait
    except ImportError:
        if on_ci:
            raise
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    if not (browser and driver_path):
        if on_ci:
            pytest.fail("CI: chromium and chromium-driver must be installed (.ci/run installs them)")
        pytest.skip("chromium / chromium-driver not installed (apt-get install chromium chromium-driver)")

    from dbgan.api import load_model

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    profile = tmp_path / "profile"
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1100,1000"):
        opts.add_argument(flag)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    drv = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    artefacts = Path(os.environ.get("DBGAN_TEST_ARTIFACTS") or tmp_path)
    artefacts.mkdir(parents=True, exist_ok=True)
    shot = artefacts / "serve_after_deblur.png"
    try:
        drv.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
        drv.get(server.url + "/")
        WebDriverWait(drv, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"))
        assert drv.find_element(By.ID, "model").get_attribute("value") == "tiny"
        assert drv.find_element(By.ID, "coarse").get_attribute("value") == "0"  # blur width: normal by default
        assert len(drv.find_elements(By.CSS_SELECTOR, "#coarse option")) == 3
        arr = _photo(90, 120)
        src = tmp_path / "blurry.png"
        Image.fromarray(arr).save(src)
        drv.find_element(By.ID, "file").send_keys(str(src))
        WebDriverWait(drv, 120).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done"
                                      or d.find_element(By.ID, "error").is_displayed())
        assert not drv.find_element(By.ID, "error").is_displayed(), drv.find_element(By.ID, "error").text
        assert drv.find_element(By.ID, "status").text.startswith("done")
        # both images loaded at the upload's size
        sizes = drv.execute_script(
            "return ['before', 'after'].map(id => [document.getElementById(id).naturalWidth, document.getElementById(id).naturalHeight]);")
        assert sizes == [[120, 90], [120, 90]]
        slider = drv.find_element(By.ID, "slider")
        drv.execute_script("arguments[0].value = 30; arguments[0].dispatchEvent(new Event('input'));", slider)
        assert "30%" in drv.find_element(By.ID, "after-wrap").value_of_css_property("clip-path")
        drv.save_screenshot(str(shot))
        print(f"\nscreenshot of the page after a deblur: {shot}")
        WebDriverWait(drv, 10).until(EC.element_to_be_clickable((By.ID, "download"))).click()
        target = downloads / "blurry_deblurred.png"
        for _ in range(300):
            if target.is_file() and not list(downloads.glob("*.crdownload")):
                break
            time.sleep(0.05)
        assert target.is_file(), f"no download in {downloads}: {list(downloads.iterdir())}"
        got = np.asarray(Image.open(target))
        expect = load_model(server.service.models["tiny"], device="cpu", tile=32)(arr)
        np.testing.assert_array_equal(got, expect)
        # a bad file through the page shows the server's message
        bad = tmp_path / "broken.png"
        bad.write_bytes(b"not a png at all")
        drv.find_element(By.ID, "file").send_keys(str(bad))
        WebDriverWait(drv, 30).until(lambda d: d.find_element(By.ID, "error").is_displayed())
        assert "broken.png" in drv.find_element(By.ID, "error").text
    finally:
        drv.quit()
    assert shot.is_file() and shot.stat().st_size > 1000
