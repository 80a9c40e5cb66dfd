"""``azvision review`` in a real headless browser (Debian's chromium + chromedriver, driven by selenium):
the token, the queue with image and suggestions, confirm / correct (type-ahead) / skip by keyboard and
mouse, exactly-once decisions across a double click, a reload and a second tab, and the summary.
The test also takes the guide's screenshot, ``docs/img/review.png``."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from azvision import CustomVisionTrainer
from azvision.cli.app import app
from azvision.emulator import Emulator
from azvision.review_app import ReviewServer
from tests.integration.loop_helpers import classify_stream, make_trainer, stream, train_biased

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "review.png"
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None, reason="needs chromium and chromedriver (apt-get install)"
)


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(training_seconds=0.1) as emulator:
        yield emulator


@pytest.fixture
def trainer(emu: Emulator, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[CustomVisionTrainer]:
    """A model trained without hexagons (project: the parameter), and 12 stored predictions (3 hexagons)."""
    with make_trainer(emu) as trainer:
        train_biased(trainer, tmp_path, request.param)
        classify_stream(trainer, stream(tmp_path / "stream", 3, seed=11))
        yield trainer


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,640"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def progress(driver: webdriver.Chrome, done: int, total: int = 12) -> None:
    WebDriverWait(driver, 20).until(
        lambda d: d.find_element(By.ID, "progress").text == f"{done} / {total} reviewed"
    )


def press(driver: webdriver.Chrome, keys: str) -> None:
    driver.find_element(By.TAG_NAME, "body").send_keys(keys)


def added_ids(trainer: CustomVisionTrainer, project: str, ids: list[str]) -> set[str]:
    info = trainer.find_project(project)
    assert info is not None
    return {str(i.id) for i in trainer._client().get_images_by_ids(info.id, image_ids=ids)}


@pytest.mark.parametrize("trainer", ["guarded"], indirect=True)
def test_the_page_needs_its_token(trainer: CustomVisionTrainer) -> None:
    with ReviewServer(trainer, "guarded", max_confidence=1.0) as server:
        base = f"http://127.0.0.1:{server.port}"
        assert "token=" in server.url and "token" not in repr(server)
        for path in ("/", "/api/queue", "/api/summary", f"/image/{server.session.items[0].prediction_id}"):
            assert httpx.get(base + path, timeout=10).status_code == 403
            assert httpx.get(base + path + "?token=wrong", timeout=10).status_code == 403
        posted = httpx.post(base + "/api/decide", json={"prediction_id": "x", "skip": True}, timeout=10)
        assert posted.status_code == 403
        assert httpx.get(server.url, timeout=10).status_code == 200
        assert not server.session.decided


@pytest.mark.parametrize("trainer", ["shapes"], indirect=True)
def test_review_by_keyboard_and_mouse_exactly_once(
    trainer: CustomVisionTrainer, browser: webdriver.Chrome
) -> None:
    project = "shapes"
    with ReviewServer(trainer, project, max_confidence=1.0) as server:
        items = server.session.items
        assert len(items) == 12
        browser.get(server.url)
        progress(browser, 0)
        loaded = "const i = document.getElementById('image'); return i.complete && i.naturalWidth > 0"
        WebDriverWait(browser, 10).until(lambda d: d.execute_script(loaded))
        names = [b.text for b in browser.find_elements(By.CSS_SELECTOR, "#suggestions .suggestion .name")]
        assert names == [s.name for s in items[0].suggestions]
        browser.find_element(By.ID, "label").send_keys("ci")
        WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "matches").is_displayed())
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOT))  # the guide's picture: suggestions and type-ahead
        browser.find_element(By.ID, "label").send_keys(Keys.ESCAPE)  # clears and leaves the field
        assert not browser.find_element(By.ID, "matches").is_displayed()

        press(browser, "1")  # confirm the top suggestion
        progress(browser, 1)
        assert server.session.decided[items[0].prediction_id]["label"] == items[0].suggestions[0].name

        field = browser.find_element(By.ID, "label")
        field.send_keys("tri")  # type-ahead over the project's tags
        WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "matches").is_displayed())
        assert [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#matches li")] == ["triangle"]
        field.send_keys(Keys.ENTER)
        progress(browser, 2)
        assert server.session.decided[items[1].prediction_id]["label"] == "triangle"

        field.send_keys("hexagon", Keys.ENTER)  # a tag the project lacks: created
        progress(browser, 3)
        press(browser, "s")
        progress(browser, 4)
        assert server.session.decided[items[3].prediction_id]["outcome"] == "skipped"

        ActionChains(browser).double_click(browser.find_element(By.CSS_SELECTOR, ".suggestion")).perform()
        progress(browser, 5)  # one decision, not two

        browser.refresh()
        progress(browser, 5)  # decided images do not come back

        first = browser.current_window_handle
        browser.switch_to.new_window("tab")
        browser.get(server.url)
        progress(browser, 5)
        press(browser, "1")
        progress(browser, 6)
        browser.switch_to.window(first)  # this tab still shows the image the other one decided
        press(browser, "2")
        WebDriverWait(browser, 10).until(lambda d: "another tab" in d.find_element(By.ID, "status").text)
        progress(browser, 6)

        decided = [i.prediction_id for i in items[:6]]
        added = [pid for pid in decided if server.session.decided[pid]["outcome"] == "added"]
        assert len(added) == 5 and added_ids(trainer, project, decided) == set(added)

        for done in range(7, 13):
            press(browser, "0" if done % 2 else "s")
            progress(browser, done)
        WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "summary").is_displayed())
        text = browser.find_element(By.ID, "summary-text").text
        assert text.startswith("12 images: 8 added to the project") and "4 skipped" in text
    assert server.session.summary() == {
        "added": 8,
        "already_added": 0,
        "duplicate": 0,
        "skipped": 4,
        "failed": 0,
        "done": 12,
        "total": 12,
    }


def test_cli_usage_errors(emu: Emulator) -> None:
    result = CliRunner().invoke(
        app, ["review", "--project", "x", "--endpoint", emu.endpoint, "--training-key", "wrong-key"]
    )
    assert result.exit_code == 2 and "wrong-key" not in result.output


@pytest.mark.parametrize("trainer", ["from-the-cli"], indirect=True)
def test_the_command_prints_the_address_and_stops_on_ctrl_c(
    trainer: CustomVisionTrainer, emu: Emulator
) -> None:
    env = {
        **os.environ,
        "CUSTOM_VISION_TRAINING_ENDPOINT": emu.endpoint,
        "CUSTOM_VISION_TRAINING_KEY": emu.training_key,
    }
    command = [
        sys.executable,
        "-m",
        "azvision",
        "review",
        "--project",
        "from-the-cli",
        "--max-confidence",
        "1",
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and "/?token=" in url
        queue = httpx.get(url.replace("/?", "/api/queue?"), timeout=10).json()
        assert queue["total"] == 12 and queue["project_name"] == "from-the-cli"
        assert httpx.get(url.split("?")[0], timeout=10).status_code == 403
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "12 image(s) to review in from-the-cli" in err and "reviewed 0 of 12" in err
    assert emu.training_key not in err
