"""The other commands' bad inputs: generate, evaluate, push, plots, the tiny model and demo corpus builders, and the
studio's command line. Earlier outputs (generations, evaluations, model folders, corpora) must come out unchanged."""

from __future__ import annotations

import importlib
import json
import socket
from typing import Any

import torch

from .world import Case, World

GENERATE, EVALUATE, PUSH, PLOTS, TINY, SYNTH, STUDIO, BENCH, CONSOLE = (
    "generate",
    "evaluate",
    "push",
    "plots",
    "tiny",
    "synth",
    "studio",
    "bench",
    "musicgen-lora",
)
EARLIER = {"0.wav": b"RIFF earlier clip 0", "1.wav": b"RIFF earlier clip 1", "prompts.txt": "0\tearlier\n1\tolder\n",
           "generation_config.json": "{}"}  # fmt: skip


def generate(*words: str, adapter: bool = True) -> Any:
    """``generate`` with the earlier run as adapter (unless ``adapter`` is False), into the case's ``out/``."""

    def argv(w: World) -> list[str]:
        start = ["--adapter", str(w.run)] if adapter else ["--base_model", str(w.model)]
        return [*start, "--prompt", "lofi piano", "--duration", "0.1", "--out_dir", str(w.path("out")), *words]

    return argv


def _earlier_generations(w: World) -> None:
    for name, content in EARLIER.items():
        w.write(f"out/{name}", content)


def _over_earlier(*words: str, adapter: str | None = None) -> Any:
    """``generate`` into a folder of earlier generations."""

    def argv(w: World) -> list[str]:
        _earlier_generations(w)
        words_ = list(words)
        if adapter is not None:
            words_ = ["--adapter", adapter.format(tmp=w.tmp)] + words_
            return ["--base_model", str(w.model), *words_, "--prompt", "x", "--duration", "0.1", "--out_dir",
                    str(w.path("out"))]  # fmt: skip
        return generate(*words_)(w)

    return argv


def _interrupt(w: World, target: str) -> None:
    """Ctrl-C arrives while ``target`` (a module attribute, "module:name") runs."""

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    module, name = target.split(":")
    w.monkeypatch.setattr(importlib.import_module(module), name, interrupted)


def _broken_adapter(w: World, how: str) -> str:
    """A copy of the run's adapter files, damaged ``how``."""
    folder = w.path("adapter")
    folder.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (folder / name).write_bytes((w.run / name).read_bytes())
    if how == "weights":
        weights = folder / "adapter_model.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])
    elif how == "config":
        (folder / "adapter_config.json").write_text("{not json")
    return str(folder)


def evaluate(*words: str) -> Any:
    """``evaluate`` of the earlier run against the base, with a prompts file, into the case's ``eval/``."""

    def argv(w: World) -> list[str]:
        prompts = w.write("prompts.json", json.dumps(["lofi piano"]))
        return ["--base_model", str(w.model), "--model", f"final={w.run}", "--prompts", str(prompts), "--duration",
                "0.2", "--num_samples", "1", "--output_dir", str(w.path("eval")), "--skip_melody", *words]  # fmt: skip

    return argv


def _earlier_evaluation(w: World) -> None:
    """An earlier evaluation in ``eval/``, beside a file of the user's."""
    w.write("eval/metrics.json", json.dumps({"models": {"base": {}, "final": {}}}))
    for name in ("report.html", "comparison_results.jsonl", "base/0-0.wav", "final/0-0.wav", "final/0-0.png"):
        w.write(f"eval/{name}", "earlier")
    w.write("eval/my-notes.txt", "mine")


def prompts_file(content: str | bytes, name: str = "bad-prompts.json") -> Any:
    """``evaluate`` with ``content`` as its prompts file."""
    return lambda w: evaluate("--prompts", str(w.write(name, content)))(w)


def push(*words: str) -> Any:
    return lambda w: [str(w.run), "--repo_id", "me/musicgen-lora-test", *words]


def _online_without_token(w: World) -> list[str]:
    w.monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    w.monkeypatch.delenv("HF_TOKEN", raising=False)
    w.monkeypatch.setenv("HF_HOME", str(w.path("hf-home")))  # no saved login there
    w.monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    w.monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(w.path("hf-home/token")))
    return push()(w)


