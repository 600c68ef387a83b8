"""Options whose optional package (or login) is missing: each is refused before data preparation and model loading,
with one line naming the install or login command (musicgen_lora/config/dependencies.py). A missing package is
faked by import-hiding (a ``sys.modules`` entry of None, which ``importlib.util.find_spec`` and ``import`` both
take for "not installed"), so the cases hold whether or not the package is installed here."""

from __future__ import annotations

import json
import sys
from typing import Any

from .world import Case, World

TRAIN = "train"


def hiding(*modules: str, words: tuple[str, ...] = (), setup: Any = None) -> Any:
    """A training case with ``modules`` hidden (as if not installed) and ``words`` on the command line."""

    def argv(w: World) -> list[str]:
        for module in modules:
            w.monkeypatch.setitem(sys.modules, module, None)
        extra = setup(w) if setup is not None else []
        return w.train(*words, *extra)

    return argv


def _no_wandb_login(w: World) -> list[str]:
    """No credentials anywhere wandb looks: environment, ~/.netrc, its settings file."""
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL"):
        w.monkeypatch.delenv(name, raising=False)
    w.monkeypatch.setenv("HOME", str(w.path("home")))
    w.monkeypatch.setenv("NETRC", str(w.path("home/.netrc")))
    w.monkeypatch.setenv("WANDB_CONFIG_DIR", str(w.path("home/.config/wandb")))
    return []


def _deepspeed_config(w: World) -> list[str]:
    config = {"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": "auto"}
    return ["--deepspeed", str(w.write("ds.json", json.dumps(config)))]


def _demucs_checkpoint(w: World) -> list[str]:
    return ["--demucs_model_path", str(w.write("htdemucs.th", b"not read: demucs is missing"))]


DEPENDENCY_CASES: dict[str, Case] = {
    "quantize_base nf4 without bitsandbytes": Case(
        TRAIN, hiding("bitsandbytes", words=("--quantize_base", "nf4")),
        r"quantize_base 'nf4' needs the bitsandbytes package.*`pip install bitsandbytes",
    ),
    "quantize_base int8 without bitsandbytes": Case(
        TRAIN, hiding("bitsandbytes", words=("--quantize_base", "int8")), r"quantize_base 'int8' needs the bitsandbyt",
    ),
    "8-bit AdamW without bitsandbytes": Case(
        TRAIN, hiding("bitsandbytes", words=("--optim", "adamw_bnb_8bit")),
        r"optim 'adamw_bnb_8bit' needs the bitsandbytes package.*pip install bitsandbytes",
    ),
    "paged AdamW without bitsandbytes": Case(
        TRAIN, hiding("bitsandbytes", words=("--optim", "paged_adamw_8bit")), r"optim 'paged_adamw_8bit' needs the",
    ),
    "report_to wandb without a login": Case(
        TRAIN, hiding(words=("--report_to", "wandb"), setup=_no_wandb_login),
        r"report_to wandb needs a wandb login.*`wandb login`.*WANDB_MODE=offline",
    ),
    "report_to wandb without wandb": Case(
        TRAIN, hiding("wandb", words=("--report_to", "wandb")), r"report_to wandb needs the wandb package.*pip install",
    ),
    "report_to tensorboard without tensorboard": Case(
        TRAIN, hiding("tensorboard", "tensorboardX", words=("--report_to", "tensorboard")),
        r"report_to tensorboard needs the tensorboard package.*pip install tensorboard",
    ),
    "report_to trackio without trackio": Case(
        TRAIN, hiding("trackio", words=("--report_to", "trackio")), r"report_to trackio needs the trackio.*pip install",
    ),
    "deepspeed without deepspeed": Case(
        TRAIN, hiding("deepspeed", setup=_deepspeed_config), r"deepspeed needs the deepspeed package.*`pip install",
    ),
    "demucs_model_path without demucs": Case(
        TRAIN, hiding("demucs", "demucs.apply", setup=_demucs_checkpoint),
        r"demucs_model_path needs the demucs package.*pip install demucs==4\.1\.0",
    ),
    "CLAP tags without a CLAP checkpoint": Case(
        TRAIN, hiding(words=("--caption_template", "{caption}, {genre}", "--clap_model_name_or_path", "clap")),
        r"clap_model_name_or_path 'clap' is not a local CLAP checkpoint.*hf download laion/clap-htsat-unfused",
    ),
}  # fmt: skip
