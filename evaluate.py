"""Compare the base model with fine-tuned adapters on prompts — not available yet.

Planned: ``python evaluate.py --base_model M --model final=OUTPUT_DIR --prompts prompts.json ...`` writing WAVs, metrics
(held-out cross-entropy per codebook, Fréchet distances, prompt adherence, audio health) and a page to listen from.
Until then, training already renders listening samples: set ``sample_prompts`` in the training config and find the
WAVs in ``OUTPUT_DIR/samples/final/``.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> dict:
    print(
        "error: evaluate.py is not available yet; to listen to a fine-tune, set sample_prompts in the training config "
        "(WAVs land in OUTPUT_DIR/samples/final/)",
        file=sys.stderr,
    )
    raise SystemExit(2)


if __name__ == "__main__":
    main()