def plots_of(state: str | bytes) -> Any:
    """``plots`` of a copy of the earlier run whose trainer_state.json holds ``state``."""

    def argv(w: World) -> list[str]:
        (w.run / "trainer_state.json").write_bytes(state.encode() if isinstance(state, str) else state)
        return [str(w.run)]

    return argv


def _non_model_folder(w: World) -> str:
    w.write("mine/notes.txt", "my notes")
    return str(w.path("mine"))


def _busy_port(w: World) -> list[str]:
    taken = w.resources.enter_context(socket.socket())  # closed when the case ends
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    return ["--port", str(taken.getsockname()[1]), "--projects_dir", str(w.path("projects"))]


def _free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def studio(*words: str) -> Any:
    """The studio's command line on a free port (the page is never served: see test_bad_input's ``never_served``)."""

    def argv(w: World) -> list[str]:
        return ["--port", _free_port(), "--projects_dir", str(w.path("projects")), *words]

    return argv


GENERATE_CASES: dict[str, Case] = {
    "nothing to do": Case(GENERATE, lambda w: [], r"nothing to do; give --prompt TEXT"),
    "unknown flag": Case(GENERATE, generate("--outdir", "x"), r"unrecognized arguments: --outdir x; run .* --help"),
    "duration nan": Case(GENERATE, generate("--duration", "nan"), r"--duration: 'nan' is not a finite number"),
    "duration inf": Case(GENERATE, generate("--duration", "inf"), r"--duration: 'inf' is not a finite number"),
    "duration 0.00001": Case(GENERATE, generate("--duration", "0.00001"), r"--duration must be between 0.02 s"),
    "duration -1": Case(GENERATE, generate("--duration=-1"), r"--duration must be between"),
    "duration a year": Case(GENERATE, generate("--duration", "3e7"), r"--duration must be between .* 3600 s"),
    "duration text": Case(GENERATE, generate("--duration", "ten"), r"--duration: 'ten' is not a number"),
    "guidance nan": Case(GENERATE, generate("--guidance_scale", "nan"), r"--guidance_scale: 'nan' is not a finite"),
    "guidance 0.5": Case(GENERATE, generate("--guidance_scale", "0.5"), r"--guidance_scale must be >= 1"),
    "adapter_weights nan 1": Case(
        GENERATE,
        generate("--adapter", "x", "--adapter_weights", "nan", "1"),
        r"--adapter_weights: 'nan' is not a finite number",
    ),
    "adapter_weights count": Case(
        GENERATE, generate("--adapter_weights", "0.5", "0.5"), r"--adapter_weights has 2 value\(s\) for 1 adapter\(s\)"
    ),
    "batch_size 0": Case(GENERATE, generate("--batch_size", "0"), r"--batch_size must be >= 1"),
    "seed -1": Case(GENERATE, generate("--seed=-1"), r"--seed: -1 is not between 0 and 4294967295"),
    "seed 2**70": Case(GENERATE, generate("--seed", str(2**70)), r"--seed: \d+ is not between 0 and 4294967295"),
    "seed text": Case(GENERATE, generate("--seed", "random"), r"--seed: 'random' is not an integer"),
    "window 0": Case(GENERATE, generate("--window", "0"), r"--window"),
    "window 31": Case(GENERATE, generate("--window", "31"), r"--window"),
    "window nan": Case(GENERATE, generate("--window", "nan"), r"--window: 'nan' is not a finite number"),
    "overlap >= window": Case(GENERATE, generate("--window", "5", "--overlap", "5", "--duration", "12"), r"--overlap"),
    "overlap -1": Case(GENERATE, generate("--overlap=-1", "--duration", "40"), r"--overlap"),
    "empty prompt": Case(GENERATE, generate("--prompt", "  "), r"--prompt is empty"),
    "format ogg": Case(GENERATE, generate("--format", "ogg"), r"--format: invalid choice: 'ogg'"),
    "device cuda without a GPU": Case(GENERATE, generate("--device", "cuda"), r"--device cuda: this machine has no"),
    "device cuda:3": Case(GENERATE, generate("--device", "cuda:3"), r"--device cuda:3: this machine has no"),
    "device mps": Case(GENERATE, generate("--device", "mps"), r"--device mps: not available here"),
    "device xpu": Case(GENERATE, generate("--device", "xpu"), r"--device xpu: not available here"),
    "device banana": Case(GENERATE, generate("--device", "banana"), r"--device 'banana' is not a device"),
    "out_dir is a file": Case(
        GENERATE, lambda w: generate("--out_dir", str(w.write("f", "x")))(w), r"--out_dir .* is a file"
    ),
    "out_dir under a file": Case(
        GENERATE,
        lambda w: generate("--out_dir", str(w.write("f", "x") / "o"))(w),
        r"--out_dir .* (is not writable|is a file)",
    ),
    "earlier generations, no --overwrite": Case(
        GENERATE, _over_earlier(), r"holds earlier generations \(0.wav, 1.wav, generation_config.json\)"
    ),
    "--overwrite, but the adapter is missing": Case(
        GENERATE, _over_earlier("--overwrite", adapter="{tmp}/no-adapter"), r"cannot load adapter"
    ),
    "--overwrite, but the adapter is damaged": Case(
        GENERATE,
        lambda w: _over_earlier("--overwrite", adapter=_broken_adapter(w, "weights"))(w),
        r"cannot load adapter",
    ),
    "Ctrl-C while generating over earlier generations: they are back": Case(
        GENERATE,
        lambda w: (_interrupt(w, "musicgen_lora.generate.cli:generate_long"), _over_earlier("--overwrite")(w))[1],
        r"interrupted; nothing finished was lost",
        code=130,
    ),
    "merge into the adapter's own folder": Case(
        GENERATE, lambda w: ["--adapter", str(w.run), "--merge", str(w.run)], r"--merge folder .* is not empty"
    ),
    "merge into a file": Case(
        GENERATE,
        lambda w: ["--adapter", str(w.run), "--merge", str(w.write("f", "x"))],
        r"--merge '.*/f' is a file; give a new or empty folder",
    ),
    "merge without an adapter": Case(
        GENERATE,
        lambda w: ["--base_model", str(w.model), "--merge", str(w.path("m"))],
        r"--merge needs at least one --adapter",
    ),
    "adapter missing": Case(
        GENERATE,
        lambda w: ["--base_model", str(w.model), "--adapter", str(w.path("none")), "--prompt", "x"],
        r"cannot load adapter",
    ),
    "adapter weights truncated": Case(
        GENERATE,
        lambda w: ["--base_model", str(w.model), "--adapter", _broken_adapter(w, "weights"), "--prompt", "x"],
        r"cannot load adapter",
    ),
    "adapter config broken": Case(
        GENERATE,
        lambda w: ["--base_model", str(w.model), "--adapter", _broken_adapter(w, "config"), "--prompt", "x"],
        r"cannot load adapter",
    ),
    "adapter of another base": Case(
        GENERATE,
        lambda w: ["--base_model", str(w.model), "--adapter", str(w.other_checkpoint), "--prompt", "x"],
        r"cannot load adapter",
    ),
    "adapter without base, no --base_model": Case(
        GENERATE,
        lambda w: ["--adapter", str(w.songs("empty", 0)), "--prompt", "x"],
        r"cannot load adapter '.*empty': it holds no adapter_config.json",
    ),
    "base model missing": Case(
        GENERATE,
        lambda w: ["--base_model", str(w.path("none")), "--prompt", "x"],
        r"model folder '.*/none' not found; check the path, or give a MusicGen Hub id",
    ),
    "melody on a mono model": Case(
        GENERATE, lambda w: generate("--melody", str(w.wav("hum.wav")))(w), r"--melody needs a melody model"
    ),
    "blend unknown": Case(
        GENERATE,
        lambda w: generate("--adapter", str(w.run), "--blend", "average")(w),
        r"cannot blend the adapters with --blend average",
    ),
}

