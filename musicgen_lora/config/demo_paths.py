"""Where the offline demo keeps its tiny model and corpus, for the training road to recognise them.

The demo itself (:mod:`musicgen_lora.demo`, with the synthesiser) is an extra that training from a config never
imports; a user's config may still name the demo's folders (copied from the demo's resolved config), and training
then says where they come from instead of only that they are missing."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .arguments import ParsedConfig

DEMO_ROOT = "demo_output"
DEMO_MODEL = f"{DEMO_ROOT}/tiny-musicgen"
DEMO_CORPUS = f"{DEMO_ROOT}/corpus"


def require_demo_assets(parsed: ParsedConfig) -> None:
    """A config of the user's that names the demo's model or corpus: only the demo builds them, so they must be where
    the command runs.

    Raises:
        UserError: one is missing there, with how to make it.
    """
    for named, path, build in (
        (parsed.model.model_name_or_path, DEMO_MODEL, f"python -m musicgen_lora.tiny {DEMO_MODEL}"),
        (parsed.data.dataset_name, DEMO_CORPUS, f"python -m musicgen_lora.synth {DEMO_CORPUS}"),
    ):
        if named == path and not Path(path).exists():
            raise UserError(
                f"'{path}' not found in '{Path.cwd()}': it is the offline demo's, which `python finetune_musicgen.py` "
                f"(no arguments) builds where it runs; run from the folder that holds it, or build it with `{build}`"
            )
