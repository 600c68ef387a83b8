"""README.md as a test: every fenced ``bash`` command and ``python`` snippet that can run offline runs here.

The commands are read from README.md itself, so the two cannot drift apart. Each one is either run (``RUN``: in
process where the project has a ``main``, on the tiny model and synthetic corpus of ``tests/conftest.py``, with the
substitutions written next to it) or skipped (``SKIPPED``: with the reason). A test asserts that every command of the
README is in exactly one of the two tables, so a new command must be classified, and a removed one leaves no stale
entry. Each README block runs in a fresh working folder, in order, as a user would type it; a command marked
``alone`` (an alternative to the one before it, not a next step) gets a folder of its own.

What a user's folders become (``WORDS``, and files written into the working folder by :func:`set_up_folder`):
``my.json`` / ``CONFIG.json`` a 1-step config on the tiny model; ``outputs/my-run`` and
``outputs/musicgen-small-my-songs`` copies of the session's ``trained_run``; ``prompts.json`` the README's own
example list; ``hum.wav`` a two-note tone. Commands that would train or render for long get small step counts and
durations (``--max_steps 1``, ``--duration 2``...), appended or replaced as each entry says: the last value of an
option wins, as the README says for the command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from packaging.specifiers import SpecifierSet
from safetensors.torch import load_file, save_file

from evaluate import main as evaluate_main
from finetune_musicgen import main as train_main
from musicgen_lora.cli import main as cli_main
from musicgen_lora.demo.assets import DEMO_CONFIG
from musicgen_lora.generate.cli import main as generate_main
from musicgen_lora.hub.cli import main as push_main
from musicgen_lora.prepare.cli import main as prepare_main

from .conftest import RATE, ROOT, tone
from .hub.fake_hub import FakeHub, served_hub

pytestmark = pytest.mark.slow  # runs the README's commands (trainings, evaluations, the demo)

README = ROOT / "README.md"
TOKEN = "hf_testReadmeToken789"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
FRAMES_PER_SECOND = 50
SAMPLES_PER_FRAME = RATE // FRAMES_PER_SECOND


# ------------------------------------------------------------------------------------------------ reading the README


def readme_blocks(language: str) -> list[tuple[int, str]]:
    """(line number, text) of each fenced block of ``language`` in README.md."""
    text = README.read_text(encoding="utf-8")
    return [
        (text[: match.start()].count("\n") + 1, match.group(2))
        for match in FENCE.finditer(text)
        if match.group(1) == language
    ]


def without_comment(line: str) -> str:
    """The line up to a ``#`` that starts a shell comment (one outside quotes, at the start or after a space)."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index]
    return line


def commands_of(block: str) -> list[str]:
    """The commands of a bash block: continuation lines joined, comments dropped, ``a && b`` split in two, spaces
    collapsed (that text is the key of ``RUN`` and ``SKIPPED``)."""
    joined = re.sub(r"\\\n\s*", " ", block)
    commands = []
    for line in joined.splitlines():
        for part in without_comment(line).split(" && "):
            if part.strip():
                commands.append(" ".join(part.split()))
    return commands


def readme_commands() -> list[str]:
    return [command for _, block in readme_blocks("bash") for command in commands_of(block)]


# ------------------------------------------------------------------------------------------------ how each one runs


@dataclass(frozen=True)
class Run:
    """How a README command runs here: ``replace`` (README text -> what runs instead), then ``append`` (words added
    at the end); ``alone``: in a fresh folder of its own; ``check(folder, result)``: what it must have done."""

    replace: tuple[tuple[str, str], ...] = ()
    append: tuple[str, ...] = ()
    alone: bool = False
    check: Callable[[Path, Any], None] | None = None
    note: str = ""


