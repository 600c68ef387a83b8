"""Data preparation, one orchestrator (:mod:`.pipeline`): sources -> screening -> vocals -> captions -> encoding ->
chunking -> report, run once apart from training and reused while nothing changed.

    python -m musicgen_lora.prepare CONFIG.json [--key value ...]     # the same config (and flags) as training

Loads the sources, holds out evaluation tracks (``eval_split_percentage``), measures levels and captions
(``silence_threshold_db``, ``add_metadata``), normalises loudness and encodes with EnCodec, and cuts chunks
(``chunk_long_tracks``), exactly as training does; then writes the prepared splits (Arrow, ``datasets``),
``data_report.json`` and ``fingerprint.json`` to ``OUTPUT_DIR/prepared_data/`` and prints a short summary.

Training loads those splits while ``fingerprint.json`` (data options, codec, source files' identities and
captions) matches its config, and prepares them itself (this same code) when they are missing or stale.

The expensive work is cached in ``data_cache_dir`` (codes in shards of clips saved as each finishes, tempo/key/levels
per file), so an interrupted ``prepare`` run continues where it stopped: files already analysed and shards already
encoded are not redone. ``preprocessing_num_workers`` encodes the shards in several processes; ``streaming`` reads a
Hub dataset as a stream and keeps only the codes."""

from __future__ import annotations
