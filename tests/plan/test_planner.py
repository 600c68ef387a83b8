"""The memory planner: its parameter counts against the built models, its predictions against the measurements kept in
bench/memory_measurements.json (within 15 %), its command line, the README's "Which GPU" table and the presets."""

from __future__ import annotations

import json
import re

import pytest
import torch

from musicgen_lora.cli import main as console
from musicgen_lora.config.arguments import LoraArguments
from musicgen_lora.demo.tiny import build_tiny_musicgen, save_tiny_musicgen
from musicgen_lora.models.loading import ready_for_training
from musicgen_lora.plan import plan_memory
from musicgen_lora.plan.architecture import architecture_of
from musicgen_lora.plan.fit import largest_fits
from musicgen_lora.plan.memory import GIB, lora_params, settings_of
from musicgen_lora.plan.table import END, START, markdown_table
from musicgen_lora.train.lora import add_trainable_parts

from ..conftest import ROOT

MEASUREMENTS = ROOT / "bench" / "memory_measurements.json"
TOLERANCE = 0.15


def counts(model: torch.nn.Module) -> dict[str, int]:
    tensors = lambda module: sum(t.numel() for t in (*module.parameters(), *module.buffers()))  # noqa: E731
    decoder = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("decoder.", "enc_to_dec_proj",
                  "audio_enc_to_dec_proj"))) + sum(b.numel() for b in model.decoder.buffers())  # fmt: skip
    return {"codec": tensors(model.audio_encoder), "text": sum(p.numel() for p in model.text_encoder.parameters()),
            "decoder": decoder}  # fmt: skip


def planned(arch) -> dict[str, int]:
    return {"codec": arch.codec_tensors, "text": arch.text_encoder_params(),
            "decoder": arch.decoder_linear_params() + arch.decoder_other_params()}  # fmt: skip


@pytest.mark.parametrize("variant", ["mono", "stereo", "melody"])
def test_parameter_counts_of_a_local_folder_match_the_model(variant, tmp_path):
    folder = save_tiny_musicgen(tmp_path / variant, seed=0, variant=variant)
    model, _ = build_tiny_musicgen(variant=variant, fit_codebooks=False)
    assert planned(architecture_of(str(folder))) == counts(model)


@pytest.mark.parametrize("name, architecture, variant", [("small", "small", "mono"), ("melody", "medium", "melody"),
                                                         ("stereo-large", "large", "stereo")])  # fmt: skip
def test_parameter_counts_of_the_published_table_match_the_real_architectures(name, architecture, variant):
    with torch.device("meta"):  # real sizes, nothing allocated
        model, _ = build_tiny_musicgen(architecture=architecture, variant=variant, fit_codebooks=False)
    assert planned(architecture_of(f"facebook/musicgen-{name}")) == counts(model)


@pytest.mark.parametrize("targets", [None, ["q_proj", "v_proj"], ["fc2", "lm_heads.1", "embed_tokens"]])
def test_lora_parameters_match_peft(targets, tmp_path):
    model, _ = build_tiny_musicgen(fit_codebooks=False)
    ready_for_training(model)
    lora = LoraArguments() if targets is None else LoraArguments(lora_target_modules=targets, lora_r=4)
    trainable = sum(p.numel() for p in add_trainable_parts(model, lora).parameters() if p.requires_grad)
    folder = save_tiny_musicgen(tmp_path / "tiny", seed=0)
    config = {"model_name_or_path": str(folder), "lora_r": lora.lora_r, "lora_target_modules": lora.lora_target_modules}
    assert lora_params(architecture_of(str(folder)), settings_of(config, "cpu")) == trainable


def measurements() -> list[dict]:
    return [r for r in json.loads(MEASUREMENTS.read_text())["cases"] if r.get("measured_bytes")]


def test_the_measurements_cover_at_least_8_configurations():
    records = measurements()
    assert len({json.dumps(r["config"], sort_keys=True) for r in records}) >= 8
    varied = {key for key in ("bf16", "gradient_checkpointing", "per_device_train_batch_size", "quantize_base",
                              "optim", "max_duration_in_seconds")
              if len({str(r["config"].get(key)) for r in records}) > 1}  # fmt: skip
    assert {"bf16", "gradient_checkpointing", "quantize_base"} <= varied, varied


