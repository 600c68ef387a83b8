"""Automatic captions: a template filled with each track's own caption, the trigger word, measured tempo, key,
loudness and brightness, and zero-shot CLAP tags.

The caption of a track is ``caption_template`` with its fields filled in (see :data:`FIELDS`); the default,
:data:`DEFAULT_TEMPLATE`, gives ``"<instance_prompt>, <own caption>, <tags>, <tempo> bpm, <key>"``. The template is
cut at its commas and semicolons into segments; a segment with an empty field vanishes together with the separator
before it, so a track without a caption, a tempo or tags gets no dangling commas (``"{bpm} bpm"`` vanishes whole
when no tempo was measured). A tempo or key the track's own caption already states is not repeated.

What is measured, and when:

* ``add_metadata: true`` measures the analysis fields the template names (:mod:`musicgen_lora.analysis`): tempo and
  key on the track's central excerpt of at most :data:`EXCERPT_SECONDS`; loudness (BS.1770 integrated, whole track)
  and brightness (spectral centroid, central excerpt), turned into words by :data:`LOUDNESS_WORDS` and
  :data:`BRIGHTNESS_WORDS`.
* ``clap_model_name_or_path`` (a local transformers ``ClapModel`` folder) adds zero-shot tags: for each label set
  (genre, mood, instrument) the label whose prompt CLAP finds most similar to the track, kept when its probability
  among the set's labels reaches ``clap_tag_threshold``. The track is embedded on up to :data:`CLAP_EXCERPTS`
  excerpts of CLAP's window (10 s) at fixed positions (evenly spread, same for every run and seed), resampled to
  CLAP's 48 kHz, and the excerpt embeddings are averaged.

Everything measured is cached as small JSON files under ``<data_cache_dir>/analysis/``, keyed by the audio's identity
(path, size and modification time, or a hash of the bytes): tempo/key, loudness/brightness and the CLAP audio
embedding (with the checkpoint's fingerprint) each apart, and the label prompts' text embeddings per checkpoint. So
changing the template, the trigger word, the labels or the threshold never decodes audio again, and captioning never
re-encodes (the codes are cached apart, by the audio alone).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import string
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import analysis
from .audio import decode_audio, describe_source
from .errors import UserError

if TYPE_CHECKING:
    import datasets

    from .clap import Clap
    from .config import FinetuneArguments

logger = logging.getLogger(__name__)

EXCERPT_SECONDS = 60.0
ANALYSIS_VERSION = 1  # bump when the estimators change, so cached estimates are redone
CLAP_EXCERPTS = 3  # at most this many CLAP windows per track
CLAP_VERSION = 1  # bump when the excerpt positions change
_BPM_WORDS = re.compile(r"\b\d+(\.\d+)?\s*bpm\b", re.IGNORECASE)

DEFAULT_TEMPLATE = "{prompt}, {caption}, {tags}, {bpm} bpm, {key}"
TAG_SETS = ("genre", "mood", "instrument")
ANALYSIS_FIELDS = ("bpm", "key", "lufs", "loudness", "brightness")
TAG_FIELDS = ("tags", *TAG_SETS)
FIELDS = ("prompt", "caption", *ANALYSIS_FIELDS, *TAG_FIELDS)
FIELD_HELP = {
    "prompt": "instance_prompt",
    "caption": "the track's own caption",
    "bpm": "estimated tempo, a whole number ('85'; write '{bpm} bpm')",
    "key": "estimated key with mode ('A minor')",
    "lufs": "integrated loudness ('-14 LUFS')",
    "loudness": "loudness as a word (LOUDNESS_WORDS)",
    "brightness": "brightness as a word (BRIGHTNESS_WORDS)",
    "tags": "the CLAP tags found, genre, mood, instrument, comma-separated",
    "genre": "the CLAP genre tag",
    "mood": "the CLAP mood tag",
    "instrument": "the CLAP instrument tag",
}
# Integrated loudness (LUFS) -> word: the first entry whose upper bound the level is below. Streaming services play
# at about -14 LUFS; modern masters reach -8 and above; broadcast speech sits near -23; quiet acoustic or ambient
# recordings often lie below -20. With loudness_target_lufs the level the model hears (after normalisation) counts.
LOUDNESS_WORDS = ((-30.0, "very quiet"), (-20.0, "quiet"), (-12.0, "moderately loud"), (-8.0, "loud"), (math.inf, "very loud"))
# Spectral centroid (Hz, of the average spectrum up to 16 kHz) -> word. Bass-heavy, muffled or lo-fi mixes sit below
# 1 kHz, most full-band mixes between 1.5 and 3 kHz, hi-hat- or noise-heavy material above 3.5 kHz (white noise: 8 kHz).
BRIGHTNESS_WORDS = ((1000.0, "dark"), (2000.0, "warm"), (3500.0, "bright"), (math.inf, "very bright"))

DEFAULT_LABELS = {
    "genre": ["rock", "pop", "jazz", "classical", "electronic", "hip hop", "lofi hip hop", "ambient", "techno",
              "house", "metal", "punk", "folk", "blues", "funk", "reggae", "country", "soul", "cinematic"],
    "mood": ["happy", "sad", "calm", "energetic", "dark", "uplifting", "melancholic", "aggressive", "romantic",
             "dreamy", "tense", "relaxing"],
    "instrument": ["piano", "acoustic guitar", "electric guitar", "bass guitar", "drums", "synthesizer", "strings",
                   "violin", "brass", "saxophone", "flute", "organ", "vocals"],
}  # fmt: skip
# How each set's labels are put to CLAP (LAION CLAP was trained on captions like these).
LABEL_PROMPTS = {"genre": "This is {} music.", "mood": "This music is {}.", "instrument": "This is a sound of {}."}


# ---------------------------------------------------------------------------------------------------- template


class CaptionTemplate:
    """A parsed ``caption_template``: segments between commas/semicolons, each with the fields it names.

    Raises:
        UserError: an unknown field, a positional ``{}``, or a stray brace; the message lists the valid fields.
    """

    def __init__(self, text: str, option: str = "caption_template"):
        self.text = text
        pieces = re.split(r"(\s*[,;]\s*)", text)
        self.segments: list[tuple[str, str, tuple[str, ...]]] = []  # (separator before, segment, its fields)
        for index in range(0, len(pieces), 2):
            separator = pieces[index - 1] if index else ""
            segment = pieces[index]
            try:
                names = tuple(name for _, name, _, _ in string.Formatter().parse(segment) if name is not None)
            except ValueError as err:
                raise UserError(f"{option} {text!r} is not a valid template ({err}); write fields as {{name}}, "
                                "a literal brace as {{ or }}") from None  # fmt: skip
            for name in names:
                if name not in FIELDS:
                    raise UserError(
                        f"{option} {text!r} has an unknown field {{{name}}}; the fields are "
                        + ", ".join(f"{{{f}}}" for f in FIELDS)
                    )
            try:
                segment.format(**{name: "x" for name in FIELDS})
            except (ValueError, KeyError, IndexError, AttributeError) as err:
                raise UserError(f"{option} {text!r}: segment {segment!r} cannot be filled ({err}); write fields as "
                                "{name}") from None  # fmt: skip
            self.segments.append((separator, segment, names))
        self.fields = {name for _, _, names in self.segments for name in names}

    def render(self, values: dict[str, str]) -> str:
        """The filled template; segments naming an empty (or missing) field vanish with the separator before them."""
        kept: list[tuple[str, str]] = []
        for separator, segment, names in self.segments:
            if any(not values.get(name) for name in names):
                continue
            text = segment.format(**{name: values[name] for name in names}).strip()
            if text:
                kept.append((separator, text))
        return "".join((separator if i else "") + text for i, (separator, text) in enumerate(kept))


def effective_template(args: FinetuneArguments) -> CaptionTemplate:
    return CaptionTemplate(args.caption_template if args.caption_template is not None else DEFAULT_TEMPLATE)


def check_caption_options(args: FinetuneArguments) -> None:
    """Config-time checks of the captioning options (called by :func:`musicgen_lora.config.parse_config`).

    Raises:
        UserError: a bad template, a field the options cannot fill, labels or threshold out of range, no CLAP folder.
    """
    template = effective_template(args)
    if args.caption_template is not None:  # an explicit template: every field it names must be fillable
        analysis_fields = sorted(template.fields & set(ANALYSIS_FIELDS))
        if analysis_fields and not args.add_metadata:
            raise UserError(
                f"caption_template names {', '.join('{' + f + '}' for f in analysis_fields)}, which add_metadata "
                "measures; set add_metadata true or take the field out of caption_template"
            )
        tag_fields = sorted(template.fields & set(TAG_FIELDS))
        if tag_fields and not args.clap_model_name_or_path:
            raise UserError(
                f"caption_template names {', '.join('{' + f + '}' for f in tag_fields)}, which CLAP tagging fills; set "
                "clap_model_name_or_path to a local CLAP folder or take the field out of caption_template"
            )
        if args.clap_model_name_or_path and not tag_fields:
            raise UserError(
                "clap_model_name_or_path is set but caption_template names no tag field ({tags}, {genre}, {mood}, "
                "{instrument}); add one, or unset clap_model_name_or_path"
            )
    if not 0 <= args.clap_tag_threshold <= 1:
        raise UserError(f"clap_tag_threshold must be a probability in [0, 1], got {args.clap_tag_threshold}; "
                        "change it (e.g. 0.2)")  # fmt: skip
    for name in TAG_SETS:
        labels = getattr(args, f"clap_{name}_labels")
        if any(not isinstance(label, str) or not label.strip() for label in labels):
            raise UserError(f"clap_{name}_labels holds an empty label; give words like 'jazz' (an empty list turns "
                            "the set off)")  # fmt: skip
        if len(set(labels)) != len(labels):
            raise UserError(f"clap_{name}_labels names a label twice; give each label once")
    if args.clap_model_name_or_path:
        from .clap import check_clap_folder

        check_clap_folder(args.clap_model_name_or_path, "clap_model_name_or_path")
    if args.push_metadata_repo_id is not None:
        from .hub import looks_like_hub_id

        if not looks_like_hub_id(args.push_metadata_repo_id):
            raise UserError(f"push_metadata_repo_id '{args.push_metadata_repo_id}' is not a Hub repository id; set it "
                            "like 'your-name/my-songs-captioned'")  # fmt: skip
    if args.demucs_model_path:
        from .vocals import check_demucs_path

        check_demucs_path(args.demucs_model_path)
    if args.demucs_model_path and getattr(args, "streaming", False):  # (CLAP and the push: checked with streaming)
        raise UserError("streaming keeps only each clip's codes, so it cannot be combined with demucs_model_path; "
                        "unset it or set streaming false")  # fmt: skip


# ---------------------------------------------------------------------------------------------- measurements


def source_identity(source: Any) -> str:
    """What identifies an audio source's content: a hash of its bytes, or its path, size and modification time."""
    if isinstance(source, dict) and source.get("bytes"):
        return "bytes:" + hashlib.sha256(source["bytes"]).hexdigest()
    path = source.get("path") if isinstance(source, dict) else source
    path = os.fspath(path)
    stat = os.stat(path) if os.path.exists(path) else None
    return json.dumps([os.path.abspath(path), stat and stat.st_size, stat and stat.st_mtime_ns, ANALYSIS_VERSION])


