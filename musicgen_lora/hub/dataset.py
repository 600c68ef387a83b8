"""Push captioned tracks to a Hub dataset repository (audio files, metadata.jsonl with the final captions and what was
measured, a card), so captioning runs once.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import datasets
import soundfile as sf
from huggingface_hub import CommitOperationAdd, HfApi, get_token

from ..config.arguments import DataArguments
from ..errors import UserError
from ..files import atomic_write_json, file_identity
from .retries import call_with_retries, hub_offline

logger = logging.getLogger(__name__)


def check_can_push_metadata(repo_id: str) -> None:
    """Before any work: the Hub is reachable in principle and a token is there.

    Raises:
        UserError: ``HF_HUB_OFFLINE`` is set, or no token.
    """

    if hub_offline():
        raise UserError(
            f"push_metadata_repo_id '{repo_id}' needs the Hub, but HF_HUB_OFFLINE is set; unset it, or "
            "unset push_metadata_repo_id"
        )
    if not get_token():
        raise UserError(
            f"push_metadata_repo_id '{repo_id}' needs a Hub token; set HF_TOKEN or run `hf auth login`, "
            "or unset push_metadata_repo_id"
        )


def _pushed_name(index: int, source: Any) -> str:
    """A unique file name for one track in the pushed split: its index, then its own name (or its format)."""
    path = source.get("path") if isinstance(source, dict) else source
    if path:
        return f"{index:05d}-{Path(os.fspath(path)).name}"

    return f"{index:05d}.{sf.info(io.BytesIO(source['bytes'])).format.lower()}"


def _measured_columns(found: dict[str, Any]) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    columns.update(found.get("metadata") or {})
    level = found.get("level") or {}
    columns.update({k: level[k] for k in ("lufs", "centroid_hz") if k in level})
    columns.update({k: v or None for k, v in (found.get("tags") or {}).items()})
    return columns


def dataset_card(repo_id: str, splits: list[str]) -> str:
    """README.md of a pushed captioned dataset: one ``datasets`` audiofolder config with a split per folder."""
    files = "\n".join(f"  - split: {split}\n    path: data/{split}/*" for split in splits)
    return (
        f"---\nconfigs:\n- config_name: default\n  data_files:\n{files}\ntags:\n- music\n- musicgen\n---\n\n"
        f"# {repo_id}\n\nAudio with captions for fine-tuning MusicGen, written by musicgen-lora's data preparation. "
        "Each `data/<split>/metadata.jsonl` row has `file_name`, `text` (the final caption, as trained on), "
        "`own_caption` (the caption the track came with) and what was measured: `bpm`, `key`, `lufs`, "
        "`centroid_hz` (spectral centroid), `genre`, `mood`, `instrument` (zero-shot CLAP tags), where asked for.\n\n"
        f"Train on it without captioning again: `dataset_name: {repo_id}` with `add_metadata`, "
        "`clap_model_name_or_path` and `instance_prompt` unset (the captions are final).\n"
    )


def push_captioned_split(
    raw: datasets.Dataset,
    captions: list[str],
    measured: list[dict[str, Any]],
    data_args: DataArguments,
    split: str,
    cache_root: Path,
    attempts: int = 4,
    wait_seconds: float = 2.0,
) -> str | None:
    """Push one split's captioned tracks to the Hub dataset ``push_metadata_repo_id``, in one commit.

    Writes ``data/<split>/<NNNNN>-<file name>`` (the audio files as they are), ``data/<split>/metadata.jsonl`` and the
    card ``README.md``. A split already pushed with the same content (remembered under ``cache_root/pushed``) is not
    pushed again.

    Returns:
        The repository's URL, or None when nothing new had to be pushed.

    Raises:
        UserError: one line, when the push fails (after retries of transient errors); nothing local changes.
    """

    repo_id = data_args.push_metadata_repo_id
    rows, files = [], []
    for index, (source, caption, found, own) in enumerate(
        zip(raw["audio"], captions, measured, raw["text"], strict=False)
    ):
        name = _pushed_name(index, source)
        rows.append(
            {"file_name": name, "text": caption, "own_caption": (own or "").strip() or None, **_measured_columns(found)}
        )
        content = source["bytes"] if isinstance(source, dict) and source.get("bytes") else source
        content = content.get("path") if isinstance(content, dict) else content
        files.append((f"data/{split}/{name}", content, file_identity(source)))
    metadata = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
    splits = ["train", "eval"] if (data_args.eval_split_name or data_args.eval_split_percentage > 0) else ["train"]
    card = dataset_card(repo_id, splits).encode()
    endpoint = os.environ.get("HF_ENDPOINT") or None
    identity = json.dumps([endpoint, repo_id, split, metadata.decode(), card.decode(), [f[2] for f in files]])
    marker = cache_root / "pushed" / (hashlib.sha256(identity.encode()).hexdigest()[:24] + ".json")
    if marker.is_file():
        logger.info(
            "The captioned %s split is already on %s (same files and captions); not pushed again", split, repo_id
        )
        return None
    api = HfApi(endpoint=endpoint)

    def push_once() -> str:
        url = api.create_repo(repo_id, repo_type="dataset", private=True, exist_ok=True)  # private unless it exists
        operations = [
            CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card),
            CommitOperationAdd(path_in_repo=f"data/{split}/metadata.jsonl", path_or_fileobj=metadata),
        ] + [CommitOperationAdd(path_in_repo=path, path_or_fileobj=content) for path, content, _ in files]
        api.create_commit(
            url.repo_id, operations, repo_type="dataset", commit_message=f"Captioned {split} split: {len(rows)} tracks"
        )
        return str(url)

    advice = (
        "the local caches are intact: run again to retry (nothing is encoded or measured again), or unset "
        "push_metadata_repo_id"
    )
    url = call_with_retries(
        push_once, f"pushing the captioned {split} split to dataset '{repo_id}'", advice, attempts, wait_seconds
    )
    atomic_write_json(marker, {"repo_id": repo_id, "split": split, "tracks": len(rows), "url": url})
    logger.info("Pushed the captioned %s split (%d tracks) to %s", split, len(rows), url)
    return url
