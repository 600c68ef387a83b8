"""Sharing a LoRA: the model card, the loss plot, and pushing to a Hub-compatible server on 127.0.0.1.

The push tests use the real ``huggingface_hub`` client against :mod:`tests.fake_hub` (``HF_ENDPOINT`` pointed at it);
every other test keeps ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from huggingface_hub import ModelCard

from musicgen_lora.files import hub_id_of
from musicgen_lora.hub import retries
from musicgen_lora.hub.card import base_model_license, build_model_card

from ..conftest import ROOT, base_argv
from .fake_hub import USER, served_hub

TOKEN = "hf_testSecretToken123"
BASE_ID = "musicgen-lora-tests/tiny-musicgen"
REPO = f"{USER}/tiny-lora"
PROMPTS = ["lofi hip hop, piano", "techno, 128 bpm"]
# What a push uploads from a LoRA run with samples and evaluation (and nothing else: no checkpoints, no logs).
PUSHED = {
    "README.md", "adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json",
    "processor_config.json", "finetune_config.json", "train_results.json", "eval_results.json", "all_results.json",
    "loss_curves.png", "samples/final/0.wav", "samples/final/1.wav", "samples/final/prompts.txt",
}  # fmt: skip


@pytest.fixture()
def online(monkeypatch):
    """Let huggingface_hub make requests (to the loopback server only: HF_ENDPOINT is set by each test)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    return monkeypatch


