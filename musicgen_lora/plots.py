"""The ``python -m musicgen_lora.plots`` command: draw a run's loss curves to OUTPUT_DIR/loss_curves.png (the code
lives in :mod:`musicgen_lora.train.plots`).
"""

from __future__ import annotations

from .train.plots import main

if __name__ == "__main__":
    main()
