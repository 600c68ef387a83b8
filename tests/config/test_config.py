"""Config parsing: shipped configs validate, CLI overrides JSON, and every bad input gets a one-line fix."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from finetune_musicgen import main
from musicgen_lora.config.arguments import DEFAULT_LORA_TARGETS
from musicgen_lora.config.parsing import config_differences, parse_config
from musicgen_lora.demo.assets import DEMO_CONFIG
from musicgen_lora.errors import UserError

from ..conftest import ROOT, run_script

EXAMPLES = sorted((ROOT / "example_configs").glob("*.json"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_shipped_config_parses_and_validates(path):
    parsed = parse_config([str(path)])
    written = json.loads(path.read_text())
    assert parsed.model.model_name_or_path == written["model_name_or_path"]
    assert parsed.training.learning_rate == pytest.approx(written["learning_rate"])
    assert parsed.training.remove_unused_columns is False


def test_examples_exist():
    assert len(EXAMPLES) >= 3


def write_config(tmp_path: Path, values: dict) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(values))
    return str(path)


MINIMAL = {"model_name_or_path": "m", "dataset_name": "d", "output_dir": "o"}


def test_command_line_overrides_the_json_file(tmp_path):
    config = write_config(tmp_path, {**MINIMAL, "lora_r": 4, "learning_rate": 1e-4})
    parsed = parse_config([config, "--lora_r", "32", "--lora_target_modules", "q_proj", "v_proj"])
    assert parsed.lora.lora_r == 32
    assert parsed.lora.lora_target_modules == ["q_proj", "v_proj"]
    assert parsed.training.learning_rate == pytest.approx(1e-4)
    assert parse_config([config]).lora.lora_target_modules == DEFAULT_LORA_TARGETS


def test_demo_defaults_apply_only_to_an_empty_command_line(tmp_path):
    demo = parse_config([], defaults=DEMO_CONFIG)
    assert (
        demo.model.model_name_or_path == DEMO_CONFIG["model_name_or_path"] and demo.lora.lora_r == DEMO_CONFIG["lora_r"]
    )
    # any word means the user's own run: a missing option is an error, never the demo (whose overwrite_output_dir is
    # true) pointed at the user's output_dir
    with pytest.raises(UserError, match="model_name_or_path is not set"):
        parse_config(["--output_dir", str(tmp_path / "run"), "--max_steps", "2"], defaults=DEMO_CONFIG)
    own = parse_config(["--model-name-or-path", "m", "--dataset-name", "d", "--output-dir", "o"], defaults=DEMO_CONFIG)
    assert own.model.model_name_or_path == "m" and own.data.dataset_name == "d"  # hyphenated flags are the same
    assert own.lora.lora_r == 16 and own.training.sample_prompts == [] and not own.training.overwrite_output_dir


def test_the_config_file_is_found_anywhere_on_the_command_line(tmp_path):
    config = write_config(tmp_path, MINIMAL)
    upper = tmp_path / "run.JSON"
    upper.write_text(Path(config).read_text())
    no_suffix = tmp_path / "my-config"
    no_suffix.write_bytes(b"\xef\xbb\xbf" + Path(config).read_bytes())  # a byte-order mark, as Excel writes
    for argv in (
        ["--max_steps", "5", config],
        ["--lora_r", "4", str(upper), "--max_steps", "5"],
        [str(no_suffix), "--max_steps", "5"],
    ):
        parsed = parse_config(argv)
        assert parsed.model.model_name_or_path == MINIMAL["model_name_or_path"] and parsed.training.max_steps == 5
    assert parse_config(["--output_dir", "x.json", config]).training.output_dir == "x.json"  # a flag's value stays one


def test_requested_values_leave_out_tokens_and_hardware_adaptations(tmp_path):
    config = write_config(tmp_path, {**MINIMAL, "fp16": True, "hub_token": "hf_secret_value"})
    parsed = parse_config([config])
    assert parsed.requested["fp16"] is True  # what the user asked for, even where this CPU runs fp32
    assert "hub_token" not in parsed.requested and "use_cpu" not in parsed.requested
    assert "hf_secret_value" not in json.dumps(parsed.requested)


def run_main_expecting_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1
    message = err[-1]
    assert message.startswith("error: ") and "Traceback" not in message
    return message


@pytest.mark.parametrize(
    ("values", "extra", "expected"),
    [
        ({**MINIMAL, "learnig_rate": 1e-4}, [], "unknown option 'learnig_rate'.*did you mean 'learning_rate'"),
        ({**MINIMAL, "lora_r": "8"}, [], "'lora_r'.*must be of type int"),
        ({**MINIMAL, "use_lora": "yes"}, [], "'use_lora'.*must be of type bool"),
        ({**MINIMAL, "lora_target_modules": "q_proj"}, [], "'lora_target_modules'.*list"),
        ({**MINIMAL, "learning_rate": 0}, [], "learning_rate must be > 0"),
        ({**MINIMAL, "lora_r": 0}, [], "lora_r must be a positive integer"),
        ({**MINIMAL, "lora_dropout": 1.0}, [], r"lora_dropout must be in \[0, 1\)"),
        ({**MINIMAL, "min_duration_in_seconds": 20, "max_duration_in_seconds": 10}, [], "larger than max_duration"),
        ({**MINIMAL, "max_duration_in_seconds": 45}, [], r"max_duration_in_seconds must be in \(0, 30\]"),
        ({**MINIMAL}, ["--lora_rank", "8"], "unknown option '--lora_rank'.*did you mean 'lora_r'"),
        ({**MINIMAL}, ["--per_device_train_batch_size", "two"], "invalid int value: 'two'"),
        ({"dataset_name": "d", "output_dir": "o"}, [], "model_name_or_path is not set"),
        ({**MINIMAL, "remove_unused_columns": True}, [], "remove_unused_columns must be false"),
    ],
)
def test_bad_values_get_one_line_errors(tmp_path, capsys, values, extra, expected):
    import re

    message = run_main_expecting_error([write_config(tmp_path, values), *extra], capsys)
    assert re.search(expected, message), message


def test_missing_config_file(tmp_path, capsys):
    message = run_main_expecting_error([str(tmp_path / "nope.json")], capsys)
    assert "not found" in message and "nope.json" in message


def test_invalid_json_names_line_and_column(tmp_path, capsys):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "model_name_or_path": "m",\n  "lora_r": 8,\n}\n')
    message = run_main_expecting_error([str(path)], capsys)
    assert "not valid JSON" in message and "line 4" in message and "column 1" in message


def test_config_must_be_an_object(tmp_path, capsys):
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    assert "JSON object" in run_main_expecting_error([str(path)], capsys)


def test_real_script_prints_no_traceback_and_help_lists_options(tmp_path, capsys, monkeypatch):
    script = ROOT / "finetune_musicgen.py"
    config = write_config(tmp_path, {**MINIMAL, "lora_r": -1})
    assert run_script(monkeypatch, script, config) == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        "error: lora_r must be a positive integer, got -1; change 'lora_r' in the config file or with --lora_r"
    )
    with pytest.raises(UserError, match="lora_r must be a positive integer"):  # --debug: the error itself, traceback
        run_script(monkeypatch, script, config, "--debug")  # and all, reaches the interpreter
    assert run_script(monkeypatch, script, "--help") == 0
    helped = capsys.readouterr().out
    for option in (
        "--model_name_or_path",
        "--lora_target_modules",
        "--instance_prompt",
        "--gradient_accumulation_steps",
        "--text_column_name",
        "--sample_prompts",
    ):
        assert option in helped
    assert "LoRA rank" in helped  # help texts, not just names


def test_readme_documents_every_option():
    import dataclasses

    from musicgen_lora.config.arguments import DataArguments, LoraArguments, ModelArguments

    readme = (ROOT / "README.md").read_text()
    groups = (ModelArguments, DataArguments, LoraArguments)
    missing = [f.name for cls in groups for f in dataclasses.fields(cls) if f"`{f.name}`" not in readme]
    assert not missing, f"README does not document: {missing}"
    for path in EXAMPLES:
        assert path.name in readme


ESSENTIALS = ["--model_name_or_path", "m", "--dataset_name", "d", "--output_dir", "o"]


def test_list_options_written_as_json_lists_on_the_command_line_are_their_items(tmp_path):
    """W7 (2026-12-07): ``--sample_prompts '["lofi ♪"]'`` is the list a config file writes, not one literal prompt."""
    parsed = parse_config(
        ESSENTIALS + ["--sample_prompts", '["lofi ♪", "techno, 128 bpm"]', '--lora_target_modules=["q_proj"]']
    )
    assert parsed.training.sample_prompts == ["lofi ♪", "techno, 128 bpm"]
    assert parsed.lora.lora_target_modules == ["q_proj"]
    assert parsed.requested["sample_prompts"] == ["lofi ♪", "techno, 128 bpm"]  # as finetune_config.json saves it
    # words in brackets that are no JSON list stay a prompt
    assert parse_config(ESSENTIALS + ["--sample_prompts", "[drums] lofi [outro]"]).training.sample_prompts == [
        "[drums] lofi [outro]"
    ]


def test_the_order_of_lora_targets_is_not_another_config():
    """UC10 (2026-12-07): the same LoRA targets in another order adapt the same modules."""
    saved = {"lora_target_modules": ["q_proj", "v_proj"], "lora_r": 8}
    assert config_differences(saved, {"lora_target_modules": ["v_proj", "q_proj"], "lora_r": 8}) == []
    assert config_differences(saved, {"lora_target_modules": ["q_proj"], "lora_r": 8}) == [
        'lora_target_modules: ["q_proj", "v_proj"] -> ["q_proj"]'
    ]


def test_progress_bars_are_off_when_the_output_is_not_a_terminal_unless_asked_for(monkeypatch):
    """UC18 (2026-12-07): README: bars are hidden when the output is not a terminal; the Studio asks for them."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert parse_config(ESSENTIALS).training.disable_tqdm is True
    assert parse_config(ESSENTIALS + ["--disable_tqdm", "false"]).training.disable_tqdm is False
