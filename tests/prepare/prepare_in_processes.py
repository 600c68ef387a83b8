"""Started by the tests under torchrun: each process prepares a run's data as training does
(:func:`musicgen_lora.prepare.pipeline.load_or_prepare`), then writes how many clips it encoded.

``python -m torch.distributed.run --standalone --nproc_per_node N prepare_in_processes.py OUT_JSON_DIR ARGS...``;
the environment may set ``CLIPS_PER_SHARD`` (smaller shards for a small corpus) and ``FAIL_RANK``, ``FAIL_AT`` and
``FAIL_WITH`` ("user" or "crash"): that process fails at its FAIL_AT-th clip, with a one-line UserError or a
RuntimeError (a power cut, a bug).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from musicgen_lora.config.parsing import parse_config
from musicgen_lora.errors import UserError, exit_on_user_error
from musicgen_lora.logs import setup_logging
from musicgen_lora.models.loading import load_model_and_processor
from musicgen_lora.prepare import encoding
from musicgen_lora.prepare.pipeline import load_or_prepare

USER_ERROR = "clip_005.wav cannot be decoded (damaged file); replace or remove it"


def count_and_fail(rank: int) -> list[int]:
    """Count this process' encoded clips; fail as the environment asks."""
    calls: list[int] = []
    encode = encoding.encode_clip
    fail = os.environ.get("FAIL_RANK") == str(rank)

    def counting(*args, **kwargs):
        calls.append(1)
        if fail and len(calls) == int(os.environ.get("FAIL_AT", "1")):
            if os.environ.get("FAIL_WITH") == "user":
                raise UserError(USER_ERROR)
            raise RuntimeError("power cut")
        return encode(*args, **kwargs)

    encoding.encode_clip = counting
    return calls


def main(out: Path, argv: list[str]) -> None:
    setup_logging()
    encoding.CLIPS_PER_SHARD = int(os.environ.get("CLIPS_PER_SHARD", encoding.CLIPS_PER_SHARD))
    with exit_on_user_error(argv):
        parsed = parse_config(argv)
        rank = parsed.training.process_index
        calls = count_and_fail(rank)
        model, processor = load_model_and_processor(parsed.model)
        try:
            load_or_prepare(parsed, model, processor)
        finally:
            (out / f"encoded-{rank}.json").write_text(json.dumps(len(calls)))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
