"""Fine-tune MusicGen with LoRA adapters.

python finetune_musicgen.py example_configs/musicgen_small_lora.json [--key value ...]
python finetune_musicgen.py                      # the offline demo (tiny model, synthetic corpus)
python finetune_musicgen.py --help               # every option, with help and default

The same command as ``musicgen-lora train``; the code lives in :mod:`musicgen_lora.train.cli`.
"""

from __future__ import annotations

from musicgen_lora.train.cli import main

if __name__ == "__main__":
    main()
