"""Automatic captions: a template filled with each track's own caption, the trigger word, measured tempo, key,
loudness and brightness, and zero-shot CLAP tags.

The caption of a track is ``caption_template`` with its fields filled in (see :data:`FIELDS`); the default,
:data:`DEFAULT_TEMPLATE`, gives ``"<instance_prompt>, <own caption>, <tags>, <tempo> bpm, <key>"``. The template is
cut at its commas and semicolons into segments; a segment with an empty field vanishes together with the separator
before it, so a track without a caption, a tempo or tags gets no dangling commas (``"{bpm} bpm"`` vanishes whole
when no tempo was measured). A tempo or key the track's own caption already states is not repeated.

What is measured, and when:

* ``add_metadata: true`` measures the analysis fields the template names (:mod:`musicgen_lora.audio.tempo`,
  :mod:`~musicgen_lora.audio.key`, :mod:`~musicgen_lora.audio.analysis`): tempo and key on the track's central
  excerpt of at most :data:`EXCERPT_SECONDS`; loudness (BS.1770 integrated, whole track) and brightness (spectral
  centroid, central excerpt), turned into words by :data:`LOUDNESS_WORDS` and :data:`BRIGHTNESS_WORDS`.
* ``clap_model_name_or_path`` (a local transformers ``ClapModel`` folder) adds zero-shot tags: for each label set
  (genre, mood, instrument) the label whose prompt CLAP finds most similar to the track, kept when its probability
  among the set's labels reaches ``clap_tag_threshold``. The track is embedded on up to :data:`CLAP_EXCERPTS`
  excerpts of CLAP's window (10 s) at fixed positions (evenly spread, same for every run and seed), resampled to
  CLAP's 48 kHz, and the excerpt embeddings are averaged.
* Every tempo and key estimate carries a confidence (0 to 1); below :data:`CONFIDENCE_THRESHOLDS` the field is
  left out of the caption (no word rather than a wrong word), and the data report counts and lists those tracks.
  Where the tempo is in doubt (:data:`~musicgen_lora.audio.tempo.TEMPO_SURE`: its octave, or a triple metre's
  level) the caption names the two likeliest tempi, slower first: ``"85 or 170 bpm"``, ``"60 or 90 bpm"``
  (:func:`tempo_words`).
* ``prepared_data/captions.jsonl`` (:func:`review_row`) shows every track's final caption with the estimates and
  their confidences. Corrected and copied into the dataset folder as ``metadata.jsonl``, its rows
  (``caption_is_final: true``) are trained on as written: no template, nothing measured or decoded.

Everything measured is cached as small JSON files under ``<data_cache_dir>/analysis/``, keyed by the audio's identity
(path, size and modification time, or a hash of the bytes): tempo/key, loudness/brightness and the CLAP audio
embedding (with the checkpoint's fingerprint) each apart, and the label prompts' text embeddings per checkpoint. So
changing the template, the trigger word, the labels or the threshold never decodes audio again, and captioning never
re-encodes (the codes are cached apart, by the audio alone)."""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from ..audio import analysis
from ..audio.key import KEY_CONFIDENCE_THRESHOLD
from ..audio.tempo import TEMPO_CONFIDENCE_THRESHOLD
from ..config.arguments import DataArguments
from ..config.caption_template import ANALYSIS_FIELDS, FIELDS, TAG_FIELDS, TAG_SETS, effective_template
from ..errors import UserError
from .clap_tags import ClapTagger
from .measurements import cached_measures, measure, measure_level
from .report import CaptionReport

logger = logging.getLogger(__name__)

_BPM_WORDS = re.compile(r"\b\d+(\.\d+)?\s*bpm\b", re.IGNORECASE)


# Integrated loudness (LUFS) -> word: the first entry whose upper bound the level is below. Streaming services play
# at about -14 LUFS; modern masters reach -8 and above; broadcast speech sits near -23; quiet acoustic or ambient
# recordings often lie below -20. With loudness_target_lufs the level the model hears (after normalisation) counts.
LOUDNESS_WORDS = (
    (-30.0, "very quiet"),
    (-20.0, "quiet"),
    (-12.0, "moderately loud"),
    (-8.0, "loud"),
    (math.inf, "very loud"),
)


# Spectral centroid (Hz, of the average spectrum up to 16 kHz) -> word. Bass-heavy, muffled or lo-fi mixes sit below
# 1 kHz, most full-band mixes between 1.5 and 3 kHz, hi-hat- or noise-heavy material above 3.5 kHz (white noise: 8 kHz).
BRIGHTNESS_WORDS = ((1000.0, "dark"), (2000.0, "warm"), (3500.0, "bright"), (math.inf, "very bright"))