# Hub ids and a user's folders -> the tiny stand-ins ({tiny}, {melody}, {corpus}: the session fixtures' paths).
WORDS = {
    "facebook/musicgen-small": "{tiny}",
    "facebook/musicgen-melody": "{melody}",
    "~/music/lofi": "{corpus}",
    "~/music/held_out": "{corpus}",
    "jazz-lora": "outputs/my-run",
    "punk-lora": "outputs/other-run",
}
SHORT_TRAINING = ("--max_steps", "1", "--sample_duration_in_seconds", "0.5")
# an example config, made to run on the tiny model: its keys are all read and checked, the model and data replaced
EXAMPLE_ON_TINY = (
    "--model_name_or_path", "{tiny}", "--dataset_name", "{corpus}", "--data_cache_dir", "{cache}",
    "--min_duration_in_seconds", "1", "--max_duration_in_seconds", "2", "--disable_tqdm", "true", *SHORT_TRAINING,
)  # fmt: skip


def wavs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.wav"))


def check_demo(folder: Path, result: Any) -> None:
    # "writes demo_output/lora/ (adapter) and demo_output/lora/samples/final/*.wav": in the folder the demo ran in
    out = Path(result["root"]) / "demo_output" / "lora"
    assert (out / "adapter_model.safetensors").is_file() and wavs(out / "samples" / "final")


def check_trained(steps: int) -> Callable[[Path, Any], None]:
    def check(folder: Path, result: Any) -> None:
        state = json.loads((folder / "outputs" / "run" / "trainer_state.json").read_text())
        assert state["global_step"] == steps
        assert (folder / "outputs" / "run" / "adapter_model.safetensors").is_file()

    return check


def check_example(folder: Path, result: Any) -> None:
    out = folder / "outputs" / "musicgen-small-my-songs"  # the example config's output_dir
    config = json.loads((out / "finetune_config.json").read_text())
    assert config["gradient_checkpointing"] is True and config["lr_scheduler_type"] == "cosine"  # the example's keys
    assert len(wavs(out / "samples" / "final")) == len(config["sample_prompts"])


def check_example_override(folder: Path, result: Any) -> None:
    adapter = json.loads((folder / "outputs" / "musicgen-small-my-songs" / "adapter_config.json").read_text())
    assert adapter["r"] == 32  # the command line's --lora_r 32 won over the file's 16


def check_long_songs(folder: Path, result: Any) -> None:
    out = folder / "out"
    assert [p.name for p in wavs(out)] == ["0.wav", "1.wav"] and len(list(out.glob("*.mp3"))) == 2
    for path in wavs(out):  # the requested length to the sample, across the continuation windows
        assert sf.info(str(path)).frames == 2 * RATE
    listed = [line.split("\t") for line in (out / "prompts.txt").read_text().splitlines()]
    assert listed == [["0", "lofi hip hop, piano"], ["1", "jazz trio, brushes"]]


def check_melody(folder: Path, result: Any) -> None:
    assert len(wavs(folder / "generated")) == 1  # the default --out_dir


def check_merged(name: str) -> Callable[[Path, Any], None]:
    def check(folder: Path, result: Any) -> None:
        assert (folder / name / "model.safetensors").is_file() and (folder / name / "config.json").is_file()

    return check


def check_blend(folder: Path, result: Any) -> None:
    check_merged("blend")(folder, result)
    assert len(wavs(folder / "generated")) == 1  # the blend also renders its --prompt


def check_pushed_by_training(folder: Path, result: Any) -> None:
    repo = result["hub"].repos["your-name/musicgen-lora-jazz"]
    assert repo.private is True and {"adapter_model.safetensors", "README.md"} <= repo.files.keys()


def check_pushed_later(folder: Path, result: Any) -> None:
    repo = result["hub"].repos["your-name/musicgen-lora-jazz"]
    assert len(repo.commits) == 2 and "samples/final/0.wav" in repo.files


def check_prepared(folder: Path, result: Any) -> None:
    assert (folder / "outputs" / "run" / "prepared_data" / "fingerprint.json").is_file()


def check_trained_on_prepared(folder: Path, result: Any) -> None:
    # "without preparing again": the prepared data's fingerprint is the one prepare wrote, untouched
    fingerprint = folder / "outputs" / "run" / "prepared_data" / "fingerprint.json"
    assert fingerprint.stat().st_mtime_ns == result["before"]["fingerprint_mtime"]
    check_trained(1)(folder, result)