@pytest.mark.parametrize("record", measurements(), ids=lambda r: r["name"])
def test_the_planner_is_within_15_percent_of_each_measured_peak(record):
    predicted = plan_memory(record["config"], device=record["device"]).peak_bytes
    deviation = predicted / record["measured_bytes"] - 1
    assert abs(deviation) <= TOLERANCE, f"predicted {predicted / GIB:.2f} GiB, measured " \
        f"{record['measured_bytes'] / GIB:.2f} GiB ({100 * deviation:+.1f} %)"  # fmt: skip


def test_quantization_and_8bit_optimizers_shrink_the_plan():
    base = {"model_name_or_path": "facebook/musicgen-large", "bf16": True, "per_device_train_batch_size": 1}
    plain = plan_memory(base)
    nf4 = plan_memory({**base, "quantize_base": "nf4"})
    int8 = plan_memory({**base, "quantize_base": "int8"})
    adam8 = plan_memory({**base, "optim": "adamw_bnb_8bit"})
    assert nf4.parts["frozen_weights"] < int8.parts["frozen_weights"] < plain.parts["frozen_weights"]
    assert adam8.parts["optimizer_states"] == plain.parts["optimizer_states"] // 4
    checkpointed = plan_memory({**base, "gradient_checkpointing": True})
    assert checkpointed.parts["activations"] < plain.parts["activations"] / 5


def test_plan_json_and_fit_on_the_command_line(tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"model_name_or_path": "facebook/musicgen-medium", "bf16": True,
                                  "gradient_checkpointing": True}))  # fmt: skip
    console(["plan", str(config), "--json", "--fit", "12GB"])
    result = json.loads(capsys.readouterr().out)
    assert result["peak_memory_gib"] == pytest.approx(sum(result["parts"].values()), abs=0.01)
    rows = result["fit"]["batches"]
    assert rows and all(row["peak_memory_gib"] <= 12 for row in rows)
    for row in rows:  # the longest that fits: one second more does not
        longer = {**json.loads(config.read_text()), "per_device_train_batch_size": row["batch"],
                  "max_duration_in_seconds": row["seconds"] + 1}  # fmt: skip
        assert row["seconds"] == 30 or plan_memory(longer).peak_bytes > 12 * GIB
    console(["plan", str(config)])
    assert re.search(r"predicted peak GPU memory .*: \d+\.\d\d GiB", capsys.readouterr().out)


@pytest.mark.parametrize("words, expect", [(["--fit", "lots"], r"--fit 'lots' is not a memory size"),
                                           (["--device", "tpu"], r"invalid choice: 'tpu'")])  # fmt: skip
def test_plan_refuses_bad_input_in_one_line(words, expect, tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"model_name_or_path": "facebook/musicgen-small"}))
    with pytest.raises(SystemExit) as stop:
        console(["plan", str(config), *words])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and re.search(expect, err[0]), err


def test_plan_refuses_a_model_it_does_not_know(tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"model_name_or_path": "facebook/musicgen-huge"}))
    with pytest.raises(SystemExit) as stop:
        console(["plan", str(config)])
    assert stop.value.code == 2
    assert "neither a local MusicGen folder nor a published one" in capsys.readouterr().err


@pytest.mark.slow
def test_the_readme_which_gpu_table_is_the_planners():
    readme = (ROOT / "README.md").read_text()
    assert START in readme and END in readme
    assert readme[readme.index(START) : readme.index(END) + len(END)] == markdown_table()


PRESETS = sorted(ROOT.glob("example_configs/musicgen_*_lora_*gb.json")) + [
    ROOT / "example_configs/musicgen_small_lora_t4.json"
]


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_each_preset_fits_its_gpu_by_the_planner(path):
    config = json.loads(path.read_text())
    size = 15 if path.name.endswith("t4.json") else int(re.search(r"_(\d+)gb\.json$", path.name).group(1))
    assert plan_memory(config, device="cuda").peak_bytes <= size * GIB
    assert config["max_duration_in_seconds"] == 30
    assert largest_fits(config, size * GIB)[0].seconds == 30


def test_there_is_a_preset_per_row_of_the_table():
    names = {p.name for p in PRESETS}
    for model in ("small", "medium", "large", "melody", "melody_large"):
        assert any(re.fullmatch(rf"musicgen_{model}_lora_\d+gb\.json", n) for n in names), model
