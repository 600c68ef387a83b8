"""The system packages some tests need, behind one gate each: Debian's chromium (the browser tests), FluidSynth and its
General MIDI sound font (real music rendered for the caption-accuracy test), asc-music (real MP3 recordings).

README command 2 installs none of them (``bash .ci/run`` installs them with apt-get where it can). Each gate returns
what the test needs, or skips the test with the reason and the command that installs the package, whatever way the
package fails: missing, a library that does not load, a browser that does not start. tests/test_system_packages.py
hides each package and checks the skip; no test reaches these packages except through a gate (it checks that too).
"""

from __future__ import annotations

import functools
import importlib
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
CHROMIUM_INSTALL = "apt-get install -y chromium (bash .ci/run installs it)"
ASC_MUSIC = Path("/usr/share/games/asc/music")  # where Debian's asc-music puts its MP3s
ASC_INSTALL = "apt-get install -y asc-music (bash .ci/run installs it)"
FLUIDSYNTH_INSTALL = "pip install pyfluidsynth and apt-get install -y fluidsynth (bash .ci/run installs it)"
SOUNDFONT_INSTALL = "apt-get install -y fluid-soundfont-gm (the General MIDI instrument samples)"


def import_or_skip(module: str, install: str) -> ModuleType:
    """``module``, or a skip naming ``install`` when it cannot be imported for any reason: pytest.importorskip skips
    only a missing module, but pyfluidsynth without the FluidSynth library raises a plain ImportError ("Couldn't find
    the FluidSynth library.") and a broken library an OSError from ctypes."""
    try:
        return importlib.import_module(module)
    except Exception as err:  # noqa: BLE001 -- any failure to import means the test cannot run here
        pytest.skip(f"{module} cannot be imported ({type(err).__name__}: {err}); {install}")


def fluidsynth_or_skip(soundfont: str | Path) -> None:
    """Skip, with what to install, unless music21, pyfluidsynth, the FluidSynth library and the sound font load."""
    import_or_skip("music21", "pip install music21 (the real pieces' scores)")
    import_or_skip("fluidsynth", FLUIDSYNTH_INSTALL)
    if not Path(soundfont).is_file():
        pytest.skip(f"the sound font {soundfont} is missing; {SOUNDFONT_INSTALL}")


@functools.cache
def chromium_problem(binary: str) -> str | None:
    """Why ``binary`` cannot render a page headless (None: it can). Run once per binary and session (a second)."""
    command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", "about:blank"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as err:
        return f"{type(err).__name__}: {err}"
    if result.returncode != 0 or "<html" not in result.stdout:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return f"exit status {result.returncode}: {last[:200]}"
    return None


def chromium_or_skip() -> str:
    """The path of a chromium that renders a page headless, or a skip saying why there is none."""
    binary = next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)
    if binary is None:
        pytest.skip(f"chromium not found; {CHROMIUM_INSTALL}")
    problem = chromium_problem(binary)
    if problem is not None:
        pytest.skip(f"chromium at {binary} does not start ({problem}); {CHROMIUM_INSTALL}")
    return binary


def asc_music_or_skip(count: int = 3) -> list[Path]:
    """The MP3s of Debian's asc-music (at least ``count``), or a skip naming the package."""
    tracks = sorted(ASC_MUSIC.glob("*.mp3"))
    if len(tracks) < count:
        pytest.skip(f"{len(tracks)} of the {count} MP3s of asc-music in {ASC_MUSIC}; {ASC_INSTALL}")
    return tracks