def check_two_processes(folder: Path, result: Any) -> None:
    state = json.loads((folder / "outputs" / "run" / "trainer_state.json").read_text())
    # one step of 2 processes x batch 2 is half of the 8 clips; one process would have seen a quarter
    assert state["global_step"] == 1 and state["log_history"][0]["epoch"] == 0.5


def check_evaluation(name: str, models: set[str]) -> Callable[[Path, Any], None]:
    def check(folder: Path, result: Any) -> None:
        metrics = json.loads((folder / name / "metrics.json").read_text())
        assert set(metrics["models"]) == models
        assert (folder / name / "report.html").is_file()

    return check


RUN: dict[str, Run] = {
    "python finetune_musicgen.py": Run(check=check_demo, note="the demo_run session fixture (shared with "
                                       "tests/demo/test_demo_run.py)"),
    "ruff check .": Run(note="in the repository root"),
    "ruff format --check .": Run(note="in the repository root"),
    "musicgen-lora train my.json --max_steps 2000": Run(append=("--max_steps", "1"), check=check_trained(1)),
    'musicgen-lora generate --adapter outputs/my-run --prompt "lofi hip hop, 84 bpm" --duration 60': Run(
        replace=(("--duration 60", "--duration 2 --window 1.2 --overlap 0.4"),),
        check=lambda folder, result: [sf.info(str(p)).frames for p in wavs(folder / "generated")] == [2 * RATE],
    ),
    "python finetune_musicgen.py example_configs/musicgen_small_lora_my_songs.json": Run(
        append=EXAMPLE_ON_TINY, check=check_example
    ),
    "python finetune_musicgen.py example_configs/musicgen_small_lora_my_songs.json --dataset_name ~/music/lofi "
    "--lora_r 32": Run(append=EXAMPLE_ON_TINY, alone=True, check=check_example_override),
    'python -m musicgen_lora.generate --base_model facebook/musicgen-small --adapter outputs/musicgen-small-my-songs '
    '--prompt "lofi hip hop, piano" --prompt "jazz trio, brushes" --duration 45 --guidance_scale 3 --seed 0 '
    '--out_dir out/ --format both': Run(
        replace=(("--duration 45", "--duration 2 --window 1.2 --overlap 0.4"),), check=check_long_songs
    ),
    'python -m musicgen_lora.generate --base_model facebook/musicgen-melody --adapter ADAPTER --prompt "80s punk" '
    "--melody hum.wav": Run(
        replace=(("--adapter ADAPTER ", ""),), append=("--duration", "1"), check=check_melody,
        note="no adapter: the session has no melody adapter (tests/train/test_variants.py trains one)",
    ),
    "python -m musicgen_lora.generate --adapter outputs/musicgen-small-my-songs --merge merged/": Run(
        check=check_merged("merged")
    ),
    'python -m musicgen_lora.generate --adapter jazz-lora --adapter punk-lora --adapter_weights 0.7 0.3 --prompt "..." '
    "--merge blend/": Run(check=check_blend, alone=True, note="alone: its clip, like the melody one's, goes to the "
                          "default --out_dir"),
    "python finetune_musicgen.py CONFIG.json --push_to_hub true --hub_model_id your-name/musicgen-lora-jazz "
    "[--hub_private_repo true]": Run(check=check_pushed_by_training, note="to the fake Hub of tests/hub/fake_hub.py"),
    "python -m musicgen_lora.push outputs/musicgen-small-my-songs --repo_id your-name/musicgen-lora-jazz "
    "[--private]": Run(check=check_pushed_later, note="to the same fake Hub"),
    "python -m musicgen_lora.prepare my.json": Run(check=check_prepared),
    "python finetune_musicgen.py my.json": Run(check=check_trained_on_prepared),
    "python finetune_musicgen.py my.json --save_steps 200 --save_total_limit 3": Run(
        append=("--save_steps", "1"), check=check_trained(1)
    ),
    "python finetune_musicgen.py my.json --resume_from_checkpoint outputs/run/checkpoint-400": Run(
        replace=(("checkpoint-400", "checkpoint-1"),), append=("--max_steps", "2"), check=check_trained(2),
        note="continues the run above from its checkpoint-1 to a larger max_steps",
    ),
    "OMP_NUM_THREADS=1 accelerate launch --multi_gpu --num_processes 2 finetune_musicgen.py CONFIG.json": Run(
        check=check_two_processes, note="a subprocess: two gloo processes on the CPU"
    ),
    "python evaluate.py --base_model facebook/musicgen-small --model final=outputs/my-run "
    "--model best=outputs/my-run/best --model step400=outputs/my-run/checkpoint-400 --prompts prompts.json "
    "--duration 15 --seed 0 --eval_dataset ~/music/held_out --output_dir eval/": Run(
        replace=(("--duration 15", "--duration 0.5"),),
        append=("--num_samples", "2", "--data_cache_dir", "{cache}", "--skip_melody"),
        check=check_evaluation("eval", {"base", "final", "best", "step400"}),
    ),
    "python evaluate.py --config outputs/my-run/finetune_config.json": Run(
        append=("--duration", "0.5", "--skip_melody"),
        check=check_evaluation("outputs/my-run/evaluation", {"base", "final", "best"}),
    ),
}  # fmt: skip

