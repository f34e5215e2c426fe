"""The daemon's own page in a real browser (Debian's headless Chromium through Selenium and
/usr/bin/chromedriver): secret, add, complete, pause, resume, the chart and the segment map."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.daemon import SECRET, Daemon
from tests.server import Faults, FaultServer

CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1100",
]
# Pixels of a canvas close to a colour (r, g, b): what was really drawn, not just the DOM.
_COUNT_PIXELS = """
const [id, r, g, b] = arguments;
const canvas = document.getElementById(id);
const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
let n = 0;
for (let i = 0; i < data.length; i += 4) {
  if (Math.abs(data[i] - r) < 40 && Math.abs(data[i + 1] - g) < 40
      && Math.abs(data[i + 2] - b) < 40 && data[i + 3] > 200) n++;
}
return n;
"""
GREEN, BLUE = (47, 158, 68), (28, 126, 214)


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        yield driver
    finally:
        driver.quit()


def _row(driver: webdriver.Chrome, table: str, gid: str) -> Any:
    rows = driver.find_elements(By.CSS_SELECTOR, f"#{table}-list tr[data-gid='{gid}']")
    return rows[0] if rows else None


def _gid_of_name(daemon: Daemon, name: str) -> str:
    for listing in ("aria2.tellActive", "aria2.tellWaiting", "aria2.tellStopped"):
        args = () if listing == "aria2.tellActive" else (0, 100)
        for item in daemon.call(listing, *args, ["gid", "files"]):
            if (
                item["files"][0]["path"].endswith(name)
                or name in item["files"][0]["uris"][0]["uri"]
            ):
                return str(item["gid"])
    raise AssertionError(f"{name} not in the queue")


def test_page_adds_watches_pauses_resumes_and_draws(
    browser: webdriver.Chrome,
    tmp_path: Path,
    fault_server: FaultServer,
    make_data: Callable[..., bytes],
) -> None:
    """Through the page only: the secret is asked once and kept, a URL added completes, a
    second one is paused and resumed, and the chart and the segment map are drawn."""
    quick, slow = make_data(2 << 20, seed=1), make_data(12 << 20, seed=2)
    fault_server.add_file("/quick.bin", quick)
    fault_server.add_file("/slow.bin", slow)
    fault_server.set_faults("/slow.bin", Faults(throttle_bytes_per_s=400 * 1024))
    # The page redraws its rows on every poll: a row found just before a redraw is stale
    # when it is read, so a wait looks again instead of failing.
    wait = WebDriverWait(
        browser, 30, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
    )
    with Daemon(tmp_path / "root", tmp_path / "state") as daemon:
        browser.get(f"http://127.0.0.1:{daemon.port}/")
        wait.until(lambda d: d.find_element(By.ID, "secret-dialog").get_attribute("open"))
        browser.find_element(By.ID, "secret-input").send_keys(SECRET)
        browser.find_element(By.ID, "secret-button").click()
        wait.until(lambda d: "active" in d.find_element(By.ID, "global-stat").text)

        browser.find_element(By.ID, "urls").send_keys(fault_server.url("/quick.bin"))
        browser.find_element(By.ID, "add-button").click()
        wait.until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#stopped-list tr[data-status='complete']")
        )
        assert (daemon.root / "quick.bin").read_bytes() == quick

        browser.find_element(By.ID, "urls").send_keys(fault_server.url("/slow.bin"))
        browser.find_element(By.ID, "opt-split").send_keys("4")
        browser.find_element(By.ID, "add-button").click()
        gid = wait.until(lambda d: _gid_of_name(daemon, "slow.bin"))
        wait.until(lambda d: _row(d, "active", gid))
        _row(browser, "active", gid).click()  # select it: its segment map
        wait.until(
            lambda d: (
                int(d.find_element(By.ID, "segment-map").get_attribute("data-connections") or 0)
                >= 2
            )
        )
        _row(browser, "active", gid).find_element(
            By.CSS_SELECTOR, "button[data-action='pause']"
        ).click()
        wait.until(
            lambda d: (
                (row := _row(d, "waiting", gid)) and row.get_attribute("data-status") == "paused"
            )
        )
        paused_at = int(daemon.call("aria2.tellStatus", gid)["completedLength"])
        assert 0 < paused_at < len(slow)
        _row(browser, "waiting", gid).find_element(
            By.CSS_SELECTOR, "button[data-action='unpause']"
        ).click()
        wait.until(lambda d: _row(d, "active", gid))
        wait.until(
            lambda d: (
                int(d.find_element(By.ID, "segment-map").get_attribute("data-connections") or 0)
                >= 1
            )
        )
        time.sleep(2.5)  # a few more seconds of throughput on the chart
        chart_blue = browser.execute_script(_COUNT_PIXELS, "chart", *BLUE)
        map_green = browser.execute_script(_COUNT_PIXELS, "segment-map", *GREEN)
        map_blue = browser.execute_script(_COUNT_PIXELS, "segment-map", *BLUE)
        assert int(browser.find_element(By.ID, "chart").get_attribute("data-samples")) >= 5
        assert chart_blue > 200 and map_green > 500 and map_blue > 20
        notices = browser.find_element(By.ID, "notices").text
        assert "paused" in notices and "resum" in notices
        screenshot = tmp_path / "daemon-page.png"
        browser.save_screenshot(str(screenshot))
        print(f"screenshot of the daemon's page: {screenshot}")

        urls = browser.find_element(By.ID, "urls")
        urls.send_keys(
            fault_server.url("/quick.bin") + "?a\n" + fault_server.url("/quick.bin") + "?b"
        )
        browser.find_element(By.ID, "opt-split").clear()
        browser.find_element(By.ID, "opt-paused").click()
        browser.find_element(By.ID, "add-button").click()
        wait.until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#waiting-list tr[data-gid]")) == 2
        )
        first, second = daemon.call("aria2.tellWaiting", 0, 2, ["gid"])
        _row(browser, "waiting", first["gid"]).find_element(
            By.CSS_SELECTOR, "button[data-action='down']"
        ).click()
        wait.until(
            lambda d: (
                [r["gid"] for r in daemon.call("aria2.tellWaiting", 0, 2, ["gid"])]
                == [second["gid"], first["gid"]]
            )
        )

        browser.refresh()  # the secret is kept in the browser: no second question
        wait.until(lambda d: "active" in d.find_element(By.ID, "global-stat").text)
        assert not browser.find_element(By.ID, "secret-dialog").get_attribute("open")
        assert daemon.wait_status(gid, {"complete", "error"}, 60)["status"] == "complete"
    assert (daemon.root / "slow.bin").read_bytes() == slow
