"""The package's house, as the README's *How it works* table states it: a stage imports from the stages above it and
from the shared modules, never from one below it (every import of the package, read from its source), and training
from a config file imports none of the extras (checked in a fresh interpreter, where what is imported is what is under
test)."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, base_argv

PACKAGE = ROOT / "musicgen_lora"
RULE = "a stage imports from the stages above it and\nfrom the shared modules, never from one below it"
# What training from a config file must not load: the extras (README), the caption estimators' fitting code and the
# corpora it reads (bench/*.py, music21, mido, fluidsynth), the Studio's web framework.
EXTRAS = ("musicgen_lora.memorisation", "musicgen_lora.evaluate", "musicgen_lora.demo", "musicgen_lora.bench",
          "musicgen_lora.studio", "key_weights_fit", "key_tempo_corpora", "score_corpora", "key_tempo_accuracy",
          "tempo_octave_fit", "music21", "mido", "fluidsynth", "gradio")  # fmt: skip


def stages() -> list[set[str]]:
    """The README table's rows, in order: each the set of package members (``audio``, ``errors``...) it names."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text[text.index("| folder | its one job |") :].split("\n\n", 1)[0]
    rows = [line.split("|")[1] for line in table.splitlines()[2:]]
    return [{name.rstrip("/").removesuffix(".py") for name in re.findall(r"`([^`]+)`", row)} for row in rows]


def package_of(path: Path) -> list[str]:
    """The dotted package a module's relative imports start from (for ``__init__.py``: its own package)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return parts[:-1]


def imported_members(source: str, package: list[str]) -> set[str]:
    """The package members (first name below ``musicgen_lora``: ``audio``, ``errors``...) that a module's source
    imports, anywhere in it; ``package`` is where its relative imports start."""
    members = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            # "from . import x" imports members of the package itself
            targets = [f"{target}.{alias.name}" for alias in node.names] if not node.module else [target]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            if parts[0] == "musicgen_lora" and len(parts) > 1:
                is_module = (PACKAGE / parts[1]).is_dir() or (PACKAGE / f"{parts[1]}.py").is_file()
                members.add(parts[1] if is_module else "__init__")  # "from musicgen_lora import __version__"
    return members


def member_of(path: Path) -> str:
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def test_the_readme_states_the_rule():
    assert RULE in (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_module_belongs_to_a_stage_of_the_readme_table():
    named = set().union(*stages())
    members = {member_of(path) for path in PACKAGE.rglob("*.py")} - {"__init__"}
    assert members <= named, f"add these to README.md's table (How it works): {sorted(members - named)}"


def test_a_stage_never_imports_from_one_below_it():
    order = {member: index for index, row in enumerate(stages()) for member in row}
    order["__init__"] = 0  # the package's own __init__: its version
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = member_of(path)
        for member in imported_members(path.read_text(encoding="utf-8"), package_of(path)):
            if order[member] > order[here]:
                wrong.append(f"{path.relative_to(ROOT)} imports musicgen_lora.{member}, a later stage")
    assert not wrong, "\n".join(wrong)


def test_the_walk_sees_relative_and_absolute_imports():
    """The checker itself, on a module of train/: relative imports of a sibling, of the package and of another
    stage, and an absolute one, each resolve to the member they name."""
    source = (
        "from ..evaluate import run\nimport musicgen_lora.studio.app\nfrom . import trainer\nfrom .. import files\n"
    )
    assert imported_members(source, ["musicgen_lora", "train"]) == {"evaluate", "studio", "train", "files"}
    assert imported_members("from .cli import main\n", ["musicgen_lora"]) == {"cli"}  # musicgen_lora/__main__.py


@pytest.mark.slow
def test_training_from_a_config_imports_none_of_the_extras(tiny_model_dir, corpus_dir, data_cache_dir, tmp_path):
    """``python finetune_musicgen.py CONFIG.json`` in a fresh interpreter, one step with samples (so the sample
    renderer and the copy score run): once the run has finished, no module of an extra has been imported."""
    config = tmp_path / "config.json"
    argv = base_argv(tiny_model_dir, corpus_dir, tmp_path / "run", data_cache_dir)
    values = {key.removeprefix("--"): value for key, value in zip(argv[::2], argv[1::2], strict=True)}
    values.update({"max_steps": 1, "per_device_train_batch_size": 2, "max_train_samples": 2, "disable_tqdm": True,
                   "sample_prompts": ["lofi piano"], "sample_duration_in_seconds": 0.5, "seed": 0})  # fmt: skip
    config.write_text(json.dumps(values))
    probe = (
        "import json, sys\n"
        "import finetune_musicgen\n"
        f"result = finetune_musicgen.main([{str(config)!r}])\n"
        "print(json.dumps({'samples': result['samples'], 'modules': sorted(sys.modules)}))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    assert len(seen["samples"]) == 1 and "musicgen_lora.train.copy_score" in seen["modules"]  # the run got there
    loaded = [name for name in seen["modules"] if any(name == e or name.startswith(f"{e}.") for e in EXTRAS)]
    assert not loaded, f"training from a config imported extras: {loaded}"
