"""The ``caption_template`` option: its fields, its default, its parsing and how it renders.

A caption is the template with its fields filled in (see :data:`FIELDS`); the default, :data:`DEFAULT_TEMPLATE`,
gives ``"<instance_prompt>, <own caption>, <tags>, <tempo> bpm, <key>"``. The template is cut at its commas and
semicolons into segments; a segment with an empty field vanishes together with the separator before it, so a track
without a caption, a tempo or tags gets no dangling commas (``"{bpm} bpm"`` vanishes whole when no tempo was
measured). What fills the fields is measured in :mod:`musicgen_lora.prepare.captions`; the default CLAP labels
(:data:`DEFAULT_LABELS`) are option defaults, so they live here too."""

from __future__ import annotations

import re
import string

from ..errors import UserError

DEFAULT_TEMPLATE = "{prompt}, {caption}, {tags}, {bpm} bpm, {key}"


TAG_SETS = ("genre", "mood", "instrument")


ANALYSIS_FIELDS = ("bpm", "key", "lufs", "loudness", "brightness")


TAG_FIELDS = ("tags", *TAG_SETS)


FIELDS = ("prompt", "caption", *ANALYSIS_FIELDS, *TAG_FIELDS)


FIELD_HELP = {
    "prompt": "instance_prompt",
    "caption": "the track's own caption",
    "bpm": "estimated tempo, a whole number ('85'; '85 or 170' where the tempo is in doubt; write '{bpm} bpm')",
    "key": "estimated key with mode ('A minor')",
    "lufs": "integrated loudness ('-14 LUFS')",
    "loudness": "loudness as a word (LOUDNESS_WORDS)",
    "brightness": "brightness as a word (BRIGHTNESS_WORDS)",
    "tags": "the CLAP tags found, genre, mood, instrument, comma-separated",
    "genre": "the CLAP genre tag",
    "mood": "the CLAP mood tag",
    "instrument": "the CLAP instrument tag",
}


DEFAULT_LABELS = {
    "genre": ["rock", "pop", "jazz", "classical", "electronic", "hip hop", "lofi hip hop", "ambient", "techno",
              "house", "metal", "punk", "folk", "blues", "funk", "reggae", "country", "soul", "cinematic"],
    "mood": ["happy", "sad", "calm", "energetic", "dark", "uplifting", "melancholic", "aggressive", "romantic",
             "dreamy", "tense", "relaxing"],
    "instrument": ["piano", "acoustic guitar", "electric guitar", "bass guitar", "drums", "synthesizer", "strings",
                   "violin", "brass", "saxophone", "flute", "organ", "vocals"],
}  # fmt: skip


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
                raise UserError(
                    f"{option} {text!r} is not a valid template ({err}); write fields as {{name}}, "
                    "a literal brace as {{ or }}"
                ) from None
            for name in names:
                if name not in FIELDS:
                    raise UserError(
                        f"{option} {text!r} has an unknown field {{{name}}}; the fields are "
                        + ", ".join(f"{{{f}}}" for f in FIELDS)
                    )
            try:
                segment.format(**{name: "x" for name in FIELDS})
            except (ValueError, KeyError, IndexError, AttributeError) as err:
                raise UserError(
                    f"{option} {text!r}: segment {segment!r} cannot be filled ({err}); write fields as {{name}}"
                ) from None
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


def effective_template(caption_template: str | None) -> CaptionTemplate:
    """The ``caption_template`` option parsed, or :data:`DEFAULT_TEMPLATE` when it is unset."""
    return CaptionTemplate(caption_template if caption_template is not None else DEFAULT_TEMPLATE)
