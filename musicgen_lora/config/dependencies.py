"""Every optional package (and login) that an option needs, checked before data preparation and model loading: one
line naming the install or login command, exit status 2, instead of a traceback minutes later.

Two checks, one table: :func:`check_installed` (packages: run by ``parse_config`` before ``TrainingArguments`` exists,
whose own checks would word a missing deepspeed as "No package metadata was found ... fix the option it names") and
:func:`check_logins` (a wandb account: run by training only, since ``prepare`` and ``evaluate --config`` read the same
config but report nowhere). Packages are looked up with ``importlib.util.find_spec`` (nothing heavy is imported);
bitsandbytes is imported, as an installed but unusable build (no backend for this machine) must be refused too.
"""

from __future__ import annotations

import importlib
import importlib.util
import netrc
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..errors import UserError, one_line

QUANT_INSTALL = "pip install bitsandbytes>=0.45 (or: pip install .[quant])"


@dataclass(frozen=True)
class Package:
    """An optional package: the import names that provide it (any one is enough) and the command that installs it."""

    modules: tuple[str, ...]
    install: str


BITSANDBYTES = Package(("bitsandbytes",), QUANT_INSTALL)
DEEPSPEED = Package(("deepspeed",), "pip install deepspeed")
DEMUCS = Package(("demucs",), "pip install demucs==4.1.0 (or: pip install .[demucs])")

# report_to backends -> the package transformers' callback imports (transformers' integration_utils availability checks)
REPORTERS = {
    "wandb": Package(("wandb",), "pip install wandb"),
    "tensorboard": Package(("tensorboard", "tensorboardX"), "pip install tensorboard (or: pip install .[trackers])"),
    "trackio": Package(("trackio",), "pip install trackio"),
    "mlflow": Package(("mlflow",), "pip install mlflow"),
    "comet_ml": Package(("comet_ml",), "pip install comet_ml"),
    "clearml": Package(("clearml",), "pip install clearml"),
    "neptune": Package(("neptune",), "pip install neptune"),
    "dvclive": Package(("dvclive",), "pip install dvclive"),
    "swanlab": Package(("swanlab",), "pip install swanlab"),
    "codecarbon": Package(("codecarbon",), "pip install codecarbon"),
    "dagshub": Package(("dagshub",), "pip install dagshub"),
    "flyte": Package(("flytekit",), "pip install flytekit"),
    "azure_ml": Package(("azureml",), "pip install azureml-core"),
}

# Trainer ``optim`` names implemented by another package (transformers 5.x ``OptimizerNames``), by name prefix/part.
_TORCHAO_OPTIMIZERS = ("adamw_torch_4bit", "adamw_torch_8bit")
_OPTIMIZER_PACKAGES = (
    (("galore_",), Package(("galore_torch",), "pip install galore-torch")),
    (("apollo_",), Package(("apollo_torch",), "pip install apollo-torch")),
    (("lomo", "adalomo"), Package(("lomo_optim",), "pip install lomo-optim")),
    (("grokadamw",), Package(("grokadamw",), "pip install grokadamw")),
    (("schedule_free_",), Package(("schedulefree",), "pip install schedulefree")),
    (("stable_adamw",), Package(("optimi",), "pip install torch-optimi")),
)


def bitsandbytes_optimizer(optim: str) -> bool:
    """Whether Trainer's ``optim`` is one of bitsandbytes' (8-bit, paged, Lion, AdEMAMix, bnb RMSprop)."""
    if optim in _TORCHAO_OPTIMIZERS or optim.startswith(("galore_", "apollo_")):
        return False
    return any(part in optim for part in ("bnb", "8bit", "32bit", "paged_", "lion", "ademamix"))


def is_installed(package: Package) -> bool:
    """Whether one of the package's modules can be found (a ``sys.modules`` entry of None counts as missing)."""
    for module in package.modules:
        try:
            if importlib.util.find_spec(module) is not None:
                return True
        except (ImportError, ValueError):  # a parent package missing, or a module without a spec
            continue
    return False


