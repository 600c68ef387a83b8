"""The Colab notebook, executed end to end (nbclient, a real IPython kernel) on the tiny model: only its parameters
cell is replaced, so the notebook can never drift from the code. It installs nothing here (not in Colab), plans the
preset's memory, trains, renders a clip and pushes to a fake Hub."""

from __future__ import annotations

import json

import pytest

from .conftest import ROOT
from .hub.fake_hub import USER, served_hub

pytestmark = pytest.mark.slow  # executes the Colab notebook end to end

nbformat = pytest.importorskip("nbformat", reason="the notebook test needs nbformat, nbclient, ipykernel (.[notebook])")
nbclient = pytest.importorskip("nbclient", reason="the notebook test needs nbclient (pip install .[notebook])")
pytest.importorskip("ipykernel", reason="the notebook test needs ipykernel (pip install .[notebook])")

NOTEBOOK = ROOT / "notebooks" / "musicgen_small_lora_colab.ipynb"
TOKEN = "hf_notebook_test_token"


@pytest.mark.slow
def test_the_colab_notebook_runs_end_to_end(tmp_path, monkeypatch, tiny_model_dir, corpus_dir, data_cache_dir):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    parameters = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1
    out = tmp_path / "run"
    options = ["--max_steps", "2", "--data_cache_dir", str(data_cache_dir), "--per_device_train_batch_size", "2",
               "--max_duration_in_seconds", "1", "--min_duration_in_seconds", "0.5",
               "--sample_duration_in_seconds", "0.5"]  # fmt: skip
    values = {
        "PROJECT": str(ROOT), "SONGS": str(corpus_dir), "MODEL": str(tiny_model_dir),
        "PRESET": "example_configs/musicgen_small_lora_t4.json", "OUTPUT_DIR": str(out), "TRIGGER": "my-style",
        "EXTRA_OPTIONS": options, "PROMPT": "my-style, lofi piano", "SECONDS": 1, "PUSH_TO": f"{USER}/colab-run",
        "IN_COLAB": False,
    }  # fmt: skip
    parameters[0].source = "\n".join(f"{name} = {value!r}" for name, value in values.items())
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with served_hub(monkeypatch, TOKEN) as hub:  # the kernel inherits HF_ENDPOINT and the token
        nbclient.NotebookClient(
            notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
    outputs = "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []))
    assert "predicted peak GPU memory:" in outputs
    assert "training loss:" in outputs
    assert (out / "adapter_model.safetensors").is_file()
    wavs = sorted((tmp_path / "run-renders").glob("*.wav"))
    assert wavs and any(o.get("data", {}).get("text/html", "").find("<audio") >= 0
                        for cell in notebook.cells for o in cell.get("outputs", []))  # fmt: skip
    pushed = hub.repos[f"{USER}/colab-run"].files
    assert "adapter_model.safetensors" in pushed and "README.md" in pushed
    assert json.loads(pushed["adapter_config.json"])["peft_type"] == "LORA"