@pytest.fixture()
def fake_hub(online):
    with served_hub(online, TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def published(tiny_model_dir, corpus_dir, data_cache_dir, tmp_path_factory):
    """A short run with a trigger word, evaluation, and push_to_hub to the loopback server at the end of training."""

    from finetune_musicgen import main

    out = tmp_path_factory.mktemp("hub") / "lora"
    argv = base_argv(tiny_model_dir, corpus_dir, out, data_cache_dir) + [
        "--max_train_samples",
        "4",
        "--per_device_train_batch_size",
        "4",
        "--max_steps",
        "6",
        "--logging_steps",
        "2",
        "--learning_rate",
        "3e-3",
        "--max_duration_in_seconds",
        "2",
        "--eval_split_name",
        "train",
        "--max_eval_samples",
        "4",
        "--instance_prompt",
        "sks",
        "--base_model_id",
        BASE_ID,
        "--sample_prompts",
        *PROMPTS,
        "--sample_duration_in_seconds",
        "0.5",
        "--push_to_hub",
        "true",
        "--hub_model_id",
        REPO,
        "--hub_private_repo",
        "true",
        "--hub_token",
        TOKEN,
    ]
    with pytest.MonkeyPatch.context() as patch, served_hub(patch, TOKEN) as server:
        patch.delenv("HF_TOKEN", raising=False)
        result = main(argv)
    return {"out": out, "result": result, "server": server, "tiny": tiny_model_dir, "corpus": corpus_dir}


def text_files(files: dict[str, bytes]) -> dict[str, str]:
    return {name: data.decode("utf-8") for name, data in files.items() if name.endswith((".json", ".md", ".txt"))}


def snapshot(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------------------------------------------ push at the end of
# training


def test_training_pushes_adapter_card_and_samples_in_one_commit(published):
    server, out = published["server"], published["out"]
    assert published["result"]["hub_url"] == f"{server.url}/{REPO}"
    repo = server.repos[REPO]
    assert repo.private is True and len(repo.commits) == 1
    assert set(repo.files) == PUSHED
    for name in PUSHED - {"adapter_config.json", "finetune_config.json"}:
        assert repo.files[name] == (out / name).read_bytes(), name  # exactly the local files (the card included)
    # the base model is named by its Hub id everywhere, locally and on the Hub
    assert json.loads(repo.files["adapter_config.json"])["base_model_name_or_path"] == BASE_ID
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == BASE_ID
    for name, text in text_files(repo.files).items():
        for local in (str(published["tiny"]), str(published["corpus"]), str(out), str(out.parent)):
            assert local not in text, f"{name} holds the local path {local}"
    pushed_config = json.loads(repo.files["finetune_config.json"])
    assert pushed_config["model_name_or_path"] == BASE_ID and "output_dir" not in pushed_config
    assert server.calls("commit") == [200]


def test_token_is_never_written_to_any_output_file(published):
    leaks = [p for p in published["out"].rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert leaks == []
    assert "hub_token" not in json.loads((published["out"] / "finetune_config.json").read_text())
    assert all(TOKEN not in text for text in text_files(published["server"].repos[REPO].files).values())


# ------------------------------------------------------------------------------------------------ the card


def test_card_yaml_round_trips_and_holds_no_local_path(published):
    out = published["out"]
    text = (out / "README.md").read_text()
    card = ModelCard.load(out / "README.md")
    data = card.data
    assert data.base_model == BASE_ID
    assert (data.library_name, data.pipeline_tag) == ("peft", "text-to-audio")
    assert {"musicgen", "lora", "peft", "transformers", "text-to-audio", f"base_model:adapter:{BASE_ID}"} <= set(
        data.tags
    )
    assert "sks" not in data.tags  # the trigger word is the instance_prompt, in the text and the widget
    assert data.instance_prompt == "sks"
    assert [w["output"]["url"] for w in data.widget] == ["samples/final/0.wav", "samples/final/1.wav"]
    assert [w["text"] for w in data.widget] == PROMPTS
    assert ModelCard(str(card)).data.to_dict() == data.to_dict()  # YAML survives a second round trip
    for local in (str(published["tiny"]), str(published["corpus"]), str(out)):
        assert local not in text
    # hyperparameters, trigger word, evaluation numbers, samples and the plot are in the body
    eval_results = json.loads((out / "eval_results.json").read_text())
    assert f"| loss | {eval_results['eval_loss']:.4g} |" in text
    assert "| rank r / alpha / dropout | 16 / 32 / 0.05 |" in text and "| optimizer steps / epochs | 6 /" in text
    assert "**Trigger word:** `sks`" in text
    for link in ("samples/final/0.wav", "samples/final/1.wav", "loss_curves.png"):
        assert f"]({link})" in text and (out / link).is_file()
    assert f'PeftModel.from_pretrained(base, "{REPO}")' in text


def test_card_names_hub_dataset_and_evaluation_in_metadata(published, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(published["out"], run)
    config = json.loads((run / "finetune_config.json").read_text())
    config.update(dataset_name="someone/punk-clips", eval_split_name="validation")
    (run / "finetune_config.json").write_text(json.dumps(config))
    card = ModelCard(str(build_model_card(run, REPO)))
    eval_loss = json.loads((run / "eval_results.json").read_text())["eval_loss"]
    assert card.data.datasets == ["someone/punk-clips"]
    (loss, _) = card.data.eval_results
    assert (loss.metric_type, loss.dataset_type, loss.dataset_split) == ("loss", "someone/punk-clips", "validation")
    assert loss.metric_value == pytest.approx(eval_loss)


def test_card_of_a_local_base_without_id_names_no_base(trained_run, tiny_model_dir):
    out = Path(trained_run["output_dir"])
    text = (out / "README.md").read_text()
    assert ModelCard.load(out / "README.md").data.base_model is None
    assert str(tiny_model_dir) not in text and "BASE_MODEL_ID" in text
    assert 'PeftModel.from_pretrained(base, ".")' in text  # the card's own folder until it is pushed


def test_base_model_ids_and_licences(tmp_path):
    snapshot_dir = tmp_path / "hub" / "models--facebook--musicgen-small" / "snapshots" / "abc123"
    snapshot_dir.mkdir(parents=True)
    assert hub_id_of(str(snapshot_dir)) == "facebook/musicgen-small"
    assert hub_id_of("facebook/musicgen-melody") == "facebook/musicgen-melody"
    assert hub_id_of(str(tmp_path)) is None
    assert hub_id_of(str(tmp_path), "me/base") == "me/base"
    assert base_model_license("facebook/musicgen-stereo-large") == "cc-by-nc-4.0"
    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\n# a model\n")
    assert base_model_license(None, str(tmp_path)) == "mit"
    assert base_model_license("someone/unknown") is None


def test_usage_snippet_runs_as_written(published, tmp_path):
    """The card's Python block, unchanged, in a fresh interpreter: base and adapter resolve from a Hub cache."""
    cache = tmp_path / "hub-cache"

    def cache_repo(repo_id: str, files: dict[str, bytes]) -> None:
        folder = cache / f"models--{repo_id.replace('/', '--')}"
        commit = hashlib.sha1(repo_id.encode()).hexdigest()
        for name, data in files.items():
            (folder / "snapshots" / commit / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / "snapshots" / commit / name).write_bytes(data)
        (folder / "refs").mkdir(parents=True, exist_ok=True)
        (folder / "refs" / "main").write_text(commit)

    cache_repo(BASE_ID, {p.name: p.read_bytes() for p in published["tiny"].iterdir() if p.is_file()})
    cache_repo(REPO, published["server"].repos[REPO].files)  # exactly what the push delivered
    (code,) = re.findall(r"```python\n(.*?)```", (published["out"] / "README.md").read_text(), flags=re.S)
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("HF_ENDPOINT", None)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    info = sf.info(str(tmp_path / "sample.wav"))
    assert (info.samplerate, info.channels, info.frames) == (32000, 1, 8 * 32000)


# ------------------------------------------------------------------------------------------------ push later: the CLI


def test_push_cli_retries_transient_failures(published, fake_hub, monkeypatch, capsys):
    from musicgen_lora.hub.cli import main

    waits: list[float] = []
    monkeypatch.setattr(retries.time, "sleep", waits.append)
    fake_hub.fail["commit"] = [500, 500]
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    result = main([str(published["out"]), "--repo_id", f"{USER}/retried"])
    assert fake_hub.calls("commit") == [500, 500, 200]
    assert waits == [2.0, 4.0]  # exponential back-off
    assert result["url"] == f"{fake_hub.url}/{USER}/retried"
    assert set(fake_hub.repos[f"{USER}/retried"].files) == PUSHED
    assert fake_hub.repos[f"{USER}/retried"].private is None  # not asked: the Hub's default
    assert f"pushed {published['out']} to {fake_hub.url}/{USER}/retried" in capsys.readouterr().out


def test_permanent_failure_leaves_output_intact_and_says_how_to_retry(
    published, fake_hub, monkeypatch, capsys, tmp_path
):
    from musicgen_lora.hub.cli import main

    monkeypatch.setattr(retries.time, "sleep", lambda seconds: None)
    run = tmp_path / "run"
    shutil.copytree(published["out"], run)
    before = snapshot(run)
    fake_hub.fail_always["commit"] = 503
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with pytest.raises(SystemExit) as exit_info:
        main([str(run), "--repo_id", f"{USER}/broken"])
    assert exit_info.value.code == 2
    assert snapshot(run) == before
    assert fake_hub.calls("commit") == [503, 503, 503, 503] and fake_hub.repos[f"{USER}/broken"].files == {}
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: pushing '{run}' to '{USER}/broken' failed 4 times (HTTP 503")
    assert line.endswith(f"retry with: python -m musicgen_lora.push {run} --repo_id {USER}/broken")


def test_pushing_a_checkpoint_leaves_its_files_as_they_were(published, fake_hub, monkeypatch, tmp_path):
    """UC22 (2026-12-07): the local card is rewritten only in a run's folder, never in a checkpoint."""
    from musicgen_lora.hub.cli import main

    checkpoint = tmp_path / "checkpoint-3"
    checkpoint.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(published["out"] / name, checkpoint / name)
    (checkpoint / "README.md").write_text("---\nlibrary_name: peft\n---\n\n# Model Card for Model ID\n")  # PEFT's
    bare = tmp_path / "checkpoint-4"
    shutil.copytree(checkpoint, bare, ignore=shutil.ignore_patterns("README.md"))
    before = {folder: snapshot(folder) for folder in (checkpoint, bare)}
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    for folder in (checkpoint, bare):
        main([str(folder), "--repo_id", f"{USER}/{folder.name}"])
        assert "README.md" in fake_hub.repos[f"{USER}/{folder.name}"].files  # the Hub gets its card
        assert snapshot(folder) == before[folder]


def test_rejected_token_is_not_retried(published, fake_hub, monkeypatch, capsys):
    from musicgen_lora.hub.cli import main

    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(SystemExit):
        main([str(published["out"]), "--repo_id", f"{USER}/denied"])
    assert fake_hub.calls("create") == [401] and fake_hub.calls("commit") == []
    assert "(HTTP 401" in capsys.readouterr().err


def test_push_cli_as_a_process_reads_hf_endpoint_and_hf_token(published, fake_hub):
    env = {**os.environ, "HF_TOKEN": TOKEN, "HF_ENDPOINT": fake_hub.url, "HF_HUB_OFFLINE": "0", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "musicgen_lora.push",
            str(published["out"]),
            "--repo_id",
            f"{USER}/from-cli",
            "--private",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    repo = fake_hub.repos[f"{USER}/from-cli"]
    assert set(repo.files) == PUSHED and repo.private is True
    assert f'PeftModel.from_pretrained(base, "{USER}/from-cli")' in repo.files["README.md"].decode()


def test_push_problems_are_found_before_training(tiny_model_dir, corpus_dir, data_cache_dir, tmp_path, online, capsys):
    from finetune_musicgen import main

    online.setenv("HF_HOME", str(tmp_path / "no-login"))  # no saved token either
    online.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "no-login" / "token"))
    out = tmp_path / "run"
    argv = base_argv(tiny_model_dir, corpus_dir, out, data_cache_dir) + [
        "--push_to_hub",
        "true",
        "--hub_model_id",
        REPO,
    ]
    with pytest.raises(SystemExit):
        main(argv)
    assert "pushing to the Hub needs a token; set HF_TOKEN" in capsys.readouterr().err
    assert not (out / "adapter_model.safetensors").exists()
    online.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit):
        main(argv + ["--hub_token", TOKEN])
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(argv[:-4] + ["--base_model_id", "/home/me/musicgen-small"])
    assert "base_model_id '/home/me/musicgen-small' is not a Hub id" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ loss curves


def test_loss_curves_png_is_drawn_at_the_end_of_training(trained_run):
    from PIL import Image

    path = Path(trained_run["output_dir"]) / "loss_curves.png"
    image = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    assert image.shape == (400, 1100)
    assert image.std() > 10  # lines and labels, not a blank canvas


def test_plots_cli_redraws_from_trainer_state(trained_run, tmp_path):
    from musicgen_lora.train.plots import main

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(Path(trained_run["output_dir"]) / "trainer_state.json", run)
    assert main([str(run)]) == {"plot": str(run / "loss_curves.png")}
    assert (run / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
