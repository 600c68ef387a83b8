"""Helpers of the browser tests: the studio as a server that can be stopped and started again on its port, headless
Chromium (Debian's, driven by Playwright), and what a person sees on the page, read from the DOM."""

from __future__ import annotations

import importlib.util
import io
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from ..conftest import ROOT
from .conftest import wait_until

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
]  # fmt: skip
SLOW = 300_000  # ms: a command's subprocess loads torch first, which takes long on a busy 2-core machine

NEEDS_A_BROWSER = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("gradio") is None,
        reason="gradio not installed (pip install -r requirements-studio.txt)",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None,
        reason="playwright not installed (pip install playwright; it drives the system chromium)",
    ),
    # chromium itself: the session's `chromium` fixture (tests/system_packages.py), which the `browser` fixture takes
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class StudioServer:
    """``python -m musicgen_lora.studio`` on a loopback port over one projects folder; :meth:`restart` stops it as a
    service manager would (SIGTERM) and starts it again on the same port at once."""

    def __init__(self, projects: Path, log: Path) -> None:
        self.projects, self.log, self.port = projects, log, free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        argv = [
            sys.executable,
            "-m",
            "musicgen_lora.studio",
            "--port",
            str(self.port),
            "--projects_dir",
            str(self.projects),
        ]
        with self.log.open("a") as out:
            out.write(f"--- start {self.starts}\n")
            self.process = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
        wait_until(self._serves, 300, "the studio to serve its page", poll=0.25)

    def _serves(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the studio exited ({self.process.returncode}): {self.log.read_text()[-3000:]}")
        try:
            return urllib.request.urlopen(self.url, timeout=5).status == 200
        except OSError:
            return False

    def stop(self, how: int = signal.SIGINT) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(how)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart(self) -> None:
        self.stop(signal.SIGTERM)
        self.start()


def child_processes(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from Linux's /proc)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(status.read_text().rsplit(")", 1)[1].split()[1])  # (the name in brackets may hold spaces)
        except (OSError, IndexError, ValueError):
            continue  # it ended while the list was read
        if parent == pid:
            found.append(int(status.parent.name))
    return found


def open_page(browser, url: str, problems: list[str], project: str = "demo", folder: str = "demo/data"):
    """A new tab on the studio, once it shows ``project`` (its audio folder ``folder``)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda err: problems.append(f"page error: {err} ({where(err)})"))
    page.goto(url)
    wait_for_project(page, project, folder)
    return page


def where(err) -> str:
    """The first place of a page error's stack (the script and position that threw), to tell which part failed."""
    frames = [line.strip() for line in (getattr(err, "stack", "") or "").splitlines() if line.strip().startswith("at ")]
    return frames[0] if frames else "no stack"


# What Gradio's client logs as a page unloads for a reload: its close() (on beforeunload) aborts the page's event
# stream, and the stream's reader reports it on the console (seen once in seven runs of this file, and in 2 of 12
# reloads in a row: "AbortError: signal is aborted without reason ... at kn.close", "Unexpected error Connection
# errored out.").
UNLOADING = ("AbortError: signal is aborted without reason", "Connection errored out")


def reload(page, problems: list[str]) -> None:
    """Reload the page as a person does; what Gradio's client logs while the old page unloads is no problem of the
    page (see :data:`UNLOADING`), anything else stays in ``problems``."""
    before = len(problems)
    page.reload()
    problems[before:] = [problem for problem in problems[before:] if not any(u in problem for u in UNLOADING)]


def wait_for_project(page, project: str, folder: str) -> None:
    """Until the page shows ``project``: its name in the list and its audio folder in the form."""
    page.wait_for_function(
        "([name, folder]) => document.querySelector('#project input')?.value === name && "
        "document.querySelector('#dataset textarea, #dataset input')?.value === folder",
        arg=[project, folder],
        timeout=SLOW,
    )


# An element's text as a person sees it: Gradio keeps an event's timer ("0.3s", "processing | 0.2/0.3s") in the DOM of
# every output while the event runs, transparent (opacity 0) where the event hides its progress; it is left out.
SHOWN = (
    "const shown = (e) => { if (!e) return ''; let x = e.innerText; for (const t of e.querySelectorAll("
    "'[data-testid=status-tracker]')) if (getComputedStyle(t).opacity === '0' && t.innerText) x = x.replace("
    "t.innerText, ''); return x.trim(); };"
)


def text(page, selector: str) -> str:
    return page.evaluate(f"(s) => {{ {SHOWN} return shown(document.querySelector(s)); }}", selector)


def wait_text(page, selector: str, *texts: str, timeout: int = SLOW, old: str | None = None) -> str:
    """Wait until the element's text contains one of ``texts`` and no longer holds ``old``; return that text (as
    it was then: the page may replace a message soon after, as the Train tab's refresh does when a run starts)."""
    script = (
        f"([s, t, old]) => {{ {SHOWN} const x = shown(document.querySelector(s)); "
        "return !(old && x.includes(old)) && t.some(w => x.includes(w)) && x; }"
    )
    return page.wait_for_function(script, arg=[selector, list(texts), old], timeout=timeout).json_value()


def click(page, button: str, message: str, *texts: str) -> str:
    """Click ``button`` and wait for its ``message`` element to show a new text containing one of ``texts``."""
    old = text(page, message) or None
    page.click(button)
    return wait_text(page, message, *texts, old=old)


def click_then_either(page, button: str, *places: tuple[str, tuple[str, ...]]) -> str:
    """Click ``button`` and wait until one of ``places`` (selector, texts) shows one of its texts; return that text.

    For a click whose own message the page may replace at once: *Stop* says "Stopping" in the message area, and the
    status line says it too; on a fast machine the run has stopped, and the refresh has cleared the message (its
    phase changed), before a poll sees it."""
    page.click(button)
    checks = " || ".join(
        f"(() => {{ const x = shown(document.querySelector({selector!r})); "
        f"return {list(texts)!r}.some(w => x.includes(w)) && x; }})()"
        for selector, texts in places
    )
    return page.wait_for_function(f"() => {{ {SHOWN} return {checks}; }}", timeout=SLOW).json_value()


def fill(page, selector: str, value: str) -> None:
    page.fill(f"{selector} input, {selector} textarea", value)


def value(page, selector: str) -> str:
    return page.input_value(f"{selector} input, {selector} textarea")


def choose_project(page, name: str, folder: str = "") -> None:
    """Type a project's name into the list, as a person starts or opens one."""
    page.fill("#project input", name)
    page.keyboard.press("Enter")
    wait_for_project(page, name, folder)


def plot_lines(page, selector: str) -> list[dict]:
    """Each line a plot draws: its colour (None: drawn without one, invisible) and its number of points."""
    return page.evaluate(
        "(s) => Array.from(document.querySelectorAll(`${s} .mark-line path`)).map(p => ({stroke: "
        "p.getAttribute('stroke'), points: (p.getAttribute('d') || '').split(/[ML]/).filter(Boolean).length}))",
        selector,
    )


def legend(page, selector: str) -> list[str]:
    return page.evaluate(
        "(s) => Array.from(document.querySelectorAll(`${s} .role-legend-label text`)).map(t => t.textContent)",
        selector,
    )


def y_ticks(page, selector: str) -> list[str]:
    return page.evaluate(
        "(s) => Array.from(document.querySelectorAll(`${s} .role-axis`)).filter(a => (a.getAttribute('aria-label') "
        "|| '').startsWith('Y-axis')).flatMap(a => Array.from(a.querySelectorAll('.role-axis-label text')).map(t => "
        "t.textContent))",
        selector,
    )


def bars(page, selector: str) -> dict[str, float]:
    """A bar plot's bars as ``{label: value}``, from each bar's description (what a screen reader says)."""
    labels = page.evaluate(
        "(s) => Array.from(document.querySelectorAll(`${s} .mark-rect path`)).map(p => p.getAttribute('aria-label'))",
        selector,
    )
    found = {}
    for label in labels:
        parts = dict(part.split(": ", 1) for part in (label or "").split("; ") if ": " in part)
        values = list(parts.values())
        if len(values) == 2:
            found[values[0]] = float(values[1])
    return found


def table_rows(page, selector: str = "#tracks") -> list[list[str]]:
    """A table's rows as shown (Gradio draws the rows in view of a long table only)."""
    return page.evaluate(
        "(s) => Array.from(document.querySelectorAll(`${s} .virtual-row`)).map(r => Array.from(r.querySelectorAll("
        "'.body-cell')).map(c => c.innerText.trim()))",
        selector,
    )


def keep_screenshot(png: bytes, name: str = "studio.png") -> Path | None:
    """Save a screenshot as ``tests/artifacts/NAME`` (a palette PNG, small enough for the README's docs/studio.png)
    when that folder is ignored by git."""
    artifacts = ROOT / "tests" / "artifacts"
    ignored = subprocess.run(["git", "check-ignore", "-q", str(artifacts / name)], cwd=ROOT, check=False).returncode
    if ignored != 0:
        return None
    artifacts.mkdir(exist_ok=True)
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=64)
    image.save(artifacts / name, optimize=True)
    return artifacts / name