def _missing(option: str, package: Package, detail: str = "") -> UserError:
    name = package.modules[0]
    return UserError(
        f"{option} needs the {name} package, which is not installed{detail}; install it with `{package.install}`, "
        "or change the option"
    )


def require(option: str, package: Package) -> None:
    """Raises UserError naming ``option`` and the install command when ``package`` is missing."""
    if not is_installed(package):
        raise _missing(option, package)


def require_importable(option: str, package: Package, module: str | None = None) -> None:
    """``package`` installed and its ``module`` (default: its first) importable: a build that cannot run here (no
    bitsandbytes backend for this machine, a demucs missing its own dependencies) fails on import.

    Raises:
        UserError: naming ``option`` and the install command.
    """
    require(option, package)
    try:  # optional and heavy: imported only when an option needs it
        importlib.import_module(module or package.modules[0])
    except Exception as err:  # noqa: BLE001 - any failure of the import means it cannot run here
        raise _missing(option, package, f" in a usable build ({one_line(err)[:160]})") from None


def require_bitsandbytes(option: str) -> None:
    """Raises UserError unless bitsandbytes is installed and importable (see :func:`require_importable`)."""
    require_importable(option, BITSANDBYTES)


def _report_names(report_to: Any) -> list[str]:
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    return [name for name in names if name not in ("none", "all")]  # 'all': transformers takes what is installed


def check_installed(model: Any, data: Any, lora: Any, training: dict[str, Any]) -> None:
    """Every package the options need is installed (``training``: the Trainer options as parsed).

    Raises:
        UserError: the first option whose package is missing, with the command that installs it.
    """
    if getattr(model, "quantize_base", None):
        require_bitsandbytes(f"quantize_base '{model.quantize_base}'")
    optim = str(getattr(training.get("optim"), "value", training.get("optim") or ""))
    if bitsandbytes_optimizer(optim):
        require_bitsandbytes(f"optim '{optim}'")
    for prefixes, package in _OPTIMIZER_PACKAGES:
        if optim.startswith(prefixes):
            require(f"optim '{optim}'", package)
    if optim in _TORCHAO_OPTIMIZERS:
        require(f"optim '{optim}'", Package(("torchao",), "pip install torchao (it must match your torch)"))
    if training.get("deepspeed"):
        require("deepspeed", DEEPSPEED)
    for name in _report_names(training.get("report_to")):
        if name in REPORTERS:
            require(f"report_to {name}", REPORTERS[name])
    if getattr(data, "demucs_model_path", None):  # (validation.check_demucs_path imports it once the path is good)
        require("demucs_model_path", DEMUCS)


def _netrc_files() -> Iterable[Path]:
    if os.environ.get("NETRC"):
        yield Path(os.environ["NETRC"]).expanduser()
    yield Path("~/.netrc").expanduser()
    yield Path("~/_netrc").expanduser()


def wandb_logged_in() -> bool:
    """Whether wandb will find credentials, as ``wandb.init`` looks for them (environment, .netrc, its settings
    file), or needs none (offline or disabled mode); without importing wandb."""
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return True
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    for path in _netrc_files():
        try:
            if path.is_file() and netrc.netrc(str(path)).authenticators(host):
                return True
        except (OSError, netrc.NetrcParseError):
            continue
    settings = Path(os.environ.get("WANDB_CONFIG_DIR", "~/.config/wandb")).expanduser() / "settings"
    try:
        return "api_key" in settings.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False


def check_logins(training: Any) -> None:
    """The accounts that the reporting backends need exist here (training only; see the module docstring).

    Raises:
        UserError: ``report_to wandb`` without a wandb login, naming the login command and the alternatives.
    """
    if "wandb" in _report_names(getattr(training, "report_to", None)) and not wandb_logged_in():
        raise UserError(
            "report_to wandb needs a wandb login, and none was found (no WANDB_API_KEY, no api.wandb.ai entry in "
            "~/.netrc); run `wandb login`, or set WANDB_MODE=offline to log locally, or use --report_to tensorboard"
        )
