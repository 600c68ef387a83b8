"""The studio in a real browser: headless Chromium (Debian's, driven by Playwright) uses the page as a person would.

It opens the app on the demo project, sees bad input answered in the page, prepares the demo corpus, edits a
caption, trains a few steps (a second tab cannot start a second run), sees the loss plot and the sample players
appear and one play, renders a prompt with the base model and the adapter, and finds no error in the console.
Skipped, with the reason, where gradio, playwright or chromium is missing (bash .ci/run installs them).
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from ..conftest import ROOT
from .conftest import wait_until

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
]  # fmt: skip
SLOW = 300_000  # ms: a command's subprocess loads torch first, which takes long on a busy 2-core machine

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("gradio") is None,
        reason="gradio not installed (pip install -r requirements-studio.txt)",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None,
        reason="playwright not installed (pip install playwright; it drives the system chromium)",
    ),
    pytest.mark.skipif(
        CHROMIUM is None, reason="chromium not found (bash .ci/run installs Debian's chromium with apt-get)"
    ),
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``python -m musicgen_lora.studio`` on a free loopback port, over a fresh projects folder."""
    projects = tmp_path_factory.mktemp("studio-browser")
    port = _free_port()
    log = projects.parent / "studio-server.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "musicgen_lora.studio", "--port", str(port), "--projects_dir", str(projects)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}/"

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the studio exited ({process.returncode}): {log.read_text()[-3000:]}")
        try:
            return urllib.request.urlopen(url, timeout=5).status == 200
        except OSError:
            return False

    wait_until(up, 300, "the studio to serve its page", poll=0.5)
    yield {"url": url, "projects": projects}
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def _open(browser, url: str, problems: list[str]):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    page.goto(url)
    page.wait_for_function(
        "document.querySelector('#dataset textarea, #dataset input')?.value.includes('demo')", timeout=SLOW
    )
    return page


def _wait_text(page, selector: str, *texts: str, timeout: int = SLOW, old: str | None = None) -> str:
    """Wait until the element's text contains one of ``texts`` and no longer holds ``old`` (Gradio shows the
    previous message under its progress timer while a button's action runs); return the text."""
    script = (
        "([s, t, old]) => { const x = document.querySelector(s)?.innerText || ''; "
        "return !(old && x.includes(old)) && t.some(w => x.includes(w)); }"
    )
    page.wait_for_function(script, arg=[selector, list(texts), old], timeout=timeout)
    return page.inner_text(selector)


def _click(page, button: str, message: str, *texts: str) -> str:
    """Click ``button`` and wait for its ``message`` element to show a new text containing one of ``texts``."""
    old = page.inner_text(message).strip()
    page.click(button)
    return _wait_text(page, message, *texts, old=old)


def _fill(page, selector: str, value: str) -> None:
    page.fill(f"{selector} input, {selector} textarea", value)


