"""Safety: the Hub token never reaches a file or a log, weights are safetensors, no remote code unless asked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT, base_argv

FAKE_TOKEN = "hf_FAKEtokenFAKEtokenFAKEtoken123456"


def test_the_hub_token_is_never_written(tiny_model_dir, corpus_dir, data_cache_dir, tmp_path):
    out = tmp_path / "run"
    argv = base_argv(tiny_model_dir, corpus_dir, out, data_cache_dir) + [
        "--hub_token",
        FAKE_TOKEN,
        "--max_steps",
        "2",
        "--save_strategy",
        "steps",
        "--save_steps",
        "1",
        "--max_train_samples",
        "2",
        "--per_device_train_batch_size",
        "2",
        "--sample_prompts",
        "lofi",
        "--sample_duration_in_seconds",
        "0.5",
        "--report_to",
        "tensorboard",
        "--logging_steps",
        "1",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_TOKEN": FAKE_TOKEN, "LOGLEVEL": "DEBUG"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "finetune_musicgen.py"), *argv], capture_output=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "training_args.bin" for p in files) and any("checkpoint-1" in str(p) for p in files)
    leaks = [str(p) for p in files if FAKE_TOKEN.encode() in p.read_bytes()]
    assert leaks == []  # not in configs, card, checkpoints, pickled arguments, event files
    assert FAKE_TOKEN.encode() not in result.stdout + result.stderr  # nor in the (debug-level) logs


def test_no_pickle_is_loaded_from_user_paths():
    """Weights are read as safetensors; a pickle (torch.load) could run code from a downloaded file."""
    offenders = []
    for path in sorted((ROOT / "musicgen_lora").rglob("*.py")) + [ROOT / "finetune_musicgen.py", ROOT / "evaluate.py"]:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if re.search(r"\btorch\.load\(|\bpickle\.loads?\(|\bjoblib\.load\(", line):
                if "weights_only=True" not in line:
                    offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert offenders == []


def test_saved_weights_are_safetensors(trained_run):
    out = Path(trained_run["output_dir"])
    tensor_files = {p.name for p in out.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".pth", ".ckpt")}
    # training_args.bin is Trainer's record of its arguments (no token, see above); nothing here ever loads it
    assert tensor_files - {"training_args.bin"} == {"adapter_model.safetensors"}


def test_remote_code_is_off_unless_asked(tiny_model_dir, tmp_path, monkeypatch):
    import transformers

    from musicgen_lora.config.parsing import parse_config
    from musicgen_lora.models.loading import load_model_and_processor

    seen = []
    original = transformers.AutoModelForTextToWaveform.from_pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs.get("trust_remote_code"))
        return original(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForTextToWaveform, "from_pretrained", spy)
    monkeypatch.setattr("musicgen_lora.models.loading.AutoModelForTextToWaveform.from_pretrained", spy)
    argv = base_argv(tiny_model_dir, tmp_path, tmp_path / "o", tmp_path / "c")
    load_model_and_processor(parse_config(argv).model)
    load_model_and_processor(parse_config(argv + ["--trust_remote_code", "true"]).model)
    assert seen == [False, True]


def test_saved_weights_are_as_readable_as_the_files_beside_them(trained_run):
    """safetensors 0.8 creates its files 0600 (safetensors#782): the adapter must get the mode of the config beside
    it, or another user of a shared machine cannot load it."""
    out = Path(trained_run["output_dir"])
    weights = list(out.rglob("*.safetensors"))
    config_mode = (out / "adapter_config.json").stat().st_mode & 0o777
    assert weights and {p.stat().st_mode & 0o777 for p in weights} == {config_mode}
