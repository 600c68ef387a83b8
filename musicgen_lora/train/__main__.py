"""``python -m musicgen_lora.train [CONFIG.json] [--key value ...]``: the training command from the installed
package (the same as ``python finetune_musicgen.py`` and ``musicgen-lora train``); see
:mod:`musicgen_lora.train.cli`."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main()