def _central(mono: np.ndarray, sr: int) -> np.ndarray:
    excerpt = int(EXCERPT_SECONDS * sr)
    if len(mono) > excerpt:
        start = (len(mono) - excerpt) // 2
        mono = mono[start : start + excerpt]
    return mono


def measure(audio: np.ndarray, sr: int) -> dict[str, Any]:
    """Tempo (bpm, rounded) and key of (channels, samples) audio, on its central excerpt; None where not measurable."""
    mono = _central(analysis.to_mono(audio), sr)
    tempo = analysis.estimate_tempo(mono, sr)
    key = analysis.estimate_key(mono, sr)
    return {"bpm": None if tempo is None else int(round(tempo.bpm)), "key": None if key is None else key.key}


def measure_level(audio: np.ndarray, sr: int) -> dict[str, Any]:
    """Integrated loudness (LUFS) and peak of the whole track, and the spectral centroid (Hz) of its central excerpt;
    None where not measurable (silence)."""
    lufs = analysis.integrated_loudness(audio, sr)
    return {
        "lufs": lufs if math.isfinite(lufs) else None,
        "peak": float(np.abs(audio).max()),
        "centroid_hz": analysis.spectral_centroid(_central(analysis.to_mono(audio), sr), sr),
    }


def _cache_path(cache_root: Path, kind: str, identity: str) -> Path:
    digest = hashlib.sha256(f"{kind}|{identity}".encode()).hexdigest()[:24]
    return cache_root / "analysis" / f"{kind.split('|')[0]}-{digest}.json"


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(f".{os.getpid()}.tmp")
    staging.write_text(json.dumps(value), encoding="utf-8")
    os.replace(staging, path)  # never a half-written estimate


