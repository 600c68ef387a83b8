"""Session-scoped fixtures: a tiny MusicGen, a small synthetic corpus, and one short training run shared by tests."""

from __future__ import annotations

import importlib.util
import os
import runpy
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from huggingface_hub import constants as hub_constants
from tokenizers import ByteLevelBPETokenizer
from transformers import (
    AutoModelForTextToWaveform,
    ClapAudioConfig,
    ClapConfig,
    ClapFeatureExtractor,
    ClapModel,
    ClapProcessor,
    ClapTextConfig,
    RobertaTokenizerFast,
)

from finetune_musicgen import main
from musicgen_lora.demo.synth import synthesize_corpus
from musicgen_lora.demo.tiny import save_tiny_musicgen

from .system_packages import chromium_or_skip

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the network
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# huggingface_hub read HF_HUB_OFFLINE when transformers imported it (above): without this, a Hub id tries the network
# (and waits for its timeouts) instead of failing at once
hub_constants.HF_HUB_OFFLINE = os.environ["HF_HUB_OFFLINE"].upper() in ("1", "ON", "YES", "TRUE")

if os.environ.get("PYTEST_XDIST_WORKER"):  # `-n 2`: the workers share the cores instead of each using all of them
    os.environ["OMP_NUM_THREADS"] = "1"  # the processes the tests start, too
    torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
RATE = 32000  # the tiny model's sampling rate (and musicgen-small's)


