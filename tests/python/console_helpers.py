"""Debian's Chromium, headless, driven through Selenium for the console's
browser tests (tests/python/test_console.py).

The browser runs as root in CI, so it needs --no-sandbox; every run gets a
fresh profile directory and a 1280x800 viewport. Every wait is a bounded
WebDriverWait; nothing sleeps.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path
from urllib.parse import urlsplit

import requests
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

WIDTH, HEIGHT = 1280, 800
WAIT_SECONDS = 20.0

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    f"--window-size={WIDTH},{HEIGHT}",
)

# The headers the spec requires on every console answer (static files may cache).
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'self'; script-src 'self'; "
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}

WRONG_LOGIN = "The access key id or secret access key is wrong."


def chromium_tools() -> tuple[str, str] | None:
    """(chromium, chromedriver): $PODID_CHROMIUM / $PODID_CHROMEDRIVER, else
    Debian's from PATH; None when either is missing."""
    browser = os.environ.get("PODID_CHROMIUM") or shutil.which("chromium")
    driver = os.environ.get("PODID_CHROMEDRIVER") or shutil.which("chromedriver")
    if not browser or not driver or not (os.access(browser, os.X_OK) and os.access(driver, os.X_OK)):
        return None
    return browser, driver


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


class Browser:
    """One headless Chromium with its own profile, pointed at one server."""

    def __init__(self, endpoint: str, tools: tuple[str, str], profile: Path, shots: Path):
        self.endpoint = endpoint.rstrip("/")
        self.shots = shots
        options = webdriver.ChromeOptions()
        options.binary_location = tools[0]
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(options=options, service=Service(tools[1]))
        self.driver.set_page_load_timeout(WAIT_SECONDS)
        # The viewport itself is 1280x800 (the window's size includes no
        # chrome in headless mode, but be exact for the screenshots).
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
        )

    def quit(self) -> None:
        self.driver.quit()

    # navigation ------------------------------------------------------------

    def open(self, path: str) -> None:
        self.driver.get(self.endpoint + path)

    @property
    def path(self) -> str:
        return urlsplit(self.driver.current_url).path

    @property
    def query(self) -> str:
        return urlsplit(self.driver.current_url).query

    def wait(self) -> WebDriverWait:
        return WebDriverWait(self.driver, WAIT_SECONDS)

    def submit(self, button: WebElement) -> None:
        """Clicks a submit button and waits for the next page to load."""
        # A mark on the old page's window: a new page has none.
        self.driver.execute_script("window.__podidOldPage = true")
        button.click()
        self.accept_confirmation()
        self.wait().until(
            lambda d: d.execute_script(
                "return window.__podidOldPage !== true && document.readyState === 'complete'"
            )
        )

    def accept_confirmation(self) -> bool:
        """Accepts a window.confirm() dialog if one is open."""
        try:
            self.driver.switch_to.alert.accept()
            return True
        except NoAlertPresentException:
            return False

    def wait_path(self, path: str) -> None:
        self.wait().until(lambda _: self.path == path, f"expected {path}, at {self.path}")

    # elements ----------------------------------------------------------------

    def el(self, css: str) -> WebElement:
        return self.wait().until(EC.presence_of_element_located((By.CSS_SELECTOR, css)))

    def els(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def has(self, css: str) -> bool:
        return bool(self.els(css))

    def text(self, css: str) -> str:
        return self.el(css).text.strip()

    def fill(self, form_css: str, values: dict[str, str]) -> WebElement:
        """Types values into a form's named inputs; returns the form."""
        form = self.el(form_css)
        for name, value in values.items():
            field = form.find_element(By.NAME, name)
            if field.tag_name == "select":
                Select(field).select_by_value(value)
            else:
                field.clear()
                field.send_keys(value)
        return form

    def submit_form(self, form_css: str, values: dict[str, str]) -> None:
        form = self.fill(form_css, values)
        button = form.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit], button:not([type])")
        self.submit(button)

    def login(self, access_key_id: str, secret: str) -> None:
        self.open("/console/login")
        self.submit_form("form#login", {"access_key_id": access_key_id, "secret_access_key": secret})

    def logout(self) -> None:
        self.submit(self.el("form#logout button"))

    def rows(self) -> list[dict[str, str]]:
        """The association table's rows as {cell class: text}."""
        out = []
        for tr in self.els("table#associations tbody tr"):
            cells = {}
            for cls in ("cluster", "namespace", "service-account", "role-arn", "association-id"):
                found = tr.find_elements(By.CSS_SELECTOR, f".{cls}")
                if found:
                    cells[cls] = found[0].text.strip()
            out.append(cells)
        return out

    # what the page may not do --------------------------------------------------

    def assert_no_injected_script(self) -> None:
        """No alert opened and every script element is the console's own file."""
        try:
            alert = self.driver.switch_to.alert
            raise AssertionError(f"an alert opened: {alert.text!r}")
        except NoAlertPresentException:
            pass
        for script in self.els("script"):
            src = script.get_attribute("src") or ""
            assert urlsplit(src).path.startswith("/console/static/"), f"a script that is not the console's: {script.get_attribute('outerHTML')}"

    def console_errors(self) -> list[str]:
        """The browser console's errors since the last call (CSP violations among them)."""
        return [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    # the session, outside the browser -------------------------------------------

    def session_cookie(self) -> dict | None:
        return self.driver.get_cookie("podid_session")

    def csrf_token(self) -> str:
        """The CSRF token the page's logout form carries."""
        return self.el("form#logout input[name=csrf_token]").get_attribute("value")

    def http(self, method: str, path: str, *, data=None, cookie: bool = True) -> requests.Response:
        """A request outside the browser with (or without) its session cookie;
        redirects are not followed."""
        cookies = {}
        if cookie and (c := self.session_cookie()):
            cookies[c["name"]] = c["value"]
        return requests.request(
            method,
            self.endpoint + path,
            data=data,
            cookies=cookies,
            allow_redirects=False,
            timeout=15,
        )

    def screenshot(self, name: str) -> Path:
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{name}.png"
        assert self.driver.get_screenshot_as_file(str(path)), f"no screenshot written to {path}"
        return path