def cached_measures(source: Any, cache_root: Path, computes: dict[str, Callable[[np.ndarray, int], Any]]) -> dict[str, Any]:
    """``{kind: compute(audio, sr)}`` of one audio source, each cached as JSON under ``cache_root/analysis`` by the
    source's identity and its ``kind`` (which must name everything its ``compute`` depends on). The audio is decoded
    once, and only when some kind is not cached yet."""
    identity = source_identity(source)
    results: dict[str, Any] = {}
    audio = None
    for kind, compute in computes.items():
        path = _cache_path(cache_root, kind, identity)
        if path.is_file():
            results[kind] = json.loads(path.read_text(encoding="utf-8"))
            continue
        if audio is None:
            audio = decode_audio(source)
        results[kind] = compute(*audio)
        _write_json(path, results[kind])
    return results


def cached_measure(source: Any, cache_root: Path, kind: str, compute: Callable[[np.ndarray, int], Any]) -> Any:
    """``compute(audio, sr)`` of one audio source, cached (see :func:`cached_measures`)."""
    return cached_measures(source, cache_root, {kind: compute})[kind]


def _states_key(caption: str) -> bool:
    return any(analysis.parse_key(part) is not None for part in re.split(r"[,;]", caption))


def _word(value: float | None, table: tuple[tuple[float, str], ...]) -> str:
    if value is None:
        return ""
    return next(word for bound, word in table if value < bound)