EVALUATE_CASES: dict[str, Case] = {
    "no arguments": Case(EVALUATE, lambda w: [], r"no base model; give --base_model"),
    "config missing": Case(EVALUATE, lambda w: ["--config", str(w.path("none.json"))], r"config file .* not found"),
    "config folder without its config": Case(
        EVALUATE, lambda w: ["--config", str(w.songs("empty", 0))], r"config file .*finetune_config.json' not found"
    ),
    "config not JSON": Case(EVALUATE, lambda w: ["--config", str(w.write("c.json", "{oops"))], r"not valid JSON"),
    "config hand-edited badly": Case(
        EVALUATE,
        lambda w: [
            "--config",
            str(
                w.write(
                    "c.json",
                    json.dumps(
                        {
                            "model_name_or_path": str(w.model),
                            "dataset_name": str(w.shared_corpus),
                            "output_dir": str(w.run),
                            "lora_r": "eight",
                            "sample_prompts": ["x"],
                        }
                    ),
                )
            ),
        ],
        r"'lora_r'.*must be of type int",
    ),
    "prompts missing": Case(EVALUATE, evaluate("--prompts", "/no/prompts.json"), r"prompts file .* not found"),
    "prompts not UTF-8": Case(EVALUATE, prompts_file('["caf\xe9"]'.encode("latin-1")), r"prompts file .* is not UTF-8"),
    "prompts not JSON": Case(EVALUATE, prompts_file('["a",]'), r"prompts file .* is not valid JSON"),
    "prompts an object without a list": Case(
        EVALUATE, prompts_file('{"x": 1}'), r"holds no list of prompts; write a JSON list"
    ),
    "prompts empty list": Case(EVALUATE, prompts_file("[]"), r"holds no prompts"),
    "prompts a number": Case(EVALUATE, prompts_file("[3]"), r"prompt 1 in .* is 3; each prompt must be"),
    "prompt text not a string": Case(EVALUATE, prompts_file('[{"text": 5}]'), r"prompt 1 in .* is \{\"text\": 5\}"),
    "prompt bpm text": Case(EVALUATE, prompts_file('[{"text": "a", "bpm": "fast"}]'), r"has bpm 'fast'"),
    "prompt bpm NaN": Case(EVALUATE, prompts_file('[{"text": "a", "bpm": NaN}]'), r"has bpm nan"),
    "prompt key a number": Case(EVALUATE, prompts_file('[{"text": "a", "key": 5}]'), r"has key 5"),
    "prompt key unknown": Case(EVALUATE, prompts_file('[{"text": "a", "key": "H major"}]'), r"has key 'H major'"),
    "prompts .txt empty": Case(EVALUATE, prompts_file("\n \n", "p.txt"), r"holds no prompts"),
    "prompts with BOM read, item 2 named": Case(EVALUATE, prompts_file('\ufeff["a", 2]'), r"prompt 2 in .* is 2"),
    "duration nan": Case(EVALUATE, evaluate("--duration", "nan"), r"--duration: 'nan' is not a finite number"),
    "duration 0": Case(EVALUATE, evaluate("--duration", "0"), r"--duration must be in \(0, 30\]"),
    "duration 31": Case(EVALUATE, evaluate("--duration", "31"), r"--duration must be in \(0, 30\]"),
    "num_samples 0": Case(EVALUATE, evaluate("--num_samples", "0"), r"--num_samples must be >= 1"),
    "batch_size 0": Case(EVALUATE, evaluate("--batch_size", "0"), r"--batch_size must be >= 1"),
    "max_eval_samples 0": Case(EVALUATE, evaluate("--max_eval_samples", "0"), r"--max_eval_samples must be >= 1"),
    "copy_threshold 2": Case(EVALUATE, evaluate("--copy_threshold", "2"), r"--copy_threshold must be between 0 and 1"),
    "melody_threshold inf": Case(EVALUATE, evaluate("--melody_threshold", "inf"), r"'inf' is not a finite number"),
    "guidance 0.5": Case(EVALUATE, evaluate("--guidance_scale", "0.5"), r"--guidance_scale must be >= 1"),
    "window 0": Case(EVALUATE, evaluate("--max_duration_in_seconds", "0"), r"--max_duration_in_seconds must be in"),
    "seed -1": Case(EVALUATE, evaluate("--seed=-1"), r"--seed: -1 is not between 0"),
    "model without =": Case(EVALUATE, evaluate("--model", "final"), r"--model 'final' must be NAME=DIR"),
    "model name not allowed": Case(
        EVALUATE, lambda w: evaluate("--model", f"a b={w.run}")(w), r"model name 'a b' is not allowed"
    ),
    "model named base": Case(EVALUATE, lambda w: evaluate("--model", f"base={w.run}")(w), r"model name 'base'"),
    "model name twice": Case(
        EVALUATE, lambda w: evaluate("--model", f"final={w.run}")(w), r"model name\(s\) final given twice"
    ),
    "model folder missing": Case(EVALUATE, evaluate("--model", "x=/no/run"), r"model 'x': folder '/no/run' not found"),
    "model folder holds nothing": Case(
        EVALUATE, lambda w: evaluate("--model", f"x={w.songs('e', 0)}")(w), r"holds no adapter .* or model"
    ),
    "output_dir is a file": Case(
        EVALUATE, lambda w: evaluate("--output_dir", str(w.write("f", "x")))(w), r"--output_dir .* is a file"
    ),
    "earlier evaluation, no --overwrite": Case(
        EVALUATE,
        lambda w: (w.write("eval/metrics.json", "{}"), w.write("eval/report.html", "<p>"), evaluate()(w))[2],
        r"holds an earlier evaluation \(metrics.json, report.html\)",
    ),
    "--overwrite, but the eval data is broken": Case(
        EVALUATE,
        lambda w: (
            _earlier_evaluation(w),
            evaluate("--overwrite", "--eval_dataset", str(w.songs(metadata='{"file_name": 3, "text": "x"}\n')))(w),
        )[1],
        r"line 1: 'file_name' is 3",
    ),
    "Ctrl-C while evaluating over an earlier evaluation: it is back": Case(
        EVALUATE,
        lambda w: (
            _earlier_evaluation(w),
            _interrupt(w, "musicgen_lora.evaluate.cli:run_evaluation"),
            evaluate("--overwrite")(w),
        )[2],
        r"interrupted; nothing finished was lost",
        code=130,
    ),
    "no output_dir": Case(
        EVALUATE,
        lambda w: ["--base_model", str(w.model), "--prompts", str(w.write("p.txt", "lofi"))],
        r"no --output_dir",
    ),
    "device cuda": Case(EVALUATE, evaluate("--device", "cuda"), r"--device cuda: this machine has no"),
    "eval datasets named twice": Case(
        EVALUATE,
        lambda w: evaluate("--eval_dataset", f"a={w.shared_corpus}", "--eval_dataset", f"a={w.shared_corpus}")(w),
        r"evaluation dataset names .* repeat",
    ),
    "eval dataset metadata broken": Case(
        EVALUATE,
        lambda w: evaluate("--eval_dataset", str(w.songs(metadata='{"file_name": "a.wav", "text": ["x"]}\n')))(w),
        r"the caption is \[\"x\"\], not text",
    ),
    "unknown flag": Case(EVALUATE, evaluate("--lora_r", "4"), r"unrecognized arguments: --lora_r 4"),
    "abbreviated flag": Case(EVALUATE, evaluate("--dur", "4"), r"unrecognized arguments: --dur 4"),
}

