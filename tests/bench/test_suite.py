"""The benchmark suite runs end to end and fills its whole table (no timing is asserted: CI machines vary)."""

from __future__ import annotations

import json
import math

import pytest

from musicgen_lora.bench import cases, suite, table

pytestmark = pytest.mark.slow  # runs the benchmark suite's cases (real training steps)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    """--quick's plan (tiny model, every measurement) in one process, as CI can afford."""
    out = tmp_path_factory.mktemp("bench") / "results.json"
    results = suite.run_suite("smoke", "cpu", out)
    results["out"] = out
    return results


def test_every_measurement_is_in_the_table_and_finite(smoke):
    assert not [c for c in smoke["cases"] if "error" in c]
    rows = smoke["rows"]
    assert rows and all(math.isfinite(r["value"]) and r["value"] >= 0 for r in rows), [
        r for r in rows if not math.isfinite(r["value"])
    ]
    sections = {r["section"] for r in rows}
    assert {"peak", "speed", "overhead", "MFU", "memory", "lever", "padding", "preparation"} <= sections
    names = {c["case"]["name"] for c in smoke["cases"]}
    for case in smoke["cases"]:  # each case: its speed, memory and floor
        metrics = {r["metric"] for r in rows if r["config"] == case["case"]["name"]}
        assert {
            "step (Trainer, median of all)",
            "peak RSS, training steps",
            "floor (weights + adapter state + activations)",
        } <= metrics
    assert {"fp32", "bf16 autocast, fp32 base", "bf16 base", "bf16 base, checkpointing"} <= names
    mfu = [r for r in rows if r["section"] == "MFU"]
    assert len(mfu) >= 3 and all(0 < r["value"] for r in mfu)
    assert (
        len([r for r in rows if r["section"] == "preparation"]) == 3 + 3 + 2 + 1
    )  # 3 sizes, 3 reruns, 2 scalings, start-up
    levers = {r["config"] for r in rows if r["section"] == "lever"}
    assert any(label.startswith("cast frozen base") for label in levers) and any("SDPA" in label for label in levers)
    assert any(label.startswith("packed-bits LoRA dropout") for label in levers)
    assert any(label.startswith("decoder_dropout") for label in levers)
    assert all(c["peak_flops"] > 0 for c in smoke["cases"])  # each case measures the peak it is compared with


def test_the_table_and_json_agree(smoke):
    saved = json.loads(smoke["out"].read_text())
    assert saved["table"] == smoke["table"]
    assert len(saved["rows"]) == len(smoke["rows"])
    assert len(smoke["table"].splitlines()) == len(smoke["rows"]) + 3  # title, header, rule


def test_cast_base_case_really_trains_with_bf16_frozen_weights_and_fp32_adapters(smoke):
    cases = {c["case"]["name"]: c for c in smoke["cases"]}
    assert cases["bf16 base"]["weight_dtypes"] == ["bfloat16", "float32"]
    assert cases["bf16 autocast, fp32 base"]["weight_dtypes"] == ["float32"]
    assert cases["bf16 base"]["weight_bytes"] < cases["bf16 autocast, fp32 base"]["weight_bytes"]


def test_gpu_plan_runs_its_melody_case_code_on_the_cpu_and_its_table_builds(smoke, tmp_path):
    """No GPU here: the --device cuda plan's own code (melody chroma batches, FLOP count, table) runs on the tiny
    model."""
    plan = cases.cuda_cases("full")
    assert {(c.architecture, c.variant) for c in plan} == {("small", "mono"), ("medium", "mono"), ("medium", "melody")}
    assert all(c.batch_size == 2 and c.seconds == 30 and c.device == "cuda" for c in plan)
    melody = next(c for c in plan if c.variant == "melody" and c.checkpointing)
    tiny = cases.Case(
        **{
            **melody.__dict__,
            "architecture": "tiny",
            "seconds": 2.0,
            "steps": 1,
            "warmup": 1,
            "device": "cpu",
            "count_flops": True,
            "extras": True,
        }
    )
    result = cases.run_case(tiny, tmp_path)
    assert result["flops_per_step"] > 0 and result["trainer_step_s"] > 0 and result["bare_step_s"] > 0
    # the table of a GPU run: every case of the plan, GPU memory and the melody target row
    measured_cases = []
    for case in plan:
        measured = {**result, "case": case.__dict__, "peak_allocated_bytes": 5e9, "peak_reserved_bytes": 6e9}
        if not case.count_flops:
            measured.pop("flops_per_step")
        measured_cases.append(measured)
    gpu = {
        **smoke,
        "device": "cuda",
        "cases": measured_cases,
        "matmul_peak_flops": {"fp32": 5e13, "bf16": 9e14, "fp16": 9e14},
    }
    rows = table.rows_of(gpu)
    assert all(math.isfinite(r["value"]) for r in rows)
    melody_rows = [r for r in rows if r["config"] == melody.name and r["metric"] == "peak allocated"]
    assert melody_rows and melody_rows[0]["reached"] is True  # 5 GB < 6 GB
    assert len([r for r in rows if r["section"] == "MFU" and "TFLOP/s" in r["metric"]]) == len(plan)
    assert table.format_table(gpu, rows)