def heard_loudness(lufs: float | None, peak: float, target: float | None) -> float | None:
    """The loudness the model hears: the recording's, or with ``loudness_target_lufs`` the target, lowered where
    normalisation had to stop at full scale (as :func:`musicgen_lora.data.normalize_loudness` does)."""
    if lufs is None or target is None:
        return lufs
    return min(target, lufs - 20 * math.log10(max(peak, 1e-12)))


# ------------------------------------------------------------------------------------------------- CLAP tags


def clap_excerpts(mono: np.ndarray, sr: int, window_seconds: float) -> list[np.ndarray]:
    """Up to CLAP_EXCERPTS windows of ``window_seconds`` at fixed, evenly spread places (the whole clip if shorter)."""
    window = int(window_seconds * sr)
    if len(mono) <= window:
        return [mono]
    count = min(CLAP_EXCERPTS, math.ceil(len(mono) / window))
    starts = [int((len(mono) - window) * (i + 1) / (count + 1)) for i in range(count)]
    return [mono[start : start + window] for start in starts]


class ClapTagger:
    """Zero-shot tags from a local CLAP checkpoint, loaded only when something is not cached yet."""

    def __init__(self, args: FinetuneArguments, cache_root: Path):
        from .clap import local_fingerprint

        self.path = args.clap_model_name_or_path
        self.cache_root = cache_root
        self.fingerprint = local_fingerprint(self.path)
        self.threshold = args.clap_tag_threshold
        self.labels = {name: list(getattr(args, f"clap_{name}_labels")) for name in TAG_SETS}
        self._clap: Clap | None = None
        self._text: dict[str, Any] | None = None

    @property
    def clap(self) -> Clap:
        if self._clap is None:
            import torch

            from .clap import Clap

            device = "cuda" if torch.cuda.is_available() else "cpu"
            self._clap = Clap(self.path, "clap_model_name_or_path", device)
            logger.info("Tagging tracks with CLAP (%s)", self.path)
        return self._clap

    @property
    def kind(self) -> str:
        """Cache kind of a track's audio embedding: the checkpoint and the excerpt scheme."""
        return f"clap|{self.fingerprint}|{CLAP_VERSION}"

    def embed(self, audio: np.ndarray, sr: int) -> list[float]:
        """One track's CLAP embedding: the normalised mean of its excerpts' embeddings."""
        clap = self.clap
        mono = analysis.to_mono(audio).astype(np.float32)
        excerpts = clap_excerpts(mono, sr, clap.window_seconds)
        mean = clap.audio_embeddings(excerpts, sr).mean(dim=0)
        return (mean / mean.norm().clamp_min(1e-12)).tolist()

    def text_embeddings(self) -> dict[str, Any]:
        """Each set's label prompts embedded, and CLAP's logit scale (cached per checkpoint and prompts)."""
        if self._text is None:
            prompts = {name: [LABEL_PROMPTS[name].format(label) for label in labels] for name, labels in self.labels.items()}
            path = _cache_path(self.cache_root, "clap-text", json.dumps([self.fingerprint, prompts]))
            if path.is_file():
                self._text = json.loads(path.read_text(encoding="utf-8"))
            else:
                every = [p for name in TAG_SETS for p in prompts[name]]
                vectors = self.clap.text_embeddings(every).tolist() if every else []
                self._text = {"scale": self.clap.logit_scale, "sets": {}}
                for name in TAG_SETS:
                    self._text["sets"][name], vectors = vectors[: len(prompts[name])], vectors[len(prompts[name]) :]
                _write_json(path, self._text)
        return self._text

    def probabilities(self, embedding: list[float]) -> dict[str, dict[str, float]]:
        """Per set, each label's probability (softmax of CLAP's scaled similarities, as transformers' zero-shot
        audio classification pipeline computes them)."""
        text = self.text_embeddings()
        audio = np.asarray(embedding, dtype=np.float64)
        out = {}
        for name in TAG_SETS:
            if not self.labels[name]:
                continue
            logits = text["scale"] * (np.asarray(text["sets"][name], dtype=np.float64) @ audio)
            probs = np.exp(logits - logits.max())
            out[name] = dict(zip(self.labels[name], (probs / probs.sum()).tolist()))
        return out

    def tags(self, embedding: list[float]) -> dict[str, str]:
        """Per set, its most probable label when that probability reaches the threshold, else ``""``."""
        tags = {name: "" for name in TAG_SETS}
        for name, probs in self.probabilities(embedding).items():
            label, prob = max(probs.items(), key=lambda item: item[1])
            if prob >= self.threshold:
                tags[name] = label
        return tags


