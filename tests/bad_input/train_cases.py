"""Training's bad inputs (``python finetune_musicgen.py``): the config file, the command line, every number, the
output folder, the model and checkpoints. Each aims at a copy of an earlier finished run with overwrite_output_dir
true, which must come out of it byte-identical."""

from __future__ import annotations

import json
from typing import Any

from musicgen_lora.train.output_dir import run_lock

from .world import Case, World

TRAIN = "train"


def config_values(w: World, **overrides: Any) -> dict[str, Any]:
    """A complete, good config aimed at the earlier run (overrides win; None removes a key)."""
    values = {
        "model_name_or_path": str(w.model), "dataset_name": str(w.shared_corpus), "output_dir": str(w.run),
        "data_cache_dir": str(w.cache), "report_to": "none", "save_strategy": "no", "disable_tqdm": True, "seed": 0,
        "overwrite_output_dir": True, "max_steps": 1, "max_train_samples": 4, "per_device_train_batch_size": 4,
    }  # fmt: skip
    values.update(overrides)
    return {key: value for key, value in values.items() if value is not None}


def config(w: World, name: str = "config.json", **overrides: Any) -> str:
    """The path of a good config file (with ``overrides``) in the case's folder."""
    return str(w.write(name, json.dumps(config_values(w, **overrides), indent=1)))


def raw_config(w: World, text: str | bytes, name: str = "config.json") -> str:
    return str(w.write(name, text))


def good_config_text(w: World) -> str:
    return json.dumps(config_values(w), indent=1)


def flag(*words: str, **kwargs: Any) -> Any:
    """A case whose words are a quick training command line plus ``words``."""
    return lambda w: w.train(*words, **kwargs)


def _lock_held_by_a_live_process(w: World) -> list[str]:
    w.resources.enter_context(run_lock(w.run))  # held as a running training holds it, until the case ends
    return w.train()