PUSH_CASES: dict[str, Case] = {
    "no arguments": Case(PUSH, lambda w: [], r"the following arguments are required: OUTPUT_DIR, --repo_id"),
    "no repo_id": Case(PUSH, lambda w: [str(w.run)], r"required: --repo_id"),
    "folder missing": Case(PUSH, lambda w: [str(w.path("none")), "--repo_id", "me/x"], r"'.*none' not found"),
    "folder without a run": Case(PUSH, lambda w: [str(w.songs("e", 0)), "--repo_id", "me/x"], r"holds no adapter"),
    "repo_id not an id": Case(PUSH, lambda w: [str(w.run), "--repo_id", "not an id"], r"is not a Hub repository id"),
    "attempts 0": Case(PUSH, push("--attempts", "0"), r"--attempts: invalid choice: 0"),
    "attempts text": Case(PUSH, push("--attempts", "many"), r"--attempts: invalid int value: 'many'"),
    "offline": Case(PUSH, push(), r"cannot push to the Hub: HF_HUB_OFFLINE is set"),
    "online without a token": Case(PUSH, _online_without_token, r"pushing to the Hub needs a token"),
}

PLOTS_CASES: dict[str, Case] = {
    "no arguments": Case(PLOTS, lambda w: [], r"the following arguments are required: OUTPUT_DIR"),
    "folder without a run": Case(PLOTS, lambda w: [str(w.songs("e", 0))], r"trainer_state.json' not found"),
    "state not JSON": Case(PLOTS, plots_of("{oops"), r"holds no log history \(damaged\?\)"),
    "state not UTF-8": Case(PLOTS, plots_of(b'{"log_history": ["\xe9"]}'), r"holds no log history|UTF-8"),
    "history not a list": Case(PLOTS, plots_of('{"log_history": {"loss": 1}}'), r"holds no log history"),
    "history of strings": Case(PLOTS, plots_of('{"log_history": ["loss", "x"]}'), r"no loss was logged"),
    "history with text losses": Case(
        PLOTS, plots_of('{"log_history": [{"step": 1, "loss": "high"}]}'), r"no loss was logged"
    ),
    "history with a null step": Case(
        PLOTS, plots_of('{"log_history": [{"step": null, "loss": 1.0}]}'), r"no loss was logged"
    ),
    "history with NaN losses and odd keys": Case(
        PLOTS,
        plots_of('{"log_history": [{"step": 1, "loss": NaN, "ce_qx": 1}, {"step": true, "loss": 2}]}'),
        r"no loss was logged",
    ),
    "unknown flag": Case(PLOTS, lambda w: [str(w.run), "--dpi", "300"], r"unrecognized arguments: --dpi 300"),
}

