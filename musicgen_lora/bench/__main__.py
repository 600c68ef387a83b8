"""``python -m musicgen_lora.bench``: see :mod:`musicgen_lora.bench.suite`."""

from __future__ import annotations

from .suite import main

if __name__ == "__main__":
    main()