NEEDS_GPUS = "needs several GPUs (this machine and CI have none)"
SKIPPED: dict[str, str] = {
    "pip install torch==2.13.0 -r requirements.txt": "installs packages (network); CI installs them the same way",
    "pip install torch==2.13.0 -r requirements-dev.txt": "installs packages (network); CI installs them the same way",
    "python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile": "the test suite itself",
    "pip install torch==2.13.0 -r requirements.txt -r requirements-studio.txt": "installs packages (network)",
    "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu": "installs torch from PyTorch's CPU "
    "index (network); test_a_cpu_only_machine_is_told_to_take_torch_from_the_cpu_index holds its URL",
    "python -m musicgen_lora.studio": "serves a web page until stopped; tests/studio/ drive the studio",
    "python -m musicgen_lora.studio --projects_dir ~/music-lora --port 7861 [--host 0.0.0.0] [--share]": "serves a "
    "web page until stopped; tests/studio/ test its options",
    "torchrun --standalone --nproc_per_node 4 finetune_musicgen.py example_configs/musicgen_small_lora_my_songs.json":
    NEEDS_GPUS + "; tests/train/test_multiprocess.py runs torchrun with 2 CPU processes",
    "accelerate launch --multi_gpu --num_processes 4 finetune_musicgen.py "
    "example_configs/musicgen_small_lora_my_songs.json": NEEDS_GPUS + "; the 2-process CPU command below runs",
    "python -m musicgen_lora.bench": "15-20 min on 2 cores (its figures are in bench/RESULTS.md)",
    "python -m musicgen_lora.bench --quick": "about 2 min, over this file's budget; tests/bench/ test its parts",
    "python -m musicgen_lora.bench --device cuda": "needs a GPU",
}  # fmt: skip


def test_every_readme_command_is_run_or_skipped_with_a_reason():
    commands = set(readme_commands())
    unclassified = commands - RUN.keys() - SKIPPED.keys()
    assert not unclassified, f"new README commands: add each to RUN or SKIPPED in {__file__}: {sorted(unclassified)}"
    assert not RUN.keys() & SKIPPED.keys()
    stale = (RUN.keys() | SKIPPED.keys()) - commands
    assert not stale, f"no longer in the README: {sorted(stale)}"


# ------------------------------------------------------------------------------------------------ running them


@pytest.fixture(scope="module")
def stand_ins(tiny_model_dir, melody_model_dir, corpus_dir, data_cache_dir, trained_run) -> dict[str, Any]:
    return {
        "tiny": str(tiny_model_dir),
        "melody": str(melody_model_dir),
        "corpus": str(corpus_dir),
        "cache": str(data_cache_dir),
        "trained": Path(trained_run["output_dir"]),
    }


def config_for_readme(stand_ins: dict[str, Any]) -> dict[str, Any]:
    """``my.json`` / ``CONFIG.json``: one step on the tiny model, the output in ``outputs/run`` as in the README."""
    return {
        "model_name_or_path": stand_ins["tiny"],
        "dataset_name": stand_ins["corpus"],
        "data_cache_dir": stand_ins["cache"],
        "output_dir": "outputs/run",
        "max_steps": 1,
        "per_device_train_batch_size": 2,
        "max_duration_in_seconds": 1,
        "report_to": "none",
        "disable_tqdm": True,
        "seed": 0,
    }