TINY_CASES: dict[str, Case] = {
    "no arguments": Case(TINY, lambda w: [], r"the following arguments are required: OUT_DIR"),
    "unknown variant": Case(TINY, lambda w: [str(w.path("m")), "--variant", "large"], r"invalid choice: 'large'"),
    "seed text": Case(TINY, lambda w: [str(w.path("m")), "--seed", "x"], r"--seed: invalid int value: 'x'"),
    "out_dir is a file": Case(TINY, lambda w: [str(w.write("f", "x"))], r"exists and is not a model folder"),
    "out_dir under a file": Case(TINY, lambda w: [str(w.write("f", "x") / "m")], r"OUT_DIR's folder .* is a file"),
    "out_dir holds other files": Case(TINY, lambda w: [_non_model_folder(w)], r"exists and is not a model folder"),
    "--force on a folder of other files": Case(
        TINY, lambda w: [_non_model_folder(w), "--force"], r"exists and is not a model folder"
    ),
    "out_dir holds another variant": Case(
        TINY, lambda w: [str(w.model), "--variant", "stereo"], r"holds a tiny MusicGen of variant 'mono', not 'stereo'"
    ),
}

SYNTH_CASES: dict[str, Case] = {
    "no arguments": Case(SYNTH, lambda w: [], r"the following arguments are required: out_dir"),
    "clips 0": Case(SYNTH, lambda w: [str(w.path("c")), "--clips", "0"], r"clips must be >= 1"),
    "clips text": Case(SYNTH, lambda w: [str(w.path("c")), "--clips", "many"], r"invalid int value: 'many'"),
    "seconds nan": Case(SYNTH, lambda w: [str(w.path("c")), "--seconds", "nan"], r"seconds"),
    "seconds inf": Case(SYNTH, lambda w: [str(w.path("c")), "--seconds", "inf"], r"seconds"),
    "seconds 0": Case(SYNTH, lambda w: [str(w.path("c")), "--seconds", "0"], r"seconds"),
    "seconds a day": Case(SYNTH, lambda w: [str(w.path("c")), "--seconds", "86400"], r"seconds"),
    "sample_rate 0": Case(SYNTH, lambda w: [str(w.path("c")), "--sample_rate", "0"], r"sample_rate|sample rate"),
    "seed -1": Case(SYNTH, lambda w: [str(w.path("c")), "--seed=-1"], r"seed must be >= 0"),
    "unknown genre": Case(SYNTH, lambda w: [str(w.path("c")), "--genres", "polka"], r"polka"),
    "no genre": Case(SYNTH, lambda w: [str(w.path("c")), "--genres", " , "], r"genres must name at least one"),
    "out_dir is a file": Case(SYNTH, lambda w: [str(w.write("f", "x"))], r"out_dir .*/f' is a file, not a folder"),
    "out_dir holds someone's metadata": Case(
        SYNTH,
        lambda w: [str(w.write("mine/metadata.jsonl", "{}\n").parent)],
        r"already holds metadata.jsonl, which a corpus writes; .* --overwrite",
    ),
    "out_dir holds someone's clip_000.wav": Case(
        SYNTH, lambda w: [str(w.wav("mine/clip_000.wav").parent)], r"already holds clip_000.wav"
    ),
    "out_dir under a file": Case(
        SYNTH, lambda w: [str(w.write("f", "x") / "c")], r"cannot write to .* choose a folder"
    ),
}