# The measured fields a caption leaves out below their confidence threshold (chosen on real music, bench/RESULTS.md):
# no word rather than a wrong word. captions.jsonl still shows the estimate and its confidence, for review.
CONFIDENCE_THRESHOLDS = {"bpm": TEMPO_CONFIDENCE_THRESHOLD, "key": KEY_CONFIDENCE_THRESHOLD}


def _states_key(caption: str) -> bool:
    return any(analysis.parse_key(part) is not None for part in re.split(r"[,;]", caption))


def _word(value: float | None, table: tuple[tuple[float, str], ...]) -> str:
    if value is None:
        return ""
    return next(word for bound, word in table if value < bound)


def heard_loudness(lufs: float | None, peak: float, target: float | None) -> float | None:
    """The loudness the model hears: the recording's, or with ``loudness_target_lufs`` the target, lowered where
    normalisation had to stop at full scale (as :func:`musicgen_lora.prepare.encoding.normalize_loudness` does)."""
    if lufs is None or target is None:
        return lufs
    return min(target, lufs - 20 * math.log10(max(peak, 1e-12)))


# Control characters (NUL, BEL, ESC, ...; not tab or newline) and invisible format characters (zero-width spaces and
# joiners, soft hyphen, direction marks, byte-order marks): pasted from web pages or spreadsheets, never meant as words.
_HIDDEN = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]"
)


def clean_caption(text: str, where: str) -> str | None:
    """``text`` without control and invisible characters (a warning names them), stripped; None when nothing is
    left."""
    hidden = sorted({f"U+{ord(char):04X}" for char in _HIDDEN.findall(text)})
    if hidden:
        logger.warning(
            "%s: the caption holds control or invisible characters (%s); they are left out",
            where,
            ", ".join(hidden[:4]),
        )
        text = _HIDDEN.sub("", text)
    return text.strip() or None