# ------------------------------------------------------------------------------------------------- captions


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
    metadata = measured.get("metadata") or {}
    if metadata.get("bpm") is not None and not _BPM_WORDS.search(stated):
        values["bpm"] = str(metadata["bpm"])
    if metadata.get("key") and not _states_key(stated):
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


def caption_tracks(
    raw: datasets.Dataset,
    args: FinetuneArguments,
    cache_root: Path,
    stats: dict[str, Any] | None = None,
    progress: Callable[..., Any] | None = None,
) -> tuple[list[str], list[dict[str, Any]]]:
    """Every track's final caption, and what was measured for it (for the pushed metadata).

    Args:
        stats: when given, ``auto_captioned`` is set to the number of tracks whose caption got a measured field.
        progress: wraps the iteration over the tracks when something is measured (a tqdm-like progress bar).

    Returns:
        ``(captions, measured)``; ``measured[i]`` holds ``metadata`` (bpm, key), ``level`` (lufs, peak,
        centroid_hz) and ``tags`` where the options asked for them.

    Raises:
        UserError: a track ends up with an empty caption (no caption, no instance_prompt and nothing measured).
    """
    template = effective_template(args)
    if args.push_metadata_repo_id:  # fail before the work, not after it
        check_can_push_metadata(args.push_metadata_repo_id)
    computes: dict[str, Callable[[np.ndarray, int], Any]] = {}
    if args.add_metadata and template.fields & {"bpm", "key"}:
        computes["metadata"] = lambda audio, sr: measure(audio, sr)
    if args.add_metadata and template.fields & {"lufs", "loudness", "brightness"}:
        computes["level"] = measure_level
    tagger = None
    if args.clap_model_name_or_path and template.fields & set(TAG_FIELDS):
        tagger = ClapTagger(args, cache_root)
        computes[tagger.kind] = tagger.embed
    texts = raw["text"]
    captions, measured, missing, added = [], [], [], 0
    sources = raw["audio"] if computes else [None] * len(raw)
    if computes and progress is not None:
        sources = progress(iterable=sources, desc="Measuring tracks for captions", unit="track")
    for index, (source, text) in enumerate(zip(sources, texts)):
        found = cached_measures(source, cache_root, computes) if computes else {}
        if tagger is not None:
            found["tags"] = tagger.tags(found.pop(tagger.kind))
        fields = track_fields(text, args.instance_prompt, found, args.loudness_target_lufs, "caption" in template.fields)
        caption = template.render(fields)
        plain = template.render({**fields, **{name: "" for name in (*ANALYSIS_FIELDS, *TAG_FIELDS)}})
        added += caption != plain
        if not caption:
            missing.append(index)
        captions.append(caption)
        measured.append(found)
    if missing:
        first = describe_source(raw[missing[0]]["audio"])
        raise UserError(
            f"{len(missing)} clip(s) have no caption (first: '{first}'); add captions (metadata text column or .txt "
            "files) or set instance_prompt to caption every clip"
        )
    if stats is not None:
        stats["auto_captioned"] = added
    return captions, measured