STUDIO_CASES: dict[str, Case] = {
    "unknown flag": Case(STUDIO, studio("--colour", "blue"), r"unrecognized arguments: --colour blue"),
    "port text": Case(STUDIO, lambda w: ["--port", "http"], r"--port: invalid int value: 'http'"),
    "port 0": Case(STUDIO, lambda w: ["--port", "0"], r"--port must be between 1 and 65535, got 0"),
    "port 70000": Case(STUDIO, lambda w: ["--port", "70000"], r"--port must be between 1 and 65535"),
    "busy port": Case(STUDIO, _busy_port, r"port \d+ on 127.0.0.1 is busy"),
    "host not an address": Case(STUDIO, lambda w: ["--host", "999.1.1.1", "--port", _free_port()], r"cannot serve on"),
    "projects_dir is a file": Case(
        STUDIO, lambda w: studio()(w)[:2] + ["--projects_dir", str(w.write("f", "x"))], r"--projects_dir .* is a file"
    ),
    "projects_dir under a file": Case(
        STUDIO,
        lambda w: studio()(w)[:2] + ["--projects_dir", str(w.write("f", "x") / "p")],
        r"--projects_dir .* is not writable",
    ),
    "project name escapes": Case(STUDIO, studio("--project", "../elsewhere"), r"project name '../elsewhere' is not"),
    "project name with spaces": Case(STUDIO, studio("--project", "my songs"), r"project name 'my songs' is not"),
}

