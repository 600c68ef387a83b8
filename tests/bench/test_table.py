"""Tests of the benchmark's table on hand-made results: the full-speed rule, levers, targets and error rows."""

from __future__ import annotations

import math

from musicgen_lora.bench import measure, table

MACHINE = {"cpu": "test CPU", "threads": 2, "torch": "t", "transformers": "tf", "peft": "p"}


def case(name: str, step: float, **extra) -> dict:
    """A CPU case's result as run_case writes it (no FLOPs, no bare loop unless given)."""
    spec = {
        "name": name,
        "precision": "bf16",
        "variant": "mono",
        "checkpointing": False,
        "compile": False,
        "architecture": "small",
        "batch_size": 1,
        "seconds": 10.0,
        "reference_peak": 0.0,
    }
    spec.update(extra.pop("spec", {}))
    result = {
        "case": spec,
        "trainer_step_s": step,
        "trainer_steps_s": [step],
        "frames_per_step": 500,
        "peak_rss_training_bytes": 2 * table.GIB,
        "peak_rss_process_bytes": 2.5 * table.GIB,
        "memory_floor_bytes": table.GIB,
        "peak_flops": 1e12,
    }
    return {**result, **extra}


def results(*cases: dict, **more) -> dict:
    return {
        "device": "cpu",
        "quick": True,
        "scale": "smoke",
        "machine": MACHINE,
        "matmul_peak_flops": {"fp32": 5e11, "bf16": 1e12},
        "cases": list(cases),
        **more,
    }


def test_full_speed_steps_keep_only_pairs_whose_probes_were_both_fast():
    timings = {
        "trainer_steps_s": [1.0, 2.0, 3.0],
        "trainer_step_peaks": [10.0, 10.0, 5.0],
        "bare_steps_s": [0.9, 1.9, 2.9],
        "bare_step_peaks": [10.0, 7.0, 10.0],
    }
    assert measure.full_speed_steps(timings, best_peak=10.0) == ([1.0], [0.9])  # 7 and 5 < 0.8 x 10
    del timings["bare_steps_s"], timings["bare_step_peaks"]
    assert measure.full_speed_steps(timings, best_peak=10.0) == ([1.0, 2.0], [])


def test_levers_compare_the_two_cases_and_targets_are_checked():
    before = case("bf16 autocast, fp32 base", 2.0, spec={"checkpointing": False})
    after = case("bf16 base", 1.5, flops_per_step=3e12, bare_step_s=1.2, bare_steps_s=[1.2])
    rows = table.rows_of(results(before, after))
    lever = next(r for r in rows if r["config"].startswith("cast frozen base: step time"))
    assert lever["value"] == 1.5 / 2.0 and lever["metric"] == "2 s -> 1.5 s"
    assert before["trainer_full_speed_step_s"] == 2.0  # recorded for the levers
    mfu = next(r for r in rows if r["section"] == "MFU" and r["config"] == "bf16 base")
    assert math.isclose(mfu["value"], 3e12 / 1.5 / 1e12) and mfu["reached"] is True  # 200 % >= 70 %
    overhead = next(r for r in rows if r["section"] == "overhead")
    assert math.isclose(overhead["value"], 1.2 / 1.5) and overhead["reached"] is False  # 0.8 < 0.95
    # the FLOPs of a case of the same shape serve a case that did not count them
    assert next(r for r in rows if r["section"] == "MFU" and r["config"] == "bf16 autocast, fp32 base")


def test_failed_cases_and_parts_become_error_rows_and_the_table_lines_up():
    failed = {"case": {"name": "fp32", "precision": "fp32"}, "error": "exit 1: out of memory"}
    res = results(case("bf16 base", 1.0), failed, errors={"padding": "ValueError: boom"})
    rows = table.rows_of(res)
    errors = [(r["config"], r["metric"]) for r in rows if r["section"] == "error"]
    assert errors == [("fp32", "exit 1: out of memory"), ("padding", "ValueError: boom")]
    text = table.format_table(res, rows)
    lines = text.splitlines()
    assert len(lines) == len(rows) + 3 and "test CPU" in lines[0]
    assert lines[2].replace(" ", "").strip("-") == ""  # the rule under the header
    value_column = lines[1].index("value")
    assert all(line[value_column - 2 : value_column] == "  " for line in lines[3:])  # columns aligned
    assert table.format_value(math.nan, "s") == "nan" and table.format_value(0.256, "%") == "25.6 %"
