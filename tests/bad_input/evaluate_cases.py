"""``evaluate.py``'s bad inputs from the new user's afternoon of 2026-12-07 (``shared/findings/
new-user-afternoon-2026-12-07.md``: W4, UC14, UC16, UC23, U9), each answered with one line and exit status 2, every
earlier file unchanged. The cases that fail while the options are read share one world. (W8, a prompts file without
a .json extension, and TB7, ``--copy_threshold 0``, now succeed: their tests are in tests/evaluate and
tests/memorisation.)"""

from __future__ import annotations

import shutil

import filelock

from .tool_cases import EVALUATE, _broken_adapter, evaluate, prompts_file
from .world import Case, World

PARSING = "evaluate-parsing"  # the world shared by the cases that fail while the options are read


def _while_another_evaluates(w: World) -> list[str]:
    """W4: another evaluate.py holds ``eval/`` (its lock, as a running evaluation holds it) when this one starts."""
    lock = filelock.FileLock(w.path("eval") / ".evaluate.lock", timeout=0)
    w.path("eval").mkdir()
    lock.acquire()
    w.resources.callback(lock.release)
    return evaluate()(w)


def _stopped_run(w: World) -> list[str]:
    """UC23: ``--config`` of a run stopped after its first checkpoint (no adapter in the run folder yet)."""
    checkpoint = w.run / "checkpoint-1"
    checkpoint.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.move(w.run / name, checkpoint / name)
    shutil.rmtree(w.run / "samples", ignore_errors=True)
    return ["--config", str(w.run), "--duration", "0.2", "--num_samples", "1"]


EVALUATE_CASES: dict[str, Case] = {
    "W4: a second evaluate.py into the folder another one is writing": Case(
        EVALUATE, _while_another_evaluates, r"--output_dir .*eval' is in use by another evaluate.py"
    ),
    "UC14: --copy_threshold without training data": Case(
        EVALUATE,
        evaluate("--copy_threshold", "0.3"),
        r"--copy_threshold set, but there is no training data to compare the clips with; add --train_dataset",
        shared_world=PARSING,
    ),
    "UC14: --melody_threshold without training data": Case(
        EVALUATE,
        evaluate("--melody_threshold", "0.7"),
        r"--melody_threshold set, but there is no training data",
        shared_world=PARSING,
    ),
    "UC16: prompt bpm 1e308": Case(
        EVALUATE,
        prompts_file('[{"text": "a", "bpm": 1e308}]'),
        r"has bpm 1e\+308; give a tempo from 1 to 999 bpm",
        shared_world=PARSING,
    ),
    "UC16: prompt bpm 0.5": Case(
        EVALUATE, prompts_file('[{"text": "a", "bpm": 0.5}]'), r"has bpm 0.5; give a tempo", shared_world=PARSING
    ),
    "UC16: prompt keys in capitals": Case(
        EVALUATE,
        prompts_file('[{"text": "a", "BPM": 120, "Key": "A minor"}]'),
        r"prompt 1 in .* has the key 'BPM'; write it as 'bpm' \(keys are lower-case\)",
        shared_world=PARSING,
    ),
    "UC16: prompt with an unknown key": Case(
        EVALUATE,
        prompts_file('[{"text": "a", "tempo": 120}]'),
        r"has the key 'tempo'; the keys are text, prompt, bpm, key",
        shared_world=PARSING,
    ),
    "UC16: prompts file a folder": Case(
        EVALUATE,
        lambda w: evaluate("--prompts", str(w.songs("prompt-folder", 0)))(w),
        r"prompts file .*prompt-folder' is a folder; give the prompts file itself",
        shared_world=PARSING,
    ),
    "UC23: --config of a stopped run": Case(
        EVALUATE,
        _stopped_run,
        r"the run in .* has not finished: it has no adapter yet; .* --model step=.*checkpoint-1",
    ),
    "U9: adapter_config.json damaged": Case(
        EVALUATE,
        lambda w: evaluate("--model", f"broken={_broken_adapter(w, 'config')}")(w),
        r"model 'broken': '.*adapter_config.json' is damaged \(not JSON: .*\); copy it back from the run",
    ),
}
