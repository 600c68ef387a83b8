"""Fine-tune MusicGen with LoRA adapters.

python finetune_musicgen.py example_configs/musicgen_small_lora.json [--key value ...]
python finetune_musicgen.py                      # the offline demo (tiny model, synthetic corpus)
python finetune_musicgen.py --help               # every option, with help and default
"""

from __future__ import annotations

import sys
from typing import Any

from musicgen_lora.config.parsing import parse_config
from musicgen_lora.demo.assets import DEMO_CONFIG, ensure_demo_assets
from musicgen_lora.errors import exit_on_user_error
from musicgen_lora.logs import setup_logging
from musicgen_lora.train.run import run_training


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else list(argv)
    setup_logging()
    with exit_on_user_error(argv):
        parsed = parse_config(argv, defaults=DEMO_CONFIG)
        ensure_demo_assets(parsed)
        return run_training(parsed)


if __name__ == "__main__":
    main()