def readme_prompts() -> list[Any]:
    """The README's example ``prompts.json`` (the list quoted after the evaluate commands)."""
    (example,) = re.findall(r'`(\["lofi hip hop[^`]*\])`', README.read_text(encoding="utf-8"))
    return json.loads(example)


def copy_run(source: Path, target: Path, flip: bool = False) -> None:
    """A trained run's folder as a user's ``outputs/...``; ``flip``: another adapter (its B matrices negated)."""
    shutil.copytree(source, target)
    if flip:
        weights = load_file(str(target / "adapter_model.safetensors"))
        save_file(
            {k: -v if "lora_B" in k else v for k, v in weights.items()}, str(target / "adapter_model.safetensors")
        )


def set_up_folder(folder: Path, block: str, stand_ins: dict[str, Any]) -> None:
    """The files a README block expects in its working folder (only those it names)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("my.json", "CONFIG.json"):
        (folder / name).write_text(json.dumps(config_for_readme(stand_ins)))
    if "example_configs/" in block:  # the README's commands run from the repository's folder
        shutil.copytree(ROOT / "example_configs", folder / "example_configs")
    (folder / "prompts.json").write_text(json.dumps(readme_prompts()))
    half = tone(0.4, 220.0)
    sf.write(folder / "hum.wav", np.concatenate([half, tone(0.4, 330.0)]), RATE)  # a two-note tune of 0.8 s
    for name in ("outputs/my-run", "outputs/musicgen-small-my-songs"):
        if name in block:
            copy_run(stand_ins["trained"], folder / name)
    if "outputs/my-run/best" in block:  # a best/ and a checkpoint-N folder hold an adapter like the run's own
        for sub in ("best", "checkpoint-400"):
            (folder / "outputs/my-run" / sub).mkdir()
            for file in ("adapter_config.json", "adapter_model.safetensors"):
                shutil.copy(stand_ins["trained"] / file, folder / "outputs/my-run" / sub / file)
    if "punk-lora" in block:
        copy_run(stand_ins["trained"], folder / "outputs/my-run")
        copy_run(stand_ins["trained"], folder / "outputs/other-run", flip=True)


def words_of(command: str, run: Run, stand_ins: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """(environment variables, words) of a README command as it runs here."""
    for old, new in run.replace:
        assert old in command, f"substitution {old!r} no longer matches {command!r}"
        command = command.replace(old, new)
    words = [WORDS.get(word, word).strip("[]") for word in shlex.split(command)] + list(run.append)
    words = [word.format(**stand_ins) for word in words if word]
    env = {}
    while "=" in words[0] and not words[0].startswith("-"):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    return env, words


def in_process(words: list[str]) -> Callable[[list[str]], Any] | None:
    """The ``main`` a command runs through, and the argument list it is given."""
    mains = {
        ("python", "finetune_musicgen.py"): train_main,
        ("python", "evaluate.py"): evaluate_main,
        ("python", "-m", "musicgen_lora.generate"): generate_main,
        ("python", "-m", "musicgen_lora.prepare"): prepare_main,
        ("python", "-m", "musicgen_lora.push"): push_main,
        ("musicgen-lora",): cli_main,
    }
    for prefix, main in mains.items():
        if tuple(words[: len(prefix)]) == prefix:
            return lambda: main(words[len(prefix) :])
    return None


@contextlib.contextmanager
def fake_hub_if_needed(block: str, monkeypatch) -> Iterator[FakeHub | None]:
    if "your-name/" not in block:
        yield None
        return
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with served_hub(monkeypatch, TOKEN) as server:
        yield server


@dataclass
class Context:
    folder: Path
    stand_ins: dict[str, Any]
    hub: FakeHub | None
    demo: Callable[[], Any]
    results: dict[str, Any] = field(default_factory=dict)


def run_command(command: str, context: Context) -> Any:
    """Run one README command in ``context.folder``; returns what its check is given."""
    run = RUN[command]
    env, words = words_of(command, run, context.stand_ins)
    before = {}
    fingerprint = context.folder / "outputs/run/prepared_data/fingerprint.json"
    if fingerprint.is_file():
        before["fingerprint_mtime"] = fingerprint.stat().st_mtime_ns
    if words == ["python", "finetune_musicgen.py"]:
        return context.demo()
    if words[0] in ("ruff", "accelerate"):
        if not shutil.which(words[0]):
            pytest.skip(f"{words[0]} is not installed")
        process_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        where = ROOT if words[0] == "ruff" else context.folder
        if words[0] == "accelerate":
            words = [words[0], words[1], *words[2:-2], str(ROOT / words[-2]), words[-1]]
        done = subprocess.run(words, cwd=where, env=process_env, capture_output=True, text=True, timeout=400)
        errors = [line for line in done.stderr.splitlines() if "error: " in line]
        assert done.returncode == 0, "\n".join(errors[:5]) + "\n" + done.stdout[-2000:] + done.stderr[-3000:]
        return {"hub": context.hub, "before": before}
    main = in_process(words)
    assert main, f"no way to run {words[:3]}: add it to in_process()"
    result = main()
    return {"result": result, "hub": context.hub, "before": before}


BLOCKS = [(line, block) for line, block in readme_blocks("bash") if set(commands_of(block)) & RUN.keys()]


@pytest.mark.parametrize("line, block", BLOCKS, ids=[f"README-line-{line}" for line, _ in BLOCKS])
def test_readme_bash_block_runs(line, block, stand_ins, request, tmp_path, monkeypatch):
    home = tmp_path / "home"  # '~' of a command is a folder of the test's, never the user's home
    monkeypatch.setenv("HOME", str(home))
    commands = [command for command in commands_of(block) if command in RUN]
    with fake_hub_if_needed(block, monkeypatch) as hub:
        for index, command in enumerate(commands):
            run = RUN[command]
            folder = tmp_path / (f"alone-{index}" if run.alone else "work")
            if not folder.exists():
                set_up_folder(folder, block, stand_ins)
            monkeypatch.chdir(folder)
            context = Context(folder, stand_ins, hub, lambda: request.getfixturevalue("demo_run"))
            result = run_command(command, context)
            if run.check:
                outcome = run.check(folder, result)
                assert outcome is None or outcome is True, f"{command}: {outcome}"


def test_use_the_adapter_snippet_runs_as_written(stand_ins, tmp_path, monkeypatch):
    """The "Use the adapter" snippet, with the tiny model's folder for its Hub id and a copy of a trained run for
    ``outputs/musicgen-small-my-songs``."""
    (_, snippet), *others = readme_blocks("python")
    assert not others, "a new python snippet in the README: run it here too"
    assert '"facebook/musicgen-small"' in snippet and "max_new_tokens=256" in snippet
    # a device and a dtype: the model and the inputs on the GPU where there is one, the base loaded in that dtype
    assert 'from_pretrained("facebook/musicgen-small", dtype=dtype)' in snippet and snippet.count(".to(device)") == 2
    copy_run(stand_ins["trained"], tmp_path / "outputs" / "musicgen-small-my-songs")
    monkeypatch.chdir(tmp_path)
    code = snippet.replace('"facebook/musicgen-small"', repr(stand_ins["tiny"]))
    exec(compile(code, str(README), "exec"), {"__name__": "readme_snippet"})
    # "N new tokens give N - 3 frames for the 4-codebook models, i.e. (N - 3) / 50 seconds"
    assert sf.info(str(tmp_path / "out.wav")).frames == (256 - 3) * SAMPLES_PER_FRAME


# ------------------------------------------------------------------------------------------------ the options' defaults


def help_defaults(capsys) -> dict[str, str]:
    """Option -> the default ``python finetune_musicgen.py --help`` prints for it (options without one are left out)."""
    with pytest.raises(SystemExit) as done:
        train_main(["--help"])
    assert done.value.code == 0
    entries = re.split(r"\n  (?=--)", capsys.readouterr().out)
    defaults = {}
    for entry in entries[1:]:
        text = " ".join(entry.split("\n\n")[0].split())  # (a blank line ends the last option of a group)
        shown = re.search(r"\(default: (.*?)\)$", text)
        if shown:
            defaults[text.split()[0].removeprefix("--")] = shown.group(1)
    return defaults


def readme_defaults() -> dict[str, str]:
    """Option -> the default README.md's option tables give, where the cell is one value in backquotes per option
    (``| `lora_r` | `16` | ...``, ``| `fp16` / `bf16` | `false` | ...``, ``| `a`, `b` | `8`, `1` | ...``)."""
    text = README.read_text(encoding="utf-8")
    tables = text[text.index("### This project's options") : text.index("## Speed and memory")]
    defaults = {}
    for row in re.findall(r"^\| (`[^|]*) \| ([^|]*) \|", tables, re.MULTILINE):
        names, values = re.findall(r"`(\w+)`", row[0]), re.findall(r"`([^`]*)`", row[1])
        if len(names) == len(values):
            defaults.update(zip(names, values, strict=True))
        elif len(values) == 1 and " / " in row[0]:  # `fp16` / `bf16`: the same default for each
            defaults.update(dict.fromkeys(names, values[0]))
    return defaults


def same_value(readme: str, shown: str) -> bool:
    words = {"false": "False", "true": "True"}
    with contextlib.suppress(ValueError):
        return float(readme) == float(shown)
    return words.get(readme, readme) == shown


EMPTY = {"false", "0", "null", "[]"}  # --help prints no default for these (no "(default: False)" noise)
RESOLVED_LATER = {"data_cache_dir"}  # unset (None) until a run computes it from $HF_HOME, as the README's cell says


def test_help_prints_the_defaults_the_readme_gives_not_the_demos(capsys):
    shown, documented = help_defaults(capsys), readme_defaults()
    assert len(documented) > 40  # the tables were read
    differ = {
        name: (value, shown.get(name))
        for name, value in documented.items()
        if (not same_value(value, shown[name]) if name in shown else value not in EMPTY and name not in RESOLVED_LATER)
    }
    assert not differ, f"README default vs --help default: {differ}"
    # the offline demo's own values (used only for an empty command line) are not what --help calls the defaults
    for name in ("lora_r", "learning_rate", "num_train_epochs", "per_device_train_batch_size"):
        assert not same_value(str(DEMO_CONFIG[name]), shown[name]), name


# ------------------------------------------------------------------------------------------------ installing torch

CPU_INDEX = "https://download.pytorch.org/whl/cpu"  # pytorch.org's instruction for a CPU-only machine


def test_a_cpu_only_machine_is_told_to_take_torch_from_the_cpu_index():
    """A version pin chooses torch's version, not its build (PyPI's Linux torch is the CUDA build): every CPU-only
    instruction of the README and of requirements.txt installs torch from PyTorch's CPU index, at the version the
    README's commands pin, which the CPU build's version then satisfies."""
    text = README.read_text(encoding="utf-8")
    indexed = [line for line in readme_commands() if line.startswith("pip install torch") and "--index" in line]
    assert indexed, "the README gives no command that installs torch's CPU build"
    for command in indexed:
        words = command.split()
        assert words[words.index("--index-url") + 1] == CPU_INDEX, command
    install = text[text.index("## Install") : text.index("\n## ", text.index("## Install") + 1)]
    assert "CPU-only" in install and CPU_INDEX in install
    (cuda_trouble,) = re.findall(r"^- \*\*pip downloads gigabytes of CUDA libraries\*\*.*?(?=^- )", text, re.M | re.S)
    assert CPU_INDEX in " ".join(cuda_trouble.split())
    comment = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.startswith("#")]
    assert any(f"--index-url {CPU_INDEX}" in line for line in comment)
    # "2.13.0+cpu satisfies torch==2.13.0": the CPU build installed first keeps commands 1 and 2 from replacing it
    pins = {re.search(r"torch==([\d.]+)", command).group(1) for command in readme_commands() if "torch==" in command}
    (version,) = pins
    assert f"`{version}+cpu` satisfies `torch=={version}`" in text
    assert SpecifierSet(f"=={version}").contains(f"{version}+cpu")