# ------------------------------------------------------------------------------------------ push the captions


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return constants.is_offline_mode() or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def check_can_push_metadata(repo_id: str) -> None:
    """Before any work: the Hub is reachable in principle and a token is there.

    Raises:
        UserError: ``HF_HUB_OFFLINE`` is set, or no token.
    """
    from huggingface_hub import get_token

    if _hub_offline():
        raise UserError(f"push_metadata_repo_id '{repo_id}' needs the Hub, but HF_HUB_OFFLINE is set; unset it, or "
                        "unset push_metadata_repo_id")  # fmt: skip
    if not get_token():
        raise UserError(f"push_metadata_repo_id '{repo_id}' needs a Hub token; set HF_TOKEN or run `hf auth login`, "
                        "or unset push_metadata_repo_id")  # fmt: skip


def _pushed_name(index: int, source: Any) -> str:
    """A unique file name for one track in the pushed split: its index, then its own name (or its format)."""
    path = source.get("path") if isinstance(source, dict) else source
    if path:
        return f"{index:05d}-{Path(os.fspath(path)).name}"
    import io

    import soundfile as sf

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
    args: FinetuneArguments,
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
    from huggingface_hub import CommitOperationAdd, HfApi

    from .hub import call_with_retries

    repo_id = args.push_metadata_repo_id
    rows, files = [], []
    for index, (source, caption, found, own) in enumerate(zip(raw["audio"], captions, measured, raw["text"])):
        name = _pushed_name(index, source)
        rows.append({"file_name": name, "text": caption, "own_caption": (own or "").strip() or None, **_measured_columns(found)})
        content = source["bytes"] if isinstance(source, dict) and source.get("bytes") else source
        content = content.get("path") if isinstance(content, dict) else content
        files.append((f"data/{split}/{name}", content, source_identity(source)))
    metadata = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
    splits = ["train", "eval"] if (args.eval_split_name or args.eval_split_percentage > 0) else ["train"]
    card = dataset_card(repo_id, splits).encode()
    endpoint = os.environ.get("HF_ENDPOINT") or None
    identity = json.dumps([endpoint, repo_id, split, metadata.decode(), card.decode(), [f[2] for f in files]])
    marker = cache_root / "pushed" / (hashlib.sha256(identity.encode()).hexdigest()[:24] + ".json")
    if marker.is_file():
        logger.info("The captioned %s split is already on %s (same files and captions); not pushed again", split, repo_id)
        return None
    api = HfApi(endpoint=endpoint)

    def push_once() -> str:
        url = api.create_repo(repo_id, repo_type="dataset", private=True, exist_ok=True)  # private unless it exists
        operations = [
            CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card),
            CommitOperationAdd(path_in_repo=f"data/{split}/metadata.jsonl", path_or_fileobj=metadata),
        ] + [CommitOperationAdd(path_in_repo=path, path_or_fileobj=content) for path, content, _ in files]
        api.create_commit(url.repo_id, operations, repo_type="dataset",
                          commit_message=f"Captioned {split} split: {len(rows)} tracks")  # fmt: skip
        return str(url)

    advice = ("the local caches are intact: run again to retry (nothing is encoded or measured again), or unset "
              "push_metadata_repo_id")  # fmt: skip
    url = call_with_retries(push_once, f"pushing the captioned {split} split to dataset '{repo_id}'", advice, attempts,
                            wait_seconds)  # fmt: skip
    _write_json(marker, {"repo_id": repo_id, "split": split, "tracks": len(rows), "url": url})
    logger.info("Pushed the captioned %s split (%d tracks) to %s", split, len(rows), url)
    return url
