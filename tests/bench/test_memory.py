"""The planner's measurement bench (python -m musicgen_lora.bench.memory): the GPU path as far as a CPU allows, the
calibration fit, and a smoke run of the CPU path on the tiny model."""

from __future__ import annotations

import json

import pytest

from musicgen_lora.bench import memory
from musicgen_lora.plan.architecture import architecture_of
from musicgen_lora.plan.memory import raw_parts, settings_of

from ..conftest import ROOT


def test_the_gpu_path_refuses_a_machine_without_cuda_in_one_line(capsys, monkeypatch):
    monkeypatch.setattr(memory, "run_memory_cases", lambda *a, **k: pytest.fail("measured without a GPU"))
    if memory.torch_cuda_available():
        pytest.skip("this machine has a GPU: the path runs for real")
    with pytest.raises(SystemExit) as stop:
        memory.main(["--device", "cuda", "--out", "unused.json"])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and err[-1].startswith("error: --device cuda needs a CUDA GPU")


def test_gpu_cases_measure_torch_cuda_max_memory_allocated():
    cases = memory.memory_cases("cuda")
    assert len(cases) >= 8 and {c.device for c in cases} == {"cuda"} and {c.seconds for c in cases} >= {30.0}
    result = {"peak_allocated_bytes": 5, "peak_rss_process_bytes": 7}  # what run_case reports on a GPU
    assert memory.measured_bytes(result, "cuda") == 5 and memory.measured_bytes(result, "cpu") == 7
    config = memory.plan_config(cases[0])
    assert config["model_name_or_path"] == "facebook/musicgen-small" and "use_cpu" not in config


def test_the_fit_recovers_known_multipliers():
    """Records made by the formula with known multipliers: the least-squares fit finds them again."""
    truth = {"frozen_weights": 1.3, "activations": 0.8, "lora_dropout": 2.0, "residual_dropout": 3.0}

    def record(config: dict) -> dict:
        settings = settings_of(config, "cpu")
        raw = raw_parts(architecture_of(settings.model), settings, "cpu")
        return {"config": config, "device": "cpu", "measured_bytes": sum(v * truth.get(k, 1.0) for k, v in raw.items())}

    configs = [memory.plan_config(case) for case in memory.memory_cases("cpu")]
    configs += [{**configs[0], "lora_dropout": "0"}, {**configs[0], "decoder_dropout": "0"}]
    assert memory.fit_calibration([record(c) for c in configs], "cpu") == pytest.approx(truth, rel=1e-3)


def test_the_kept_measurements_name_their_source_and_machine():
    kept = json.loads((ROOT / "bench" / "memory_measurements.json").read_text())
    assert kept["machine"]["torch"].startswith("2.13")
    assert all(record["device"] == "cpu" and record.get("source") for record in kept["cases"])


@pytest.mark.slow
def test_the_cpu_path_measures_the_tiny_model_in_fresh_processes(tmp_path):
    out = tmp_path / "m.json"
    results = memory.run_memory_cases(memory.memory_cases("cpu", quick=True), "cpu", out)
    assert [r["name"] for r in json.loads(out.read_text())["cases"]] == ["tiny bf16", "tiny bf16 nf4"]
    for record in results["cases"]:
        assert record["error"] is None and 0.3 * 2**30 < record["measured_bytes"] < 3 * 2**30
    table = memory.format_pairs(results)
    assert table.count("| tiny bf16") == 2 and "%" in table


def test_models_dir_keeps_the_random_models_and_reuses_them(tmp_path, monkeypatch, capsys):
    built = []

    def save(architecture, folder):
        built.append(architecture)
        (folder / f"random-{architecture}").mkdir(parents=True)
        (folder / f"random-{architecture}" / "config.json").write_text("{}")
        return folder / f"random-{architecture}"

    ran = []
    monkeypatch.setattr(memory, "save_random_model", save)
    monkeypatch.setattr(memory, "run_case_in_subprocess", lambda case, timeout: ran.append(case.model_dir) or {})
    monkeypatch.setattr(memory, "format_pairs", lambda results: "")
    names = ["small fp32 int8 5 s", "medium fp32 nf4 checkpointing 5 s", "small fp32 nf4 5 s"]
    argv = ["--device", "cpu", "--only", *names, "--out", str(tmp_path / "m.json"), "--models_dir", str(tmp_path)]
    memory.main(argv)
    memory.main(argv)  # the second run builds nothing: both models are kept
    assert built == ["small", "medium"]
    assert ran == [str(tmp_path / f"random-{a}") for a in ["small", "medium", "small"] * 2]
    kept = json.loads((tmp_path / "m.json").read_text())["cases"]
    assert [r["name"] for r in kept] == names
