"""`rollout ui` in a real headless Chromium (Debian's chromium and
chromium-driver, through selenium): a live rollout's timeline updates in the
page while it runs, without a reload. Saves a screenshot; with
ROLLOUT_UI_SCREENSHOT=PATH it is also written there (docs/ui.png)."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollout.app.ui.server import Dashboard
from tests.ui_world import WorldSources, rollout, run_in_thread, world

pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[dev]')")

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (CHROMIUM and DRIVER),
                       reason="needs Debian's chromium and chromium-driver "
                       "(apt-get install -y chromium chromium-driver)"),
]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    options = Options()
    options.binary_location = str(CHROMIUM)
    # Root, no internet, no GPU: the flags that let chromium start here.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'profile'}", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--window-size=1100,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_a_live_rollouts_timeline_updates_in_the_page(browser: WebDriver,
                                                       tmp_path: Path) -> None:
    made = world(4, ratio=0.25)
    ctl = rollout(made, tmp_path, soak=4)
    first = rollout(made, tmp_path)  # creates the journal the page opens first
    first.journal.close()
    server = Dashboard(("127.0.0.1", 0), WorldSources(made, tmp_path), refresh=0.3)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    serving.start()
    try:
        driver = browser
        driver.get(server.url)
        driver.execute_script("window.notReloaded = true;")
        thread, results = run_in_thread(ctl, made.new)

        def bars() -> int:
            return len(driver.find_elements(By.CSS_SELECTOR, "#live rect.step"))

        def shown(status: str) -> bool:
            found = f'#live .rollout[data-status="{status}"]'
            return bool(driver.find_elements(By.CSS_SELECTOR, found))

        wait = WebDriverWait(driver, 60, poll_frequency=0.1)
        wait.until(lambda d: shown("running"))
        seen = [bars()]
        wait.until(lambda d: bars() > seen[0] + 3)
        seen.append(bars())
        running = driver.find_elements(By.CSS_SELECTOR, "#live rect.step.running")
        shot = tmp_path / "ui.png"
        driver.save_screenshot(str(shot))
        thread.join(timeout=120)
        assert results and results[0].status.value == "succeeded"
        wait.until(lambda d: shown("succeeded"))
        assert bars() >= seen[-1]
        assert driver.execute_script("return window.notReloaded === true;")
        assert running or seen[-1] > seen[0]
        for node in made.provider.live():
            wait.until(lambda d, n=node.name: n in d.find_element(By.ID, "pools").text)
        if os.environ.get("ROLLOUT_UI_SCREENSHOT"):
            shutil.copyfile(shot, os.environ["ROLLOUT_UI_SCREENSHOT"])
        assert shot.stat().st_size > 10_000
    finally:
        server.shutdown()
        server.server_close()
        serving.join()
