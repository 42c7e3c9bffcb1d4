"""The web page at / in a real headless Chromium (selenium), against the real service on 127.0.0.1."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from breastus import Predictor
from breastus.service import create_app, describe_model

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the browser tests run on Linux")

if sys.platform.startswith("linux"):  # on Linux (CI) these must be installed: fail loudly, never skip
    import httpx
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    from service_helpers import serve_in_thread

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path) -> Iterator[str]:
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu")
    app = create_app(predictor, description=describe_model(predictor, tiny_checkpoint))
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1200,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, condition: Any, timeout: float = 90) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def test_uploading_a_busi_image_shows_the_api_answer_and_the_overlay(
    server: str, browser: Any, busi_root: Path
) -> None:
    image = busi_root / "malignant" / "malignant (1).png"
    api = httpx.post(
        f"{server}/v1/predict?heatmap=true&outline=true", files={"file": ("x.png", image.read_bytes())}, timeout=120
    ).json()

    browser.get(server + "/")
    assert "Not a medical device" in browser.find_element(By.ID, "notice").text
    _wait(browser, lambda d: "torchvision/resnet18" in d.find_element(By.ID, "model").text)
    browser.find_element(By.ID, "file").send_keys(str(image.resolve()))
    _wait(browser, lambda d: d.find_element(By.ID, "status").text == "Done.")

    assert browser.find_element(By.ID, "label").text == api["label"]
    bars = browser.find_elements(By.CSS_SELECTOR, "#bars li")
    shown = {bar.get_attribute("data-class"): float(bar.get_attribute("data-probability")) for bar in bars}
    assert shown.keys() == api["probabilities"].keys()
    for name, p in api["probabilities"].items():
        assert shown[name] == pytest.approx(p, abs=1e-9)
        text = browser.find_element(By.CSS_SELECTOR, f'#bars li[data-class="{name}"] .value').text
        assert text == f"{100 * p:.1f} %"
    top = browser.find_element(By.CSS_SELECTOR, "#bars li.top").get_attribute("data-class")
    assert top == api["label"]

    overlay = browser.find_element(By.ID, "overlay")
    _wait(browser, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", overlay))
    natural = browser.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", overlay)
    assert natural == [api["width"], api["height"]] or max(natural) == 768  # the overlay has the image's geometry
    assert overlay.is_displayed()
    picture = browser.find_element(By.ID, "image")
    assert browser.execute_script("return arguments[0].naturalWidth", picture) == api["width"]


def test_the_page_shows_the_services_error_for_a_file_that_is_not_an_image(
    server: str, browser: Any, tmp_path: Path
) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not an image, whatever the name says")
    browser.get(server + "/")
    browser.find_element(By.ID, "file").send_keys(str(text))
    _wait(browser, lambda d: d.find_element(By.ID, "status").text.startswith("Error"))
    status = browser.find_element(By.ID, "status")
    assert status.text.startswith("Error 415:") and "not a PNG, JPEG or DICOM" in status.text
    assert "error" in (status.get_attribute("class") or "")
    assert not browser.find_element(By.ID, "result").is_displayed()