BENCH_CASES: dict[str, Case] = {
    "unknown flag": Case(BENCH, lambda w: ["--fast"], r"unrecognized arguments: --fast; run .* --help"),
    "device not a choice": Case(BENCH, lambda w: ["--device", "tpu"], r"--device: invalid choice: 'tpu'"),
    "out a folder": Case(BENCH, lambda w: ["--quick", "--out", str(w.path("."))], r"--out .* is a folder; give a file"),
    "out under a file": Case(
        BENCH, lambda w: ["--quick", "--out", str(w.write("f", "x") / "r.json")], r"--out's folder .* is a file"
    ),
    **(
        {}
        if torch.cuda.is_available()  # there it would run the whole suite
        else {"cuda without a GPU": Case(BENCH, lambda w: ["--device", "cuda"], r"--device cuda needs a CUDA GPU")}
    ),
}

# The console script: each subcommand is the command it names (a sample of each, and its own errors).
CONSOLE_CASES: dict[str, Case] = {
    "no command": Case(CONSOLE, lambda w: [], r"no command given; choose one of train, prepare, generate"),
    "unknown command": Case(CONSOLE, lambda w: ["trian", "x.json"], r"unknown command 'trian'; choose one of train"),
    "flag before the command": Case(CONSOLE, lambda w: ["--quiet", "train"], r"unknown command '--quiet'"),
    "demo with options": Case(CONSOLE, lambda w: ["demo", "--max_steps", "1"], r"demo takes no options"),
    "train: config missing": Case(
        CONSOLE, lambda w: ["train", str(w.path("missing.json"))], r"config file .*missing.json' not found"
    ),
    "prepare: unknown flag": Case(CONSOLE, lambda w: ["prepare", "--colour", "1"], r"unknown option '--colour'"),
    "generate: duration nan": Case(
        CONSOLE, lambda w: ["generate", *generate("--duration", "nan")(w)], r"--duration: 'nan' is not a finite"
    ),
    "evaluate: no models": Case(CONSOLE, lambda w: ["evaluate"], r"(required|--base_model|--model|--config)"),
    "push: no run": Case(CONSOLE, lambda w: ["push"], r"(required|OUTPUT_DIR|output_dir)"),
    "bench: unknown flag": Case(CONSOLE, lambda w: ["bench", "--fast"], r"unrecognized arguments: --fast"),
    "studio: busy port": Case(CONSOLE, lambda w: ["studio", *_busy_port(w)], r"port \d+ on 127.0.0.1 is busy"),
}

TOOL_CASES = (
    GENERATE_CASES, EVALUATE_CASES, PUSH_CASES, PLOTS_CASES, TINY_CASES, SYNTH_CASES, STUDIO_CASES, BENCH_CASES,
    CONSOLE_CASES,
)  # fmt: skip