def caption_of(value: Any, where: str) -> str | None:
    """A caption from a metadata row: text (cleaned by :func:`clean_caption`; empty means none) or null.

    Raises:
        UserError: a number, list or object, which would otherwise be trained as its Python text.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise UserError(f"{where}: the caption is {json.dumps(value)[:60]}, not text; write it as a string (or null)")
    return clean_caption(value, where)


def low_confidence(metadata: dict[str, Any]) -> dict[str, float]:
    """The measured fields of ``metadata`` (bpm, key) whose confidence is below :data:`CONFIDENCE_THRESHOLDS`:
    ``{field: confidence}``. A field without a confidence (a value the user gave) is trusted."""
    out = {}
    for name, threshold in CONFIDENCE_THRESHOLDS.items():
        confidence = metadata.get(f"{name}_confidence")
        if metadata.get(name) is not None and confidence is not None and confidence < threshold:
            out[name] = confidence
    return out


def tempo_words(bpm: int, alternative: int | None = None) -> str:
    """The ``{bpm}`` field: ``"85"``, or where the tempo is in doubt both tempi, slower first (``"85 or 170"``)."""
    if alternative is None or alternative == bpm:
        return str(bpm)
    return f"{min(bpm, alternative)} or {max(bpm, alternative)}"


def track_fields(
    caption: str | None,
    instance_prompt: str | None,
    measured: dict[str, Any],
    loudness_target: float | None = None,
    caption_shown: bool = True,
) -> dict[str, str]:
    """The template's field values for one track (empty strings where nothing is known).

    Args:
        caption_shown: whether the template shows the own caption; only then is a tempo or key it states left out.
    """
    caption = (caption or "").strip()
    values = {name: "" for name in FIELDS}
    values["prompt"] = (instance_prompt or "").strip()
    values["caption"] = caption
    stated = caption if caption_shown else ""
    if values["prompt"].lower() in (part.strip().lower() for part in re.split(r"[,;]", stated)):
        values["prompt"] = ""  # a reviewed caption copied back already starts with the trigger word
    metadata = measured.get("metadata") or {}
    unsure = low_confidence(metadata)
    if metadata.get("bpm") is not None and "bpm" not in unsure and not _BPM_WORDS.search(stated):
        values["bpm"] = tempo_words(metadata["bpm"], metadata.get("bpm_alternative"))
    if metadata.get("key") and "key" not in unsure and not _states_key(stated):
        values["key"] = metadata["key"]
    level = measured.get("level")
    if level:
        lufs = heard_loudness(level["lufs"], level["peak"], loudness_target)
        values["lufs"] = "" if lufs is None else f"{round(lufs)} LUFS"
        values["loudness"] = _word(lufs, LOUDNESS_WORDS)
        values["brightness"] = _word(level["centroid_hz"], BRIGHTNESS_WORDS)
    tags = measured.get("tags") or {}
    values.update({name: tags.get(name, "") for name in TAG_SETS})
    values["tags"] = ", ".join(tags[name] for name in TAG_SETS if tags.get(name))
    return values


def caption_measures(
    data_args: DataArguments, cache_root: Path
) -> tuple[dict[str, Callable[[np.ndarray, int], Any]], ClapTagger | None]:
    """What the caption template needs measured of each track (``{cache kind: compute(audio, sr)}``, each cached per
    file by :func:`~.measurements.cached_measures`), and the CLAP tagger when it adds tags."""
    template = effective_template(data_args.caption_template)
    computes: dict[str, Callable[[np.ndarray, int], Any]] = {}
    if data_args.add_metadata and template.fields & {"bpm", "key"}:
        computes["metadata"] = measure
    if data_args.add_metadata and template.fields & {"lufs", "loudness", "brightness"}:
        computes["level"] = measure_level
    tagger = None
    if data_args.clap_model_name_or_path and template.fields & set(TAG_FIELDS):
        tagger = ClapTagger(data_args, cache_root)
        computes[tagger.kind] = tagger.embed
    return computes, tagger


def caption_tracks(
    tracks: datasets.Dataset, data_args: DataArguments, cache_root: Path
) -> tuple[list[str], list[dict[str, Any]], CaptionReport]:
    """Every track's final caption, what was measured for it (for the pushed metadata) and the captions' report.

    The measurements come from the cache, where the one decode of each track put them (see
    :func:`~.encoding.encode_dataset`); a track missing one is decoded for it here. A track whose metadata row says
    ``caption_is_final`` (a reviewed captions.jsonl copied in as metadata.jsonl) is trained on with its ``text`` as
    written: no template, nothing measured.

    Args:
        tracks: columns ``audio``, ``text`` (the own caption or None), ``source`` (the track's name), and
            ``caption_final`` where the metadata has it.

    Returns:
        ``(captions, measured, report)``; ``measured[i]`` holds ``metadata`` (bpm, key and their confidences),
        ``level`` (lufs, peak, centroid_hz), ``tags`` and ``tag_scores`` (label, probability per set) where the
        options asked for them, and ``final`` (True) for a caption taken as written.

    Raises:
        UserError: a track ends up with an empty caption (no caption, no instance_prompt and nothing measured; or a
            reviewed row with empty text).
    """
    template = effective_template(data_args.caption_template)
    computes, tagger = caption_measures(data_args, cache_root)
    texts, names = tracks["text"], tracks["source"]
    finals = tracks["caption_final"] if "caption_final" in tracks.column_names else [False] * len(tracks)
    sources = tracks["audio"] if computes else [None] * len(tracks)
    captions, measured, added, unsure = [], [], 0, []
    for name, source, text, final in zip(names, sources, texts, finals, strict=True):
        if final:  # the user's reviewed caption wins: used as written, nothing measured
            caption, found = (text or "").strip(), {"final": True}
        else:
            found = cached_measures(source, cache_root, computes) if computes else {}
            if tagger is not None:
                found["tag_scores"] = tagger.best_labels(found.pop(tagger.kind))
                found["tags"] = tagger.tags_of(found["tag_scores"])
            fields = track_fields(
                text, data_args.instance_prompt, found, data_args.loudness_target_lufs, "caption" in template.fields
            )
            caption = template.render(fields)
            plain = template.render({**fields, **{name: "" for name in (*ANALYSIS_FIELDS, *TAG_FIELDS)}})
            added += caption != plain
            left_out = {k: v for k, v in low_confidence(found.get("metadata") or {}).items() if k in template.fields}
            if left_out:
                unsure.append({"source": name, **left_out})
        captions.append(caption)
        measured.append(found)
    _refuse_missing(captions, finals, names)
    report = CaptionReport(
        own_captions=sum(bool((t or "").strip()) for t in texts),
        auto_captioned=added,
        final_captions=sum(bool(f) for f in finals),
        low_confidence=unsure,
        track_metadata=(
            [found.get("metadata") or {} for found in measured if not found.get("final")]
            if data_args.add_metadata
            else None
        ),
        review_rows=[
            review_row(name, caption, own, found, data_args.loudness_target_lufs)
            for name, caption, own, found in zip(names, captions, texts, measured, strict=True)
        ],
    )
    return captions, measured, report


def check_captions(tracks: datasets.Dataset, data_args: DataArguments, cache_root: Path) -> None:
    """Before any audio is decoded: the error :func:`caption_tracks` would give when no measurement could fill a
    track's caption.

    Raises:
        UserError: a track would end up with an empty caption.
    """
    if not caption_measures(data_args, cache_root)[0]:
        caption_tracks(tracks, data_args, cache_root)


def _refuse_missing(captions: list[str], finals: list[bool], names: list[str]) -> None:
    missing = [i for i, caption in enumerate(captions) if not caption]
    reviewed = [i for i in missing if finals[i]]
    if reviewed:
        raise UserError(
            f"{len(reviewed)} reviewed clip(s) (caption_is_final true) have an empty caption (first: "
            f"'{names[reviewed[0]]}'); write their caption in the text column, or set caption_is_final false on those "
            "rows to caption them from the template (and instance_prompt)"
        )
    if missing:
        raise UserError(
            f"{len(missing)} clip(s) have no caption (first: '{names[missing[0]]}'); add captions (metadata text "
            "column or .txt files) or set instance_prompt to caption every clip"
        )


# The text encoder's length when its tokenizer states none (T5, MusicGen's text encoder, was trained on 512 tokens).
TEXT_ENCODER_TOKENS = 512


def fit_text_encoder(captions: list[str], names: list[str], tokenizer: Any) -> list[str]:
    """The captions cut to what the text encoder reads (its tokenizer's ``model_max_length`` tokens), with a
    warning naming each track whose caption was cut: a longer one is read past the encoder's trained positions, and a
    huge one makes the first training step allocate memory for its attention over every token.

    Args:
        tokenizer: the text encoder's tokenizer (None: the captions are returned as they are).
    """
    if tokenizer is None or not captions:
        return captions
    limit = getattr(tokenizer, "model_max_length", 0) or 0
    limit = limit if 0 < limit <= 100_000 else TEXT_ENCODER_TOKENS
    lengths = [len(ids) for ids in tokenizer(captions, truncation=True, max_length=limit + 1)["input_ids"]]
    fitted = list(captions)
    for index in (i for i, length in enumerate(lengths) if length > limit):
        kept = _first_tokens(captions[index], tokenizer, limit)
        logger.warning(
            "The caption of '%s' (%d characters) is longer than the %d tokens the text encoder reads: cut to its "
            'first %d characters ("%s...")',
            names[index],
            len(captions[index]),
            limit,
            len(kept),
            kept[:40],
        )
        fitted[index] = kept
    return fitted


def _first_tokens(caption: str, tokenizer: Any, limit: int) -> str:
    """The longest start of ``caption`` that stays within ``limit`` tokens (special tokens included)."""
    encoded = tokenizer(caption, truncation=True, max_length=limit, return_offsets_mapping=tokenizer.is_fast)
    if tokenizer.is_fast:
        return caption[: max(end for _, end in encoded["offset_mapping"])].strip()
    return tokenizer.decode(encoded["input_ids"], skip_special_tokens=True).strip()


def review_row(
    name: str, caption: str, own_caption: str | None, found: dict[str, Any], loudness_target: float | None = None
) -> dict[str, Any]:
    """One row of captions.jsonl: a metadata.jsonl row (``file_name``, ``text`` = the final caption) plus the own
    caption and every measured field with its confidence, for a person to check and correct.

    ``caption_is_final`` is true, so that the file, corrected and copied into the dataset folder as
    ``metadata.jsonl``, is trained on as written (see :func:`caption_tracks`).
    """
    row: dict[str, Any] = {"file_name": name, "text": caption, "caption_is_final": True, "own_caption": own_caption}
    metadata = found.get("metadata") or {}
    for field in ("bpm", "bpm_alternative", "bpm_confidence", "key", "key_confidence"):
        if field in metadata:
            row[field] = metadata[field]
    unsure = low_confidence(metadata)
    if unsure:
        row["left_out_low_confidence"] = sorted(unsure)
    level = found.get("level")
    if level:
        row.update(lufs=level["lufs"], centroid_hz=level["centroid_hz"])
        heard = heard_loudness(level["lufs"], level["peak"], loudness_target)
        row.update(loudness=_word(heard, LOUDNESS_WORDS) or None)
        row.update(brightness=_word(level["centroid_hz"], BRIGHTNESS_WORDS) or None)
    # a tag below clap_tag_threshold is null, with its best label and probability beside it
    for tag_set, (label, prob) in (found.get("tag_scores") or {}).items():
        row[tag_set] = (found.get("tags") or {}).get(tag_set) or None
        row[f"{tag_set}_best"], row[f"{tag_set}_confidence"] = label, round(prob, 3)
    return row
