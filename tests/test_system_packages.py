"""README command 2 passes on a machine without the system packages some tests use: each gate of
tests/system_packages.py skips, with the reason and the install command, when its package is hidden (missing, a
library that does not load, a browser that does not start), and no test reaches those packages any other way."""

from __future__ import annotations

import ctypes.util
import re
import shutil
import sys
from pathlib import Path

import pytest

from . import system_packages
from .conftest import ROOT, load_bench_script


@pytest.mark.parametrize("library", [None, "/nonexistent/libfluidsynth.so.3"], ids=["not found", "broken"])
def test_fluidsynth_hidden_skips_with_the_reason(monkeypatch, library):
    # hide the FluidSynth library from pyfluidsynth (it looks it up with ctypes.util.find_library when imported):
    # not found, it raises ImportError (not the ModuleNotFoundError that pytest.importorskip catches); a broken path
    # makes ctypes raise OSError
    pytest.importorskip("fluidsynth", reason="pyfluidsynth is not installed: nothing to hide")
    monkeypatch.delitem(sys.modules, "fluidsynth")
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: library)
    with pytest.raises(pytest.skip.Exception) as skipped:
        system_packages.fluidsynth_or_skip(load_bench_script("key_tempo_corpora").DEFAULT_SOUNDFONT)
    reason = str(skipped.value)
    assert "fluidsynth cannot be imported" in reason and "apt-get install -y fluidsynth" in reason
    assert ("ImportError" if library is None else "OSError") in reason
    monkeypatch.undo()
    with pytest.raises(pytest.skip.Exception, match="fluid-soundfont-gm"):  # the library there, the sound font not
        system_packages.fluidsynth_or_skip("/nonexistent/FluidR3_GM.sf2")


def test_chromium_missing_skips_with_the_reason(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pytest.skip.Exception, match=r"chromium not found; apt-get install -y chromium"):
        system_packages.chromium_or_skip()


def test_a_chromium_that_does_not_start_skips_with_its_error(monkeypatch, tmp_path):
    # what a chromium without its shared libraries does: the loader's message, status 127
    broken = tmp_path / "chromium"
    broken.write_text(
        "#!/bin/sh\necho 'chromium: error while loading shared libraries: libnss3.so: cannot open' >&2\nexit 127\n"
    )
    broken.chmod(0o755)
    monkeypatch.setattr(shutil, "which", lambda name: str(broken) if name == "chromium" else None)
    system_packages.chromium_problem.cache_clear()
    try:
        with pytest.raises(pytest.skip.Exception) as skipped:
            system_packages.chromium_or_skip()
    finally:
        system_packages.chromium_problem.cache_clear()
    reason = str(skipped.value)
    assert f"chromium at {broken} does not start (exit status 127: " in reason and "libnss3.so" in reason
    assert "apt-get install -y chromium" in reason


def test_asc_music_missing_skips_with_the_reason(monkeypatch, tmp_path):
    monkeypatch.setattr(system_packages, "ASC_MUSIC", tmp_path)
    (tmp_path / "one.mp3").write_bytes(b"")
    with pytest.raises(pytest.skip.Exception, match=r"1 of the 3 MP3s of asc-music .*apt-get install -y asc-music"):
        system_packages.asc_music_or_skip(3)


def test_no_test_reaches_a_system_package_except_through_its_gate():
    """A test that looked for chromium, FluidSynth or asc-music by itself could fail where the package is missing
    instead of skipping: only the gates name them."""
    reaches = re.compile(r"""["'](chromium|chromium-browser|google-chrome)["']|/usr/share/games/asc|"""
                         r"""import fluidsynth\b|importorskip\(\s*["']fluidsynth""")  # fmt: skip
    gates = {Path(system_packages.__file__).resolve(), Path(__file__).resolve()}
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        if path.resolve() not in gates
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if reaches.search(line)
    ]
    assert offenders == [], offenders
