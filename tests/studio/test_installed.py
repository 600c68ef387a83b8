"""The studio of an installed package (a wheel installed outside the checkout) runs training, resume and evaluation:
the commands it starts come from the package (``python -m musicgen_lora.train``), not from a checkout's scripts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ..conftest import ROOT

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import musicgen_lora
    from musicgen_lora.studio.handlers import Studio
    from musicgen_lora.studio.outputs import evaluate
    from musicgen_lora.studio.progress import read_progress
    from musicgen_lora.studio.project import RunForm

    site, model, data, projects = sys.argv[1:5]
    assert Path(musicgen_lora.__file__).resolve().is_relative_to(Path(site).resolve()), musicgen_lora.__file__
    studio = Studio(projects)
    form = RunForm(
        base_model=model, dataset=data, steps=40, epochs=1, learning_rate=3e-3, rank=4, batch_size=2,
        clip_seconds=1, sample_prompts="lofi hip hop, piano", sample_every_steps=0, save_steps=2, logging_steps=1,
        sample_seconds=0.5, extra_json=json.dumps({"max_train_samples": 2, "seed": 0}),
    )
    said = {"start": studio.start_training("songs", form)}
    project = studio.project("songs")
    deadline = time.monotonic() + 600
    while read_progress(project.run_dir).step < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    said["stop"] = studio.stop_training("songs")
    state = studio.runs.wait(project.folder, timeout=300)
    said["stopped"] = state.returncode
    said["resume"] = studio.resume_training("songs")
    state = studio.runs.wait(project.folder, timeout=600)
    said["finished"] = state.returncode
    said["status"] = studio.train_view("songs").status
    said["argv"] = state.argv
    said["evaluate"] = [step.message for step in evaluate(studio, "songs")][-1]
    print(json.dumps(said))
    """
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The package built as a wheel and installed into a folder of its own (``pip install --target``)."""
    root = tmp_path_factory.mktemp("installed")
    wheel_dir, site = root / "wheel", root / "site"
    build = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-w", str(wheel_dir)]
    subprocess.run([*build, "-q"], check=True, capture_output=True, cwd=root)
    wheel = next(wheel_dir.glob("musicgen_lora-*.whl"))
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "-q", "--target", str(site)]
    subprocess.run([*install, str(wheel)], check=True, capture_output=True, cwd=root)
    assert not (site / "finetune_musicgen.py").exists() and (site / "musicgen_lora" / "train" / "__main__.py").is_file()
    return site


def test_the_installed_studio_trains_resumes_and_evaluates(installed, tiny_model_dir, corpus_dir, tmp_path):
    outside = tmp_path / "elsewhere"  # neither the checkout nor a folder holding its scripts
    outside.mkdir()
    env = {**os.environ, "PYTHONPATH": str(installed), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-c", SCRIPT, str(installed), str(tiny_model_dir), str(corpus_dir), str(tmp_path / "p")]
    done = subprocess.run(argv, cwd=outside, env=env, capture_output=True, text=True, timeout=1800, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    said = json.loads(done.stdout.strip().splitlines()[-1])
    assert said["start"].startswith("Training started"), said
    assert said["stopped"] == 130 and said["resume"].startswith("Resuming from checkpoint-"), said
    assert said["finished"] == 0 and said["status"].startswith("**Finished**: 40 steps"), said
    assert said["argv"][1:3] == ["-m", "musicgen_lora.train"]
    assert "Evaluated" in said["evaluate"], said["evaluate"]
    log = (tmp_path / "p" / "songs" / "studio" / "train.log").read_text()
    assert "finetune_musicgen.py" not in log and str(ROOT) not in log
