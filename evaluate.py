"""Compare the base model with fine-tuned adapters: WAVs to listen to, metrics to trust, one page for both.

    python evaluate.py --base_model facebook/musicgen-small \\
        --model final=OUTPUT_DIR --model step400=OUTPUT_DIR/checkpoint-400 \\
        --prompts prompts.json --duration 15 --num_samples 2 --seed 0 --eval_dataset DATA_FOLDER --output_dir eval/
    python evaluate.py --config OUTPUT_DIR/finetune_config.json [--prompts prompts.json ...]

Writes ``eval/<model>/<prompt>-<sample>.wav`` (+ a spectrogram PNG), ``comparison_results.jsonl``, ``metrics.json``
and ``report.html``; see ``python evaluate.py --help`` and :mod:`musicgen_lora.evaluate` for the metrics.
"""

from __future__ import annotations

from musicgen_lora.evaluate.cli import main

if __name__ == "__main__":
    main()