def load_bench_script(name: str):
    """``bench/<name>.py`` as a module (the bench scripts are scripts, not a package), registered in sys.modules under
    ``name`` so that its dataclasses can look their module up."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run_script(monkeypatch, script: Path | str, *argv: str) -> int:
    """``python SCRIPT ARGV...`` (a path) or ``python -m SCRIPT ARGV...`` (a module name) in this process, its
    ``__main__`` block run with ``sys.argv`` as the shell sets it: its exit status. A new interpreter would only add
    seconds of imports; tests start one where the process itself is under test (signals, torchrun, the wheel)."""
    monkeypatch.setattr(sys, "argv", [str(script), *argv])
    try:
        if isinstance(script, Path):
            runpy.run_path(str(script), run_name="__main__")
        else:
            with warnings.catch_warnings():  # runpy warns when the module was imported before (by a test): harmless
                warnings.simplefilter("ignore", RuntimeWarning)
                runpy.run_module(script, run_name="__main__", alter_sys=True)
    except SystemExit as done:
        return 0 if done.code is None else done.code
    return 0


def tone(
    seconds: float,
    freq: float = 440.0,
    *,
    rate: int = RATE,
    amplitude: float = 0.3,
    tremolo_hz: float = 0.0,
    channels: int = 1,
    channel_gain: float = 0.5,
) -> np.ndarray:
    """A sine of ``freq`` Hz, its level swinging by +-50 % at ``tremolo_hz`` (0: steady), float32.

    Returns:
        (samples,) for one channel; (samples, channels), as soundfile writes them, for more, each further channel
        quieter by ``channel_gain`` (so the channels differ).
    """
    t = np.arange(int(seconds * rate)) / rate
    mono = amplitude * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * tremolo_hz * t))
    if channels == 1:
        return mono.astype(np.float32)
    return np.stack([mono * (1 - channel_gain * c) for c in range(channels)], axis=1).astype(np.float32)


def write_tone(path: Path, seconds: float, freq: float = 330.0, rate: int = RATE, **kwargs) -> Path:
    """:func:`tone` written to ``path`` (folders created; the format follows the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(seconds, freq, rate=rate, **kwargs), rate)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return save_tiny_musicgen(tmp_path_factory.mktemp("models") / "tiny-musicgen", seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    """The tiny MusicGen, loaded once (tests that change it must restore it, e.g. with monkeypatch)."""
    return AutoModelForTextToWaveform.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    """8 clips of 3 s with metadata.jsonl captions."""
    folder = tmp_path_factory.mktemp("data") / "corpus"
    synthesize_corpus(folder, clips=8, seconds=3.0, seed=0)
    return folder


def base_argv(model_dir: Path, dataset_dir: Path, output_dir: Path, cache_dir: Path) -> list[str]:
    """Command-line words for a quick run on the tiny model (no JSON file: every key given explicitly)."""
    return [
        "--model_name_or_path",
        str(model_dir),
        "--dataset_name",
        str(dataset_dir),
        "--output_dir",
        str(output_dir),
        "--data_cache_dir",
        str(cache_dir),
        "--report_to",
        "none",
        "--save_strategy",
        "no",
        "--disable_tqdm",
        "true",
        "--seed",
        "0",
    ]


@pytest.fixture(scope="session")
def data_cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("codes-cache")


@pytest.fixture(scope="session")
def trained_run(tiny_model_dir, corpus_dir, data_cache_dir, tmp_path_factory) -> dict:
    """One short LoRA run of the real script, in-process, on an overfit set of 4 clips."""
    output_dir = tmp_path_factory.mktemp("runs") / "lora"
    argv = base_argv(tiny_model_dir, corpus_dir, output_dir, data_cache_dir) + [
        "--max_train_samples",
        "4",
        "--per_device_train_batch_size",
        "4",
        "--max_steps",
        "40",
        "--learning_rate",
        "3e-3",
        "--lora_dropout",
        "0",
        "--logging_steps",
        "5",
        "--sample_prompts",
        "lofi hip hop, piano",
        "techno, 128 bpm",
        "--sample_duration_in_seconds",
        "1.5",
    ]
    result = main(argv)
    result["argv"] = argv
    return result


@pytest.fixture(scope="session")
def stereo_model_dir(tmp_path_factory) -> Path:
    return save_tiny_musicgen(tmp_path_factory.mktemp("models") / "tiny-stereo", seed=0, variant="stereo")


@pytest.fixture(scope="session")
def melody_model_dir(tmp_path_factory) -> Path:
    return save_tiny_musicgen(tmp_path_factory.mktemp("models") / "tiny-melody", seed=0, variant="melody")


@pytest.fixture(scope="session")
def tiny_clap_dir(tmp_path_factory) -> Path:
    """A random CLAP (text + HTSAT audio towers, 31k parameters) with a locally trained RoBERTa tokenizer."""
    folder = tmp_path_factory.mktemp("clap")
    bpe = ByteLevelBPETokenizer()
    words = ["lofi hip hop piano techno saw synth rock jazz bpm minor major"] * 10
    bpe.train_from_iterator(words, vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(folder))
    # transformers 5 takes vocab= / merges= (vocab_file= is ignored and leaves a 5-token vocabulary: all text unknown)
    tokenizer = RobertaTokenizerFast(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))
    text = ClapTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        projection_dim=16,
        pad_token_id=tokenizer.pad_token_id,
    )
    audio = ClapAudioConfig(
        hidden_size=32,
        patch_embeds_hidden_size=16,
        depths=[1, 1],
        num_attention_heads=[2, 2],
        window_size=8,
        projection_dim=16,
        enable_fusion=False,
    )
    torch.manual_seed(0)
    model = ClapModel(ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=16))
    # like laion/clap-htsat-unfused: one random 10 s crop (no fusion), 48 kHz
    processor = ClapProcessor(feature_extractor=ClapFeatureExtractor(truncation="rand_trunc"), tokenizer=tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> dict:
    """The offline demo exactly as the README's quickstart runs it, ``python finetune_musicgen.py`` with no arguments,
    in-process from an empty folder, where it builds ``demo_output/`` (its time is the README's figure, not asserted).

    Returns:
        ``{"root": the folder it ran in, "result": what main() returned}``.
    """
    root = tmp_path_factory.mktemp("demo")
    previous = Path.cwd()
    os.chdir(root)  # the demo's paths (demo_output/...) are relative to where it runs, as for a user
    try:
        result = main([])
    finally:
        os.chdir(previous)
    return {"root": root, "result": result}


def run_in_two_processes(command: list[str], timeout: int = 240, **env: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 --tee 3 COMMAND...`` (gloo on the CPU, one thread per process),
    with this checkout importable; each output line of process N starts with ``[defaultN]:``."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--tee", "3"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([*launcher, *command], capture_output=True, text=True, env=environment, timeout=timeout)


def process_lines(result: subprocess.CompletedProcess, rank: int) -> list[str]:
    """What process ``rank`` of :func:`run_in_two_processes` printed."""
    prefix = f"[default{rank}]:"
    return [line[len(prefix) :] for line in (result.stdout + result.stderr).splitlines() if line.startswith(prefix)]


@pytest.fixture(scope="session")
def chromium() -> str:
    """A chromium that renders pages headless (session-scoped, so a test without one skips before the expensive
    fixtures it also asks for are built)."""
    return chromium_or_skip()


# ------------------------------------------------------------------------------------------------ tiers

# Fixtures that train, render or serve before their first test (minutes on a 2-core CPU): a test that uses one is in
# the slow tier, so the everyday tier never pays for them.
EXPENSIVE_FIXTURES = {"trained_run", "demo_run", "studio_run"}
MEASURED_SLOW = {
    line.strip()
    for line in (Path(__file__).parent / "slow_tests.txt").read_text(encoding="utf-8").splitlines()
    if line.strip() and not line.startswith("#")
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark `slow` each test measured at 2 s or more (tests/slow_tests.txt) and each that uses an expensive fixture.

    Under pytest-xdist (`-n 2 --dist loadfile`, the README's test command) each file runs whole in one worker, so a
    module-scoped fixture (the Studio page's trained demo, the benchmark's smoke run) is built once; the files that
    build an expensive fixture go first, so that no worker is left with minutes of them at the end. (Not
    `--dist loadgroup`: xdist 3.8 writes its groups into the tests' ids through an attribute pytest 9.2 no longer
    reads, so every test became its own group.)"""
    for item in items:
        if item.nodeid in MEASURED_SLOW or EXPENSIVE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    file = {item: item.nodeid.split("::")[0] for item in items}
    expensive = {file[item] for item in items if EXPENSIVE_FIXTURES & set(getattr(item, "fixturenames", ()))}
    first = {}
    for index, item in enumerate(items):
        first.setdefault(file[item], index)
    order = {item: index for index, item in enumerate(items)}  # within a file, the order of collection
    items.sort(key=lambda item: (file[item] not in expensive, first[file[item]], order[item]))