def _damaged_checkpoint(w: World, how: str) -> str:
    """A copy of the earlier run's final weights as checkpoint-1 of the run, damaged ``how``."""
    checkpoint = w.run / "checkpoint-1"
    checkpoint.mkdir()
    weights = (w.run / "adapter_model.safetensors").read_bytes()
    (checkpoint / "adapter_config.json").write_bytes((w.run / "adapter_config.json").read_bytes())
    (checkpoint / "trainer_state.json").write_text("{}" if how != "state" else "{not json")
    (checkpoint / "adapter_model.safetensors").write_bytes(
        weights[: len(weights) // 2] if how == "weights" else weights
    )
    return str(checkpoint)


def _t5_folder(w: World) -> str:
    from transformers import T5Config

    T5Config(d_model=8, d_ff=8, num_layers=1, num_heads=1, d_kv=8, vocab_size=32).save_pretrained(w.path("t5"))
    return str(w.path("t5"))


def _corrupt_model(w: World) -> str:
    folder = w.path("broken-model")
    folder.mkdir()
    for item in w.model.iterdir():
        (folder / item.name).write_bytes(item.read_bytes())
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    return str(folder)


def _interrupt_during_preparation(w: World) -> list[str]:
    import musicgen_lora.train.run as run

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    w.monkeypatch.setattr(run, "load_datasets", interrupted)
    return w.train()


TRAIN_CASES: dict[str, Case] = {
    # ---------------------------------------------------------------- the config file
    "config missing": Case(TRAIN, lambda w: [str(w.path("missing.json"))], r"config file .*missing.json' not found"),
    "config not JSON (trailing comma)": Case(
        TRAIN, lambda w: [raw_config(w, good_config_text(w)[:-2] + ",\n}")], r"not valid JSON: .* at line \d+, column"
    ),
    "config is a JSON list": Case(TRAIN, lambda w: [raw_config(w, "[1, 2]")], r"must hold a JSON object .* not list"),
    "config empty file": Case(TRAIN, lambda w: [raw_config(w, "")], r"not valid JSON"),
    "config not UTF-8": Case(
        TRAIN,
        lambda w: [raw_config(w, good_config_text(w).replace('"seed"', '"s\xe9ed"').encode("latin-1"))],
        r"config file .* is not UTF-8 text \(byte 0xe9 at position \d+\); save it as UTF-8",
    ),
    "config with BOM read, its bad value named": Case(
        TRAIN,
        lambda w: [raw_config(w, "\ufeff" + json.dumps(config_values(w, lora_r=0)))],
        r"lora_r must be a positive integer, got 0",
    ),
    "config is a folder": Case(
        TRAIN,
        lambda w: [str(w.path("cfg.json").mkdir() or w.path("cfg.json"))],
        r"config file .*cfg.json.* (not found|folder)",
    ),
    "config found after the flags": Case(
        TRAIN,
        lambda w: ["--lora_r", "4", config(w, learning_rat=0.1)],
        r"unknown option 'learning_rat'.*'learning_rate'",
    ),
    "config .JSON in capitals": Case(
        TRAIN, lambda w: [config(w, "CONFIG.JSON", lora_dropout=2)], r"lora_dropout must be in \[0, 1\), got 2"
    ),
    "config recognised by its content": Case(
        TRAIN, lambda w: [config(w, "my-settings.cfg", lora_alpha=-1)], r"lora_alpha must be > 0, got -1"
    ),
    "unknown key": Case(
        TRAIN, lambda w: [config(w, learning_rat=0.1)], r"unknown option 'learning_rat'.*'learning_rate'"
    ),
    "foreign script's key we do not do": Case(TRAIN, lambda w: [config(w, lora_rank=8, lora_r=4)], r"lora_rank|lora_r"),
    "wrong type: text for int": Case(
        TRAIN, lambda w: [config(w, lora_r="eight")], r"'lora_r'.*must be of type int, got \"eight\""
    ),
    "wrong type: text for float": Case(
        TRAIN, lambda w: [config(w, learning_rate="fast")], r"'learning_rate'.*must be of type float, got \"fast\""
    ),
    "wrong type: float for int": Case(TRAIN, lambda w: [config(w, max_steps=1.5)], r"'max_steps'.*must be of type int"),
    "wrong type: text for bool": Case(TRAIN, lambda w: [config(w, strict="yes")], r"'strict'.*must be of type bool"),
    "wrong type: text for list": Case(
        TRAIN, lambda w: [config(w, lora_target_modules="q_proj")], r"'lora_target_modules'.*must be of type list"
    ),
    "wrong type: list of numbers": Case(
        TRAIN, lambda w: [config(w, sample_prompts=[1, 2])], r"'sample_prompts'.*must be of type list"
    ),
    "wrong type: object for text": Case(
        TRAIN, lambda w: [config(w, instance_prompt={"a": 1})], r"'instance_prompt'.*must be of type"
    ),
    "JSON NaN": Case(
        TRAIN,
        lambda w: [raw_config(w, good_config_text(w)[:-1] + ', "learning_rate": NaN}')],
        r"learning_rate must be a finite number, got nan",
    ),
    "JSON Infinity": Case(
        TRAIN,
        lambda w: [raw_config(w, good_config_text(w)[:-1] + ', "weight_decay": Infinity}')],
        r"weight_decay must be a finite number, got inf",
    ),
    "JSON 1e400": Case(
        TRAIN,
        lambda w: [raw_config(w, good_config_text(w)[:-1] + ', "max_grad_norm": 1e400}')],
        r"max_grad_norm must be a finite number, got inf",
    ),
    "JSON integer 10**30": Case(TRAIN, lambda w: [config(w, max_steps=10**30)], r"max_steps must be below 4294967296"),
    "huge lora_r": Case(TRAIN, lambda w: [config(w, lora_r=10**9)], r"lora_r must be at most 4096"),
    "huge batch size": Case(
        TRAIN, lambda w: [config(w, per_device_train_batch_size=10**19)], r"per_device_train_batch_size must be below"
    ),
    "dataset_name empty": Case(TRAIN, lambda w: [config(w, dataset_name="")], r"dataset_name is empty; set it"),
    "dataset_name blank": Case(TRAIN, lambda w: [config(w, dataset_name="   ")], r"dataset_name is empty; set it"),
    "dataset_name null": Case(TRAIN, lambda w: [config(w, dataset_name=None)], r"dataset_name is not set; set it"),
    "output_dir empty": Case(TRAIN, lambda w: [config(w, output_dir="")], r"output_dir is empty; set it"),
    "model_name_or_path empty": Case(
        TRAIN, lambda w: [config(w, model_name_or_path="")], r"model_name_or_path is empty; set it"
    ),
    "JSON true for resume, nothing to resume": Case(
        TRAIN,
        lambda w: [config(w, resume_from_checkpoint=True)],
        r"resume_from_checkpoint is true but .* holds no complete",
    ),
    "accelerator_config true": Case(
        TRAIN, lambda w: [config(w, accelerator_config=True)], r"invalid training options: .*; fix the option it names"
    ),
    "two config files": Case(
        TRAIN,
        lambda w: [config(w), config(w, "second.json")],
        r"two config files \(.*config.json' and .*second.json'\)",
    ),
    # ---------------------------------------------------------------- the command line
    "the demo, where its model folder holds other files": Case(
        TRAIN,
        lambda w: (w.write("demo_output/tiny-musicgen/notes.txt", "mine"), [])[1],
        r"the demo model folder 'demo_output/tiny-musicgen' holds files but no model .*; move it, or run the demo from",
    ),
    "the demo, where its corpus folder holds other files": Case(
        TRAIN,
        lambda w: (w.write("demo_output/corpus/clip_000.wav", "mine"), [])[1],
        r"the demo corpus folder 'demo_output/corpus' holds files but no metadata.jsonl",
    ),
    "flags only, no model (never the demo)": Case(
        TRAIN, lambda w: ["--learning_rate", "1e-4"], r"model_name_or_path is not set"
    ),
    "hyphenated flags only (never the demo)": Case(
        TRAIN, lambda w: ["--output-dir", str(w.run)], r"model_name_or_path is not set"
    ),
    "unknown flag with suggestion": Case(TRAIN, flag("--lora_rnak", "8"), r"unknown option '--lora_rnak'.*'lora_r'"),
    "foreign flag name": Case(TRAIN, flag("--lr", "1e-4"), r"unknown option '--lr'.*'learning_rate'"),
    "flag missing its value": Case(TRAIN, flag("--lora_r"), r"--lora_r.* expected one argument"),
    "int flag given text": Case(TRAIN, flag("--lora_r", "eight"), r"--lora_r.*invalid int value: 'eight'"),
    "bool flag given text": Case(TRAIN, flag("--strict", "maybe"), r"--strict.*(invalid|Truthy)"),
    "stray word": Case(TRAIN, flag("extra-word"), r"unknown option 'extra-word'"),
    # ---------------------------------------------------------------- numbers
    "learning_rate nan": Case(TRAIN, flag("--learning_rate", "nan"), r"learning_rate must be a finite number, got nan"),
    "learning_rate inf": Case(TRAIN, flag("--learning_rate", "inf"), r"learning_rate must be a finite number, got inf"),
    "learning_rate 1e999": Case(TRAIN, flag("--learning_rate", "1e999"), r"learning_rate must be a finite number"),
    "learning_rate 0": Case(TRAIN, flag("--learning_rate", "0"), r"learning_rate must be > 0"),
    "learning_rate negative": Case(TRAIN, flag("--learning_rate", "-0.0001"), r"learning_rate must be > 0"),
    "learning_rate -1e-4 (argparse reads a flag)": Case(
        TRAIN, flag("--learning_rate", "-1e-4"), r"--learning_rate.* expected one argument"
    ),
    "learning_rate 1e6: NaN loss, the earlier run back": Case(
        TRAIN,
        flag("--learning_rate", "1e6", "--max_steps", "3"),
        r"loss became NaN or infinite at step \d.* previous "
        r"run in .* is back in place",
    ),
    "weight_decay nan": Case(TRAIN, flag("--weight_decay", "nan"), r"weight_decay must be a finite number"),
    "max_grad_norm -inf": Case(TRAIN, flag("--max_grad_norm=-inf"), r"max_grad_norm must be a finite number"),
    "num_train_epochs 0": Case(
        TRAIN, flag("--max_steps", "-1", "--num_train_epochs", "0"), r"num_train_epochs must be > 0"
    ),
    "num_train_epochs -3": Case(
        TRAIN, flag("--max_steps", "-1", "--num_train_epochs", "-3"), r"num_train_epochs must be > 0"
    ),
    "num_train_epochs nan": Case(
        TRAIN, flag("--max_steps", "-1", "--num_train_epochs", "nan"), r"num_train_epochs must be a finite number"
    ),
    "max_steps 0": Case(TRAIN, flag("--max_steps", "0"), r"max_steps must be >= 1"),
    "max_steps -5": Case(TRAIN, flag("--max_steps", "-5"), r"max_steps must be >= 1"),
    "lora_r 0": Case(TRAIN, flag("--lora_r", "0"), r"lora_r must be a positive integer"),
    "lora_r -4": Case(TRAIN, flag("--lora_r", "-4"), r"lora_r must be a positive integer"),
    "lora_alpha 0": Case(TRAIN, flag("--lora_alpha", "0"), r"lora_alpha must be > 0"),
    "lora_dropout 1.5": Case(TRAIN, flag("--lora_dropout", "1.5"), r"lora_dropout must be in \[0, 1\)"),
    "lora_dropout -0.1": Case(TRAIN, flag("--lora_dropout", "-0.1"), r"lora_dropout must be in \[0, 1\)"),
    "decoder_dropout 1": Case(TRAIN, flag("--decoder_dropout", "1"), r"decoder_dropout must be in \[0, 1\)"),
    "batch size 0": Case(
        TRAIN, flag("--per_device_train_batch_size", "0"), r"per_device_train_batch_size must be >= 1"
    ),
    "gradient accumulation 0": Case(
        TRAIN, flag("--gradient_accumulation_steps", "0"), r"gradient_accumulation_steps must be >= 1"
    ),
    "max_duration 60 s": Case(TRAIN, flag("--max_duration_in_seconds", "60"), r"max_duration_in_seconds must be in"),
    "max_duration 0": Case(TRAIN, flag("--max_duration_in_seconds", "0"), r"max_duration_in_seconds must be in"),
    "min_duration > max": Case(
        TRAIN,
        flag("--min_duration_in_seconds", "20", "--max_duration_in_seconds", "10"),
        r"min_duration_in_seconds \(20.0\) is larger than max_duration_in_seconds",
    ),
    "min_duration negative": Case(
        TRAIN, flag("--min_duration_in_seconds", "-1"), r"min_duration_in_seconds must be >= 0"
    ),
    "text_dropout_prob 1": Case(TRAIN, flag("--text_dropout_prob", "1"), r"text_dropout_prob must be in \[0, 1\)"),
    "eval_split_percentage 150": Case(TRAIN, flag("--eval_split_percentage", "150"), r"eval_split_percentage must be"),
    "max_train_samples 0": Case(TRAIN, flag("--max_train_samples", "0"), r"max_train_samples must be >= 1"),
    "sample_duration 0": Case(
        TRAIN, flag("--sample_duration_in_seconds", "0"), r"sample_duration_in_seconds must be > 0"
    ),
    "sample_duration nan": Case(
        TRAIN, flag("--sample_duration_in_seconds", "nan"), r"sample_duration_in_seconds must be a finite number"
    ),
    "guidance_scale 0.5": Case(TRAIN, flag("--guidance_scale", "0.5"), r"guidance_scale must be >= 1"),
    "copy_threshold 2": Case(TRAIN, flag("--copy_threshold", "2"), r"copy_threshold must be between 0 and 1"),
    "loudness target +3 LUFS": Case(
        TRAIN, flag("--loudness_target_lufs", "3"), r"loudness_target_lufs must be between"
    ),
    "silence threshold +6 dB": Case(
        TRAIN, flag("--silence_threshold_db", "6"), r"silence_threshold_db must be below 0"
    ),
    "clap threshold 2": Case(TRAIN, flag("--clap_tag_threshold", "2"), r"clap_tag_threshold must be a probability"),
    "seed -1": Case(TRAIN, flag("--seed", "-1"), r"seed must be between 0 and 4294967295, got -1"),
    "seed 2**70": Case(TRAIN, flag("--seed", str(2**70)), r"seed must be below 4294967296"),
    "save_steps 0": Case(TRAIN, flag("--save_strategy", "steps", "--save_steps", "0"), r"save_steps must be > 0"),
    "logging_steps 0": Case(TRAIN, flag("--logging_steps", "0"), r"logging_steps must be > 0"),
    "eval_steps 0": Case(TRAIN, flag("--eval_strategy", "steps", "--eval_steps", "0"), r"eval_steps must be > 0"),
    "report_to unknown": Case(
        TRAIN, flag("--report_to", "nonsense"), r"report_to 'nonsense' is not a logging backend; use none"
    ),
    # ---------------------------------------------------------------- choices and names
    "tail_policy unknown": Case(TRAIN, flag("--tail_policy", "stretch"), r"tail_policy must be"),
    "base_model_dtype unknown": Case(TRAIN, flag("--base_model_dtype", "float8"), r"base_model_dtype must be one of"),
    "attn_implementation unknown": Case(
        TRAIN, flag("--attn_implementation", "flash9"), r"attn_implementation must be one of"
    ),
    "unknown LoRA target": Case(TRAIN, flag("--lora_target_modules", "q_proj", "qkv"), r"unknown LoRA target 'qkv'"),
    "LoRA regex invalid": Case(TRAIN, flag("--lora_target_regex", "(unclosed"), r"lora_target_regex is not a valid"),
    "LoRA regex matches nothing (after loading)": Case(
        TRAIN,
        flag("--lora_target_regex", ".*nothing"),
        r"LoRA targets match no module .* previous run .* back in place",
    ),
    "LoRA head index out of range": Case(
        TRAIN, flag("--lora_target_modules", "lm_heads.99"), r"LoRA targets match no module|lm_heads.99"
    ),
    "caption_template unknown field": Case(
        TRAIN,
        flag("--caption_template", "{text}"),
        r"caption_template '\{text\}' has an unknown field \{text\}; the fields are",
    ),
    "caption_template field needing add_metadata": Case(
        TRAIN, flag("--caption_template", "{caption}, {bpm} bpm"), r"caption_template names \{bpm\}.* add_metadata"
    ),
    "CLAP folder missing": Case(
        TRAIN,
        flag("--caption_template", "{caption}, {tags}", "--clap_model_name_or_path", "/no/clap"),
        r"not a local CLAP checkpoint folder",
    ),
    "empty CLAP label": Case(TRAIN, flag("--clap_genre_labels", "jazz", " "), r"clap_genre_labels holds an empty"),
    "push_metadata_repo_id not an id": Case(
        TRAIN, flag("--push_metadata_repo_id", "not an id!"), r"push_metadata_repo_id .* is not a Hub repository id"
    ),
    "base_model_id not an id": Case(TRAIN, flag("--base_model_id", "a b c"), r"base_model_id 'a b c' is not a Hub id"),
    "hub_model_id not an id": Case(
        TRAIN, flag("--push_to_hub", "true", "--hub_model_id", "x y"), r"hub_model_id 'x y' is not a Hub repository id"
    ),
    "push while offline": Case(
        TRAIN, flag("--push_to_hub", "true", "--hub_model_id", "me/x"), r"cannot push to the Hub: HF_HUB_OFFLINE is set"
    ),
    "demucs path missing": Case(
        TRAIN, flag("--demucs_model_path", "/no/demucs.th"), r"demucs_model_path .* is not a Demucs checkpoint"
    ),
    "streaming with add_metadata": Case(
        TRAIN,
        flag("--streaming", "true", "--add_metadata", "true"),
        r"streaming .* cannot be combined with add_metadata",
    ),
    "eval split and percentage": Case(
        TRAIN, flag("--eval_split_percentage", "10", "--eval_split_name", "test"), r"are both set; keep one of them"
    ),
    "remove_unused_columns true": Case(
        TRAIN, flag("--remove_unused_columns", "true"), r"remove_unused_columns must be false"
    ),
    # ---------------------------------------------------------------- output_dir and the cache
    "previous run, another config, neither overwrite nor resume": Case(
        TRAIN,
        flag("--overwrite_output_dir", "false"),
        r"holds a finished run with another config \(learning_rate: .*\); run the same config to continue it",
    ),
    "previous run without its config": Case(
        TRAIN,
        lambda w: ((w.run / "finetune_config.json").unlink(), w.train("--overwrite_output_dir", "false"))[1],
        r"holds a finished run without its finetune_config.json, so it cannot be told whether this is the same run",
    ),
    "previous run, its config damaged": Case(
        TRAIN,
        lambda w: (
            (w.run / "finetune_config.json").write_text('{"lora_r": 8,'),
            w.train("--overwrite_output_dir", "false"),
        )[1],
        r"holds a finished run whose finetune_config.json is not a readable JSON object, so it cannot be told",
    ),
    "previous run, its config a list": Case(
        TRAIN,
        lambda w: ((w.run / "finetune_config.json").write_text("[]"), w.train("--overwrite_output_dir", "false"))[1],
        r"holds a finished run whose finetune_config.json is not a readable JSON object",
    ),
    "output_dir is a file": Case(TRAIN, lambda w: w.train(out=w.write("a-file", "x")), r"output_dir .* is a file"),
    "output_dir under a file": Case(
        TRAIN, lambda w: w.train(out=w.write("a-file", "x") / "out"), r"output_dir .*a-file/out' is not writable"
    ),
    "output_dir flag empty": Case(TRAIN, flag("--output_dir", ""), r"output_dir is empty"),
    "output_dir is the data folder": Case(
        TRAIN, lambda w: w.train(data=w.corpus, out=w.corpus), r"output_dir .* and the training data .* overlap"
    ),
    "output_dir inside the data folder": Case(
        TRAIN,
        lambda w: w.train(data=w.corpus, out=w.corpus / "run"),
        r"overlap .* choose an output_dir outside the data folder",
    ),
    "data folder inside output_dir": Case(TRAIN, lambda w: w.train(data=w.run / "samples"), r"overlap"),
    ".txt-caption data folder as output_dir": Case(
        TRAIN, lambda w: w.train(data=w.songs("txt-songs", 2), out=w.path("txt-songs")), r"overlap"
    ),
    "README.md of someone else": Case(
        TRAIN,
        lambda w: w.train("--overwrite_output_dir", "false", out=w.write("theirs/README.md", "# Notes\n").parent),
        r"holds a README.md that musicgen-lora did not write",
    ),
    "README.md of someone else, overwrite": Case(
        TRAIN,
        lambda w: (w.run, w.write("run/README.md", "# My notes\n"), w.train())[2],
        r"holds a README.md that musicgen-lora did not write",
    ),
    "files a run writes but no run": Case(
        TRAIN,
        lambda w: w.train(out=w.write("theirs/adapter_config.json", "{}").parent),
        r"holds adapter_config.json, which a run writes, but no run of musicgen-lora",
    ),
    "two trainings into one output_dir": Case(
        TRAIN, _lock_held_by_a_live_process, r"another training run \(process \d+ on .*\) is writing to"
    ),
    "data_cache_dir is a file": Case(
        TRAIN, lambda w: w.train("--data_cache_dir", str(w.write("cache-file", "x"))), r"data_cache_dir .* is a file"
    ),
    "data_cache_dir under a file": Case(
        TRAIN,
        lambda w: w.train("--data_cache_dir", str(w.write("cache-file", "x") / "sub")),
        r"data_cache_dir .* is not writable",
    ),
    # ---------------------------------------------------------------- checkpoints and resuming
    "resume true, no checkpoint": Case(
        TRAIN, flag("--resume_from_checkpoint", "true"), r"holds no complete checkpoint"
    ),
    "resume from a missing folder": Case(
        TRAIN,
        flag("--resume_from_checkpoint", "/no/checkpoint-3"),
        r"resume_from_checkpoint '/no/checkpoint-3' not found",
    ),
    "resume from truncated weights": Case(
        TRAIN,
        lambda w: w.train("--resume_from_checkpoint", _damaged_checkpoint(w, "weights")),
        r"checkpoint .*checkpoint-1' is incomplete or damaged",
    ),
    "resume from a broken state file": Case(
        TRAIN,
        lambda w: w.train("--resume_from_checkpoint", _damaged_checkpoint(w, "state")),
        r"checkpoint .*checkpoint-1' is incomplete or damaged",
    ),
    "resume true, only a damaged checkpoint": Case(
        TRAIN,
        lambda w: (_damaged_checkpoint(w, "weights"), w.train("--resume_from_checkpoint", "true"))[1],
        r"holds no complete checkpoint",
    ),
    "resume an adapter of another base": Case(
        TRAIN,
        lambda w: w.train("--resume_from_checkpoint", str(w.other_checkpoint), "--max_steps", "2"),
        r"checkpoint .*checkpoint-1' was trained on another base model",
    ),
    # ---------------------------------------------------------------- the model
    "model folder missing": Case(
        TRAIN,
        flag("--model_name_or_path", "/no/such/model"),
        r"model folder '/no/such/model' not found; check the path",
    ),
    "model Hub id while offline": Case(
        TRAIN, flag("--model_name_or_path", "someone/musicgen-nothing"), r"cannot load model 'someone/musicgen-nothing'"
    ),
    "model is not MusicGen": Case(
        TRAIN, lambda w: w.train("--model_name_or_path", _t5_folder(w)), r"cannot load model .*give a MusicGen Hub id"
    ),
    "model weights corrupt": Case(
        TRAIN, lambda w: w.train("--model_name_or_path", _corrupt_model(w)), r"cannot load model"
    ),
    "model folder empty": Case(
        TRAIN, lambda w: w.train("--model_name_or_path", str(w.songs("empty-model", 0))), r"cannot load model"
    ),
    "melody options on a mono model": Case(
        TRAIN,
        flag("--conditional_audio_column_name", "melody"),
        r"conditional_audio_column_name is set but .* is not a melody model, so that melody audio would be ignored",
    ),
    # ---------------------------------------------------------------- Ctrl-C before training
    "Ctrl-C while preparing: the earlier run back": Case(
        TRAIN, _interrupt_during_preparation, r"interrupted; nothing finished was lost", code=130
    ),
}
