"""The emulator's web page in a real headless Chromium.

The page is plain JavaScript polling the emulator's JSON read API, so only a real browser
proves it: rows appear as data arrives without a reload, values from requests show as text,
clicking a user opens their timeline, and the API key never reaches the page.

Needs the Debian packages ``chromium`` and ``chromium-driver`` (``scripts/test`` installs them).
Selenium is pointed at those binaries so it never tries to download a browser; elsewhere set
``MOETRACK_CHROMIUM`` / ``MOETRACK_CHROMEDRIVER``. The timeline test saves a screenshot of the
whole page (to ``MOETRACK_SCREENSHOT_DIR`` if set, else a pytest temp dir) and prints its path.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from moetrack.testing import Emulator

from .._need import need, need_program

CHROMIUM = os.environ.get("MOETRACK_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("MOETRACK_CHROMEDRIVER", "/usr/bin/chromedriver")
WAIT_SECONDS = 15
XSS = "<img src=x onerror=alert(1)>"

try:
    from selenium import webdriver
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    SELENIUM_MISSING: ImportError | None = None
except ImportError as exc:  # pragma: no cover - the browser fixture fails with the fix
    SELENIUM_MISSING = exc


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    need(SELENIUM_MISSING is None, f"selenium cannot be imported ({SELENIUM_MISSING})")
    for path in (CHROMIUM, CHROMEDRIVER):
        need_program(path)
    profile = tempfile.mkdtemp(prefix="moetrack-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    service = Service(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


def key(emu: Emulator) -> str:
    assert emu.api_key is not None
    return emu.api_key


def post(emu: Emulator, *elements: dict[str, Any]) -> None:
    response = httpx.post(
        f"{emu.url}/v1/transition/{emu.app_id}",
        json={"type": "transition", "elements": list(elements)},
        auth=(emu.app_id, key(emu)),
        headers={"MOE-APPKEY": emu.app_id},
        timeout=10,
    )
    assert response.status_code == 200, response.text


def user(customer_id: str, **attributes: Any) -> dict[str, Any]:
    return {"type": "customer", "customer_id": customer_id, "attributes": attributes}


def device(customer_id: str, device_id: str, platform: str, push_id: str) -> dict[str, Any]:
    return {
        "type": "device",
        "customer_id": customer_id,
        "device_id": device_id,
        "attributes": {"platform": platform, "push_id": push_id, "model": "Pixel 8"},
    }


def event(customer_id: str, *actions: dict[str, Any]) -> dict[str, Any]:
    return {"type": "event", "customer_id": customer_id, "actions": list(actions)}


def action(name: str, **attributes: Any) -> dict[str, Any]:
    return {
        "action": name,
        "attributes": attributes,
        "platform": "web",
        "current_time": 1_700_000_000,
    }


def wait(driver: Any) -> Any:
    return WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.1)


def wait_for(driver: Any, css: str) -> Any:
    return wait(driver).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))


def text_of(driver: Any, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def open_page(driver: Any, emu: Emulator) -> None:
    driver.get(f"{emu.url}/")
    wait(driver).until(
        lambda d: d.find_element(By.ID, "status").get_attribute("data-state") == "live"
    )
    # A marker that a reload would wipe out: proves later updates come in place.
    driver.execute_script("window.__moetrackNoReload = true;")


def assert_not_reloaded(driver: Any) -> None:
    assert driver.execute_script("return window.__moetrackNoReload === true;")


def seed(emu: Emulator) -> None:
    post(
        emu,
        user("alice-1", name="Alice", email="alice@example.com", plan="pro", age=34),
        user("bob-22", name="Bob", city="Pune"),
        device("alice-1", "alice-phone", "ANDROID", "push-token-alice"),
        event("alice-1", action("Signed Up", source="ads"), action("Purchase", price=3999)),
        user("1", name="single digit id"),  # dropped: customer_id must be longer than one char
        event("bob-22", {"action": "", "attributes": {}}),  # dropped: reserved event name
        {"type": "device", "customer_id": "bob-22", "attributes": {"platform": "web"}},
    )


def test_page_shows_the_state_and_updates_without_reload(browser: Any, emu: Emulator) -> None:
    seed(emu)
    open_page(browser, emu)

    row = wait_for(browser, '#users tr[data-customer-id="alice-1"]')
    assert "Alice" in row.text
    assert "alice@example.com" in row.text
    wait_for(browser, '#users tr[data-customer-id="bob-22"]')
    assert not browser.find_elements(By.CSS_SELECTOR, '#users tr[data-customer-id="1"]')

    dev = wait_for(browser, '#devices tr[data-device-id="alice-phone"]')
    assert "ANDROID" in dev.text
    assert "push-token-alice" in dev.text

    wait(browser).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#dropped tr[data-reason]")) >= 3
    )
    rows = browser.find_elements(By.CSS_SELECTOR, "#dropped tr[data-reason]")
    assert all(r.get_attribute("data-reason") for r in rows)  # every drop says why
    fields = sorted(r.find_elements(By.TAG_NAME, "td")[4].text for r in rows)
    assert any("customer_id" in f for f in fields), fields
    assert any("action" in f for f in fields), fields
    assert any("push_id" in f for f in fields), fields

    request_row = wait_for(browser, '#requests tr[data-status="200"]')
    assert f"/v1/transition/{emu.app_id}" in request_row.text
    wait(browser).until(lambda d: text_of(d, '[data-count="users"]') == "2")
    assert text_of(browser, '[data-count="devices"]') == "1"
    assert text_of(browser, '[data-count="events"]') == "2"
    assert int(text_of(browser, '[data-count="dropped"]')) >= 3
    assert text_of(browser, '[data-count="requests"]') == "1"

    # More data arrives while the page is open: it shows up in place.
    post(
        emu,
        user("carol-333", name="Carol"),
        device("carol-333", "carol-laptop", "web", "push-token-carol"),
    )
    wait_for(browser, '#users tr[data-customer-id="carol-333"]')
    wait_for(browser, '#devices tr[data-device-id="carol-laptop"]')
    wait(browser).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#requests tr[data-status]")) == 2
    )
    wait(browser).until(lambda d: text_of(d, '[data-count="users"]') == "3")
    # An error response is logged with its status and error type.
    bad = httpx.post(
        f"{emu.url}/v1/transition/{emu.app_id}",
        content=b"{not json",
        auth=(emu.app_id, key(emu)),
        headers={"Content-Type": "application/json", "MOE-APPKEY": emu.app_id},
        timeout=10,
    )
    assert bad.status_code == 400
    failed = wait_for(browser, '#requests tr[data-status="400"]')
    assert "Malformed JSON" in failed.text
    assert_not_reloaded(browser)


def test_attribute_values_are_shown_as_text(browser: Any, emu: Emulator) -> None:
    post(
        emu,
        user("mallory-9", name=XSS, **{"<b>key</b>": "<script>alert(2)</script>"}),
        event("mallory-9", action("<i>Clicked</i>", html=XSS)),
    )
    open_page(browser, emu)
    row = wait_for(browser, '#users tr[data-customer-id="mallory-9"]')
    assert XSS in row.text
    assert "<b>key</b>" in row.text
    assert "<script>alert(2)</script>" in row.text
    assert not browser.find_elements(By.CSS_SELECTOR, "main img, main b, main i")
    assert browser.execute_script("return document.scripts.length;") == 1

    row.click()
    item = wait_for(browser, "#events li[data-action]")
    assert "<i>Clicked</i>" in item.text
    assert XSS in item.text
    assert not browser.find_elements(By.CSS_SELECTOR, "main img, main b, main i")
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text


def test_clicking_a_user_shows_their_event_timeline(
    browser: Any, emu: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> None:
    seed(emu)
    open_page(browser, emu)
    assert browser.find_element(By.ID, "detail-body").is_displayed() is False

    wait_for(browser, '#users tr[data-customer-id="alice-1"]').click()
    wait(browser).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#events li[data-action]")) == 2
    )
    actions = [
        li.get_attribute("data-action")
        for li in browser.find_elements(By.CSS_SELECTOR, "#events li[data-action]")
    ]
    assert actions == ["Signed Up", "Purchase"]
    timeline = text_of(browser, "#user-detail")
    assert "alice-1" in timeline
    assert "web" in timeline  # platform
    assert "3999" in timeline
    assert "ads" in timeline
    assert "2023" in timeline  # the action's current_time, 2023-11-14
    assert text_of(browser, "#detail-attributes").count("alice@example.com") == 1
    selected = browser.find_element(By.CSS_SELECTOR, '#users tr[data-customer-id="alice-1"]')
    assert selected.get_attribute("aria-selected") == "true"

    # The open timeline follows new events for that user without a reload.
    post(emu, event("alice-1", action("Refund", amount=10)))
    wait_for(browser, '#events li[data-action="Refund"]')
    assert_not_reloaded(browser)

    # Another user: their (empty) timeline replaces the first one.
    browser.find_element(By.CSS_SELECTOR, '#users tr[data-customer-id="bob-22"]').click()
    wait(browser).until(lambda d: text_of(d, "#detail-customer-id") == "bob-22")
    wait(browser).until(lambda d: not d.find_elements(By.CSS_SELECTOR, "#events li[data-action]"))

    shots = Path(os.environ.get("MOETRACK_SCREENSHOT_DIR") or tmp_path_factory.mktemp("page"))
    shots.mkdir(parents=True, exist_ok=True)
    browser.find_element(By.CSS_SELECTOR, '#users tr[data-customer-id="alice-1"]').click()
    wait_for(browser, '#events li[data-action="Refund"]')
    path = shots / "emulator-page.png"
    height = browser.execute_script("return document.documentElement.scrollHeight;")
    browser.set_window_size(1400, max(1000, int(height) + 140))  # the whole page in one shot
    try:
        assert browser.save_screenshot(str(path))
    finally:
        browser.set_window_size(1400, 1000)
    print(f"screenshot: {path}")


def test_the_api_key_never_reaches_the_page(browser: Any, emu: Emulator) -> None:
    seed(emu)
    # A request with a wrong key is logged too; neither key may show.
    wrong = httpx.post(
        f"{emu.url}/v1/transition/{emu.app_id}",
        json={"type": "transition", "elements": [user("eve-5", name="Eve")]},
        auth=(emu.app_id, "not-the-key-" + key(emu)),
        headers={"MOE-APPKEY": emu.app_id},
        timeout=10,
    )
    assert wrong.status_code == 401
    open_page(browser, emu)
    wait_for(browser, '#users tr[data-customer-id="alice-1"]')
    wait_for(browser, '#requests tr[data-status="401"]')
    wait_for(browser, '#users tr[data-customer-id="alice-1"]').click()
    wait_for(browser, "#events li[data-action]")
    source = browser.page_source
    assert key(emu) not in source
    assert "Authorization" not in source
    assert "Basic " not in source