def test_the_studio_in_a_real_browser(server, browser, tmp_path):
    problems: list[str] = []
    page = _open(browser, server["url"], problems)
    data_dir = server["projects"] / "demo" / "data"

    # bad input gets a one-line message in the page, never a traceback
    _fill(page, "#dataset", "/no/such/folder")
    assert "audio folder '/no/such/folder' not found" in _click(page, "#prepare", "#data_msg", "Error")
    _fill(page, "#dataset", str(data_dir))

    # prepare the demo corpus: the report, the plots and the per-file table
    assert "Prepared" in _click(page, "#prepare", "#data_msg", "Prepared", "Error")
    assert "16 files found, 16 read, 0 left out" in page.inner_text("#data_summary")
    rows = page.locator("#tracks .virtual-row")
    assert rows.count() == 16

    # edit a caption in the table and save it into the folder's metadata.jsonl
    rows.nth(0).locator(".body-cell").nth(4).dblclick()
    page.keyboard.press("Control+A")
    page.keyboard.type("my edited caption, 86 bpm")
    page.keyboard.press("Enter")
    assert "Saved 1 caption(s)" in _click(page, "#save_captions", "#save_msg", "Saved", "Error", "No caption")
    first = json.loads((data_dir / "metadata.jsonl").read_text().splitlines()[0])
    assert first["file_name"] == "clip_000.wav" and first["text"] == "my edited caption, 86 bpm"

    # train a few steps; an invalid value first, then a second tab that tries to start a second run
    page.get_by_role("tab", name="2. Train").click()
    _fill(page, "#learning_rate", "")
    assert "learning rate is empty" in _click(page, "#start", "#train_msg", "Error")
    page.click("text=More options")
    for selector, value in (
        ("#learning_rate", "0.001"),
        ("#steps", "4"),
        ("#sample_every", "2"),
        ("#logging_steps", "1"),
        ("#sample_seconds", "1"),
    ):
        _fill(page, selector, value)
    assert "Training started" in _click(page, "#start", "#train_msg", "started", "Error")
    second = _open(browser, server["url"], problems)
    second.get_by_role("tab", name="2. Train").click()
    assert "already going in this project" in _click(second, "#start", "#train_msg", "Error", "started")
    second.close()
    status = _wait_text(page, "#train_status", "Finished", "failed", "Stopped")
    assert status.startswith("Finished: 4 steps"), status

    # the loss curves and the samples (base, step-2, step-4, final x 2 prompts) appear; one plays
    page.wait_for_selector("#loss_plot canvas, #loss_plot svg", timeout=SLOW)
    labels = page.locator("#samples [data-testid='block-label']")
    wait_until(lambda: labels.count() == 8, 60, "the 8 sample players")
    assert labels.first.inner_text().strip() == "base · lofi hip hop, 84 bpm, A minor, piano"
    page.locator("#samples [data-testid='waveform-controls'] button[aria-label='Play']").first.click()
    page.wait_for_function(
        "() => document.querySelector(\"#samples [data-testid='waveform-controls'] button.play-pause-button\")"
        ".getAttribute('aria-label') === 'Pause' || document.querySelector('#samples #time').innerText !== '0:00'",
        timeout=30_000,
    )  # playing: the button turned to Pause, or the clock moved
    shot = page.screenshot(full_page=True)

    # render one prompt with the base model and the adapter, same seed
    page.get_by_role("tab", name="3. Listen").click()
    page.wait_for_selector("#adapters input[type=checkbox]:checked", timeout=30_000)  # 'final' ticked
    _fill(page, "#listen_duration", "1")
    assert "Rendered 2 version(s)" in _click(page, "#render", "#listen_msg", "Rendered", "Error")
    players = page.locator("#renders [data-testid='waveform-controls']")
    wait_until(lambda: players.count() == 2, 60, "the base and adapter players")
    labels = [label.strip() for label in page.locator("#renders [data-testid='block-label']").all_inner_texts()]
    assert labels == ["base", "base: WAV and MP3", "final", "final: WAV and MP3"]
    downloads = [
        Path(link.split("?")[0]).name
        for link in page.locator("#renders a[download]").evaluate_all("a => a.map(x => x.href)")
    ]
    assert {"0.wav", "0.mp3"} <= set(downloads)

    assert "Traceback" not in page.inner_text("body")
    assert problems == []
    _keep_screenshot(shot)


def _keep_screenshot(png: bytes) -> None:
    """Save the Train tab's screenshot as tests/artifacts/studio.png (palette PNG, small enough for the README's
    docs/studio.png) when that folder is ignored by git."""
    from PIL import Image

    artifacts = ROOT / "tests" / "artifacts"
    ignored = (
        subprocess.run(["git", "check-ignore", "-q", str(artifacts / "studio.png")], cwd=ROOT, check=False).returncode
        == 0
    )
    if not ignored:
        return
    artifacts.mkdir(exist_ok=True)
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=64)
    image.save(artifacts / "studio.png", optimize=True)
