"""The portal (`GET /ui/`) in a real headless Chromium driven by Selenium, against the real
platform: sign in with the platform's basic-auth credentials, classify a real photo, run a
sentiment request, see a bad input's error as the API returns it. Screenshots are saved under
test-artefacts/ (CI keeps them).

Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them). Skipped, saying so, only
when they are absent outside CI; with CI=true their absence fails the test."""

from __future__ import annotations

import shutil

import pytest
from helpers import ROOT, unavailable

ARTEFACTS = ROOT / "test-artefacts"

pytestmark = pytest.mark.slow


def _browser_paths() -> tuple[str | None, str | None]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    return browser, shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    binary, driver_path = _browser_paths()
    if binary is None or driver_path is None:
        missing = "chromium" if binary is None else "chromedriver"
        message = f"{missing} is not installed (apt-get install chromium chromium-driver)"
        unavailable(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, condition, timeout=60):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # the function list is redrawn every few seconds: an element read during a redraw is stale
    wait = WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,))
    return wait.until(condition)


def _text_of(css):
    from selenium.webdriver.common.by import By

    def read(driver):
        found = driver.find_elements(By.CSS_SELECTOR, css)
        return found[0].text if found and found[0].is_displayed() and found[0].text.strip() else False

    return read


def test_portal_classifies_a_photo_and_shows_text_results_and_errors(platform, browser, cat_jpeg, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    ARTEFACTS.mkdir(exist_ok=True)
    photo = tmp_path / "cat.jpg"
    photo.write_bytes(cat_jpeg)
    user, password = platform.credentials
    browser.get(platform.gateway_url + "/ui/")

    # basic auth is on: the page asks once, then lists the functions
    _wait(browser, lambda d: d.find_element(By.ID, "login").is_displayed())
    browser.find_element(By.ID, "login-user").clear()
    browser.find_element(By.ID, "login-user").send_keys(user)
    browser.find_element(By.ID, "login-password").send_keys(password)
    browser.find_element(By.ID, "login-submit").click()
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '#functions tr[data-function="image-classify"]'))
    assert not browser.find_element(By.ID, "login").is_displayed()

    # image-classify is chosen on load: choosing a file sends it
    assert Select(browser.find_element(By.ID, "fn-select")).first_selected_option.text == "image-classify"
    browser.find_element(By.ID, "image-input").send_keys(str(photo))
    top = _wait(browser, _text_of("#predictions .bar-row .label"))
    assert "cat" in top  # data.chelsea() is a tabby: tiger cat / Egyptian cat / tabby
    assert len(browser.find_elements(By.CSS_SELECTOR, "#predictions .bar-row")) == 5
    # the bars' widths are set through the CSSOM: the page's CSP (docs/reliability.md, 16) allows no inline style
    widths = [b.value_of_css_property("width") for b in browser.find_elements(By.CSS_SELECTOR, "#predictions .bar")]
    assert float(widths[0].removesuffix("px")) > float(widths[-1].removesuffix("px")) > 0, widths
    assert "X-Call-Id" in browser.find_element(By.ID, "call-info").text
    browser.save_screenshot(str(ARTEFACTS / "portal-image-classify.png"))

    # a sentiment request from the text box
    Select(browser.find_element(By.ID, "fn-select")).select_by_visible_text("text-sentiment")
    box = browser.find_element(By.ID, "text-input")
    box.clear()
    box.send_keys("What a wonderful day!")
    browser.find_element(By.ID, "send-text").click()
    assert _wait(browser, _text_of("#sentiment")).startswith("positive")
    browser.save_screenshot(str(ARTEFACTS / "portal-text-sentiment.png"))

    # a bad input: the API's error code and message, as returned
    box.clear()
    box.send_keys("   ")
    browser.find_element(By.ID, "send-text").click()
    error = _wait(browser, _text_of("#error"))
    assert error.startswith("400 empty_text:"), error
    browser.save_screenshot(str(ARTEFACTS / "portal-error.png"))

    # the list counts the calls just made (it is redrawn every few seconds)
    _wait(browser, _text_of('#functions tr[data-function="text-sentiment"] .invocations'))
    count = _wait(browser, lambda d: int(_text_of('#functions tr[data-function="text-sentiment"] .invocations')(d) or 0) >= 2)
    assert count
    # the page did everything above under its Content-Security-Policy, with nothing refused
    refused = [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
    assert refused == [], refused


def test_portal_shows_a_function_at_zero_and_marks_its_cold_start(platform, browser):
    """text-keywords scaled to zero through the API shows 0/0 and how it wakes; a call wakes it,
    and the list marks the cold start. Runs after the test above, whose sign-in the page keeps."""
    import requests
    from selenium.webdriver.common.by import By

    name = "text-keywords"
    row = f'#functions tr[data-function="{name}"]'
    scale = f"{platform.gateway_url}/system/scale-function/{name}"
    assert requests.post(scale, json={"replicas": 0}, auth=platform.credentials, timeout=60).status_code == 202
    try:
        browser.get(platform.gateway_url + "/ui/")
        cell = _wait(browser, lambda d: (t := _text_of(f"{row} .replicas")(d)) and t.startswith("0/0") and t)
        assert "scaled to zero: a call wakes it" in cell
        assert "zero" in browser.find_element(By.CSS_SELECTOR, row).get_attribute("class")
        r = requests.post(f"{platform.gateway_url}/function/{name}", json={"text": "Functions wake on a call."}, timeout=120)
        assert r.status_code == 200, r.text
        woke = _wait(
            browser, lambda d: (t := _text_of(f"{row} .replicas")(d)) and t.startswith("1/1") and "cold start" in t and t
        )
        assert "scaled to zero" not in woke
        browser.save_screenshot(str(ARTEFACTS / "portal-cold-start.png"))
    finally:
        requests.post(scale, json={"replicas": 1}, auth=platform.credentials, timeout=60)
