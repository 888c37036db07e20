"""The browser suite's installation and browser: a real ``syncgate serve`` over the four
simulators (run in an event loop of their own, in a thread, so that selenium's blocking
calls never hold them up), headless Chromium through Debian's chromedriver, and waits on
conditions (WebDriverWait), never sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import httpx
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.blackbox import ADMIN_KEY, GatewayProcess, free_port, simulators, write_config
from tests.contract.kits import KITS

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
#: Where the committed screenshots live; the suite writes there only when
#: SYNCGATE_UPDATE_SCREENSHOTS=1 (they change on every run: ids, times).
SCREENSHOTS = ROOT / "docs" / "console"
UPDATE_SCREENSHOTS = "SYNCGATE_UPDATE_SCREENSHOTS"
#: A laptop screen.
WINDOW = (1366, 900)
WAIT_S = 30.0


class Installation:
    """The gateway and the four simulators; sync clients for the simulators' controls
    and the admin API."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._stop: asyncio.Event | None = None
        self._done: Future[None] | None = None
        self.control: dict[str, httpx.Client] = {}
        #: An InboxOps ticket opened before the gateway first started: history, which
        #: only a backfill brings in (the onboarding page's test).
        self.history_ticket = ""
        self.admin = httpx.Client(
            base_url=f"{self.url}/admin", headers={"X-Admin-Key": ADMIN_KEY}, timeout=30
        )

    def start(self) -> None:
        self._thread.start()
        ready: Future[dict[str, str]] = Future()
        self._done = asyncio.run_coroutine_threadsafe(self._run(ready), self._loop)
        urls = ready.result(timeout=90)
        self.control = {name: httpx.Client(base_url=url, timeout=30) for name, url in urls.items()}

    async def _run(self, ready: Future[dict[str, str]]) -> None:
        self._stop = asyncio.Event()
        try:
            async with simulators(self.url, tuple(KITS)) as (_, control):
                urls = {name: str(client.base_url) for name, client in control.items()}
                seeded = await control["inboxops"].post(
                    "/_sim/seed", json={"subject": "Invoices sent twice (last week)"}
                )
                assert seeded.status_code == 201, seeded.text
                self.history_ticket = str(seeded.json()["data"]["id"])
                config = self.tmp / "config.yaml"
                write_config(config, f"sqlite:///{self.tmp / 'gateway.db'}", urls)
                gateway = GatewayProcess(config, self.port, "console", self.tmp / "gateway.log")
                try:
                    await gateway.ready()
                    ready.set_result(urls)
                    await self._stop.wait()
                finally:
                    await gateway.stop()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    def stop(self) -> None:
        for client in (*self.control.values(), self.admin):
            client.close()
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._done is not None:
            self._done.result(timeout=60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    # -- the vendors, as a person and as the gateway sees them ------------------------------

    def open_ticket(self, subject: str) -> str:
        response = self.control["inboxops"].post("/_sim/seed", json={"subject": subject})
        assert response.status_code == 201, response.text
        return str(response.json()["data"]["id"])

    def open_issue(self, title: str) -> str:
        response = self.control["hookstream"].post(
            "/_sim/seed",
            json={
                "destination_id": f"dst_{title.lower().replace(' ', '_')}",
                "destination_name": title,
                "error_type": "timeout",
                "title": title,
            },
        )
        assert response.status_code == 201, response.text
        return str(response.json()["issue"]["id"])

    def objects(self, system: str) -> dict[str, dict[str, Any]]:
        response = self.control[system].get("/_sim/objects")
        response.raise_for_status()
        return {str(o["id"]): o for o in response.json()["objects"]}

    def item_of(self, system: str, external_id: str) -> dict[str, Any] | None:
        response = self.admin.get("/lookup", params={"system": system, "external_id": external_id})
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return dict(response.json())

    def linked(self, ticket: str, systems: int = 3) -> dict[str, Any]:
        """Wait until the ticket's work item has ``systems`` objects, all in step."""
        found: dict[str, Any] = {}

        def ready() -> bool:
            detail = self.item_of("inboxops", ticket)
            if detail is None:
                return False
            found.update(detail)
            links = detail["links"]
            return len(links) == systems and all(
                link["external_id"] and link["state"] == "synced" for link in links
            )

        wait_for(ready, f"ticket {ticket} linked to {systems} objects in step")
        return found


def wait_for(condition: Callable[[], T], what: str, timeout_s: float = WAIT_S) -> T:
    """Poll ``condition`` (no browser needed) until it is truthy, or fail naming ``what``."""
    return WebDriverWait(None, timeout_s, poll_frequency=0.1).until(  # type: ignore[arg-type]
        lambda _: condition(), f"timed out waiting for: {what}"
    )


@contextlib.contextmanager
def chromium() -> Iterator[WebDriver]:
    binary = os.environ.get("SYNCGATE_CHROMIUM", "/usr/bin/chromium")
    driver_path = os.environ.get("SYNCGATE_CHROMEDRIVER", "/usr/bin/chromedriver")
    for path in (binary, driver_path):
        if not Path(path).exists():
            raise RuntimeError(
                f"{path} not found: run the suite with scripts/test, which installs "
                "Debian's chromium and chromium-driver (scripts/browser.sh)"
            )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()


def screenshot_folder(scratch: Path) -> Path:
    """docs/console/ with SYNCGATE_UPDATE_SCREENSHOTS=1, else ``scratch`` (a temporary
    folder: the screenshots are still taken, and the tree stays clean)."""
    return SCREENSHOTS if os.environ.get(UPDATE_SCREENSHOTS) == "1" else scratch


class Console:
    """The browser on the console: navigation, forms, waits; screenshots into
    ``screenshots``."""

    def __init__(self, driver: WebDriver, url: str, screenshots: Path) -> None:
        self.driver = driver
        self.url = url
        self.screenshots = screenshots
        #: The ``#flash`` element ``flash`` last read (its page's element reference).
        self._flash_read: str | None = None

    def open(self, path: str) -> None:
        self.driver.get(f"{self.url}/ui{path}")

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def until(self, condition: Callable[[WebDriver], T], what: str) -> T:
        return WebDriverWait(self.driver, WAIT_S, poll_frequency=0.1).until(
            condition, f"timed out waiting for: {what}"
        )

    def text_of(self, css: str) -> str:
        """The element's text, or "" while it is not there (the live part is swapped)."""
        found = self.all(css)
        try:
            return found[0].text if found else ""
        except Exception:  # noqa: BLE001 - swapped out between find and read
            return ""

    def flash(self) -> str:
        """The message the last action left. The page a message was read on stays in
        view until the action's response replaces it, so a message is taken only from
        an element other than the one read last time (each page load makes new ones)."""

        def new_message(_: WebDriver) -> str:
            found = self.all("#flash")
            if not found or found[0].id == self._flash_read:
                return ""
            try:
                text = found[0].text
            except Exception:  # noqa: BLE001 - its page went away between find and read
                return ""
            if text:
                self._flash_read = found[0].id
            return text

        return self.until(new_message, "a message after the action")

    def sign_in(self, key: str = ADMIN_KEY) -> None:
        self.open("/login")
        self.find("#key").send_keys(key)
        self.find("form button[type=submit]").click()

    def screenshot(self, name: str) -> Path:
        self.screenshots.mkdir(parents=True, exist_ok=True)
        path = self.screenshots / f"{name}.png"
        assert self.driver.save_screenshot(str(path)), f"no screenshot {name}"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
        return path
