"""The page once in a real browser: Debian's chromium, headless, through selenium and Debian's chromedriver (no driver
download). Type a prompt, click Generate, wait for the gallery, check the images and the seeds; with every host but
127.0.0.1 unresolvable, so the page must work offline, and no request may leave the machine.

SD_UI_SCREENSHOT=client/docs/ui.png keeps the screenshot (the README's picture); otherwise it goes to a temp folder.
"""

import json
import os
import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--no-first-run", "--disable-sync", "--window-size=1280,900",
         "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1")  # fmt: skip
WAIT_SECONDS = 120
IMAGES = 4


@pytest.fixture
def browser(tmp_path):
    for program in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(program):
            pytest.fail(f"{program} is missing: make install-system installs Debian's chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def test_type_a_prompt_click_and_see_the_gallery(browser, ui, tmp_path):
    browser.get(ui.url)
    wait = WebDriverWait(browser, WAIT_SECONDS)
    wait.until(lambda b: b.find_element(By.CSS_SELECTOR, "#prompt textarea")).send_keys("a red fox in the snow")
    for field, value in (("steps", "2"), ("seed", "42"), ("images", str(IMAGES))):
        box = browser.find_element(By.CSS_SELECTOR, f"#{field} input")
        box.clear()
        box.send_keys(value)
    browser.find_element(By.ID, "generate").click()

    wait.until(lambda b: b.find_element(By.ID, "status").text.startswith(f"{IMAGES} of {IMAGES} images"))
    thumbnails = browser.find_elements(By.CSS_SELECTOR, "#gallery img")
    assert len(thumbnails) == IMAGES
    loaded = "return arguments[0].complete && arguments[0].naturalWidth > 0"
    assert all(browser.execute_script(loaded, thumbnail) for thumbnail in thumbnails)
    captions = browser.find_element(By.ID, "gallery").text
    assert all(f"seed {seed}" in captions for seed in range(42, 42 + IMAGES)), captions

    screenshot = Path(os.environ.get("SD_UI_SCREENSHOT") or tmp_path / "ui.png")
    assert browser.save_screenshot(str(screenshot))
    assert not _requests_off_this_machine(browser)


def _requests_off_this_machine(browser):
    """http(s) URLs the page asked for on any other host than 127.0.0.1 (fonts, scripts, analytics, ...)."""
    urls = set()
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.add(message["params"]["request"]["url"])
    return sorted(u for u in urls if u.startswith(("http:", "https:", "ws:", "wss:")) and "//127.0.0.1:" not in u)
