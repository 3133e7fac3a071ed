"""The web page of `darkcsp serve` in a real browser: headless Chromium (Debian's `chromium` +
`chromium-driver`, which .ci/run installs) driven by Selenium. A corpus photo is uploaded through the file
input; the page must draw as many boxes as Darknet found distinct boxes (detections.json).

Screenshots go to the test's tmp folder; DARKCSP_UPDATE_SCREENSHOTS=1 also writes docs/images/serve-page.png and
docs/images/serve-live.png (the README's pictures)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from darkcsp.serve.app import ServeConfig, create_app
from darkcsp.serve.stream import VideoSource

from tests.conftest import REPO
from tests.conftest import photo_of
from tests.serve.conftest import running, trained_case

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra)")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture
def browser(tmp_path):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        message = ("headless Chromium not found (apt-get install chromium chromium-driver; .ci/run installs "
                   f"them): looked for {CHROMIUM} and {CHROMEDRIVER}")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium.webdriver.chrome.service import Service
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager go looking for drivers online
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1360,1040", "--hide-scrollbars",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def keep_screenshot(driver, tmp_path: Path, name: str, publish: bool = True) -> Path:
    shot = tmp_path / name
    assert driver.save_screenshot(str(shot))
    if publish and os.environ.get("DARKCSP_UPDATE_SCREENSHOTS"):
        shutil.copy(shot, REPO / "docs" / "images" / name)
    return shot


def distinct_boxes(detections) -> int:
    """Darknet prints one line per (box, class): lines of one box share its coordinates."""
    return len({(d["x"], d["y"], d["w"], d["h"]) for d in detections})


def wait_ready(driver):
    WebDriverWait(driver, 60).until(lambda d: d.execute_script("return document.body.dataset.ready") == "1")


@pytest.mark.parametrize("case,image", [("yolov4-tiny-coco", "bus"), ("yolov3-tiny-coco", "coffee")])
def test_page_upload_draws_darknets_boxes(browser, case_server, tmp_path, case, image):
    base = case_server(case)
    photo = photo_of(case, image)
    want = json.loads((photo.parent / "detections.json").read_text())["detections"]
    browser.get(base + "/")
    wait_ready(browser)
    assert "model.cfg + model.weights" in browser.find_element(By.ID, "model").text
    browser.find_element(By.ID, "file").send_keys(str(photo))
    WebDriverWait(browser, 120).until(
        lambda d: d.find_element(By.ID, "status").get_attribute("data-state") in ("done", "error"))
    status = browser.find_element(By.ID, "status")
    assert status.get_attribute("data-state") == "done", status.text
    items = browser.find_elements(By.CSS_SELECTOR, "#dets li.det-box")
    canvas = browser.find_element(By.ID, "canvas")
    assert len(items) == int(canvas.get_attribute("data-boxes")) == distinct_boxes(want) > 0
    # the listed classes, in Darknet's order
    listed = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#dets .det .cls")]
    assert listed == [d["class_name"] for d in want]
    # the canvas really shows the photo, at its size, with boxes drawn on it
    assert (int(canvas.get_attribute("width")), int(canvas.get_attribute("height"))) == \
        tuple(cv2.imread(str(photo)).shape[1::-1])
    shot = keep_screenshot(browser, tmp_path, "serve-page.png", publish=image == "bus")
    png = cv2.imread(str(shot))
    assert png is not None and png.shape[0] >= 700


def test_page_shows_the_live_stream(browser, tmp_path):
    """With --source the page shows the annotated MJPEG and the per-frame records of /events."""
    case = "yolov4-tiny-coco"
    _, model, names = trained_case(case)
    det = model.detector(names=names)
    photo = cv2.imread(str(photo_of(case, "bus")))
    video = tmp_path / "street.avi"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (640, 640))
    for k in range(10):
        vw.write(np.ascontiguousarray(photo[20 * k:20 * k + 640, 10 * k:10 * k + 640]))
    vw.release()
    with running(create_app(det, ServeConfig(), VideoSource(det, str(video)))) as base:
        browser.get(base + "/")
        wait_ready(browser)
        WebDriverWait(browser, 60).until(lambda d: d.execute_script(
            "const i = document.getElementById('stream'); return i.complete && i.naturalWidth") == 640)
        WebDriverWait(browser, 60).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#events div")) >= 3)
        first = browser.find_elements(By.CSS_SELECTOR, "#events div")[0].text
        assert first.startswith("street.avi#frame=") and "person" in first
        browser.execute_script("document.getElementById('live').scrollIntoView()")
        keep_screenshot(browser, tmp_path, "serve-live.png")
        browser.get("about:blank")  # close the streams before the server stops
