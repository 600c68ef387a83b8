"""The tracks of one prepared split: listed once, screened (bad files skipped and reported), the held-out share
of ``eval_split_percentage`` chosen among the readable ones, and cut to ``max_train_samples`` /
``max_eval_samples``; or, for ``streaming``, read from the stream while it is encoded."""

from __future__ import annotations

import dataclasses

import datasets

from ..errors import UserError
from .chunking import split_tracks
from .context import PrepareContext
from .encoding import encode_stream
from .report import ScreenReport
from .reuse import source_split
from .screening import screen_split
from .sources import source_names


@dataclasses.dataclass(frozen=True)
class Tracks:
    """A split's tracks and what screening found.

    Attributes:
        table: columns ``audio``, ``text`` (own caption or None), ``source`` (each track's name, see
            :func:`~.sources.source_names`), and ``caption_final`` / ``conditional_audio`` where the source has them.
        name: the split's name in logs and messages (``train``/``eval`` for the sides of ``eval_split_percentage``).
        screen: what screening found.
        codes: for a stream, the codes already encoded while it was read (else None).
    """

    table: datasets.Dataset
    name: str
    screen: ScreenReport
    codes: datasets.Dataset | None = None


def select_tracks(context: PrepareContext, split: str | None, is_eval: bool) -> Tracks:
    """The tracks of a split, every file checked before any expensive work (bad ones skipped and reported, or an
    error with ``strict``), so that ``eval_split_percentage`` holds out readable tracks only.

    Args:
        split: the split's name in the source (None for the held-out side of ``eval_split_percentage``).
        is_eval: the evaluation side.

    Raises:
        UserError: bad input; fewer than 2 readable tracks to split.
    """
    data = context.data
    limit = data.max_eval_samples if is_eval else data.max_train_samples
    if data.streaming:  # audio never stored: codes, captions and source names come from the stream
        encoded = encode_stream(context, split, limit)
        table = encoded.select_columns(["source", "text"]).add_column("audio", encoded["source"])
        screen = ScreenReport(found=len(table), read=len(table))  # not checked apart: every streamed row was read
        return Tracks(table, split, screen, encoded.remove_columns(["source", "text"]))
    listed = source_split(data, split)
    listing = context.sources.listing(listed)
    raw = listing.tracks.add_column("source", source_names(listing.tracks, data, listed))
    if data.eval_split_percentage > 0:  # both sides come from the training split, whole tracks on one side
        name = "eval" if is_eval else "train"
        raw, screen = _screened_once(context, raw, listed)
        if len(raw) < 2:
            raise UserError(
                f"eval_split_percentage needs at least 2 readable tracks, '{data.dataset_name}' has {len(raw)}; "
                "add audio or set eval_split_percentage to 0"
            )
        train_tracks, eval_tracks = split_tracks(len(raw), data.eval_split_percentage, context.seed)
        raw = raw.select(eval_tracks if is_eval else train_tracks)
        if is_eval:  # the bad files are reported once, with the training side
            screen = ScreenReport(found=len(raw), read=len(raw))
        if limit is not None:
            raw = raw.select(range(min(limit, len(raw))))
    else:
        name = split
        if limit is not None:  # the first N clips, checked
            raw = raw.select(range(min(limit, len(raw))))
        raw, screen = screen_split(raw, data.dataset_name, split, context.root, data.strict)
    screen = dataclasses.replace(
        screen,
        skipped=[*listing.duplicates, *screen.skipped] if not is_eval else screen.skipped,
        not_listed=listing.not_listed if not is_eval else (),
    )
    return Tracks(raw, name, screen)


def _screened_once(
    context: PrepareContext, raw: datasets.Dataset, listed: str
) -> tuple[datasets.Dataset, ScreenReport]:
    """The screened training listing, screened once for both sides of ``eval_split_percentage``."""
    key = f"screened|{listed}"
    remembered = context.sources.remembered(key)
    if remembered is None:
        remembered = context.sources.remember(
            key, screen_split(raw, context.data.dataset_name, "train", context.root, context.data.strict)
        )
    return remembered
