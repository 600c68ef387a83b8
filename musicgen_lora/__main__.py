"""``python -m musicgen_lora COMMAND [options]``: the ``musicgen-lora`` console script without installing it."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
