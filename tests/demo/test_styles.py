"""Tests for musicgen_lora.demo.styles: the genre tables are distinct and everything they name exists."""

from __future__ import annotations

from musicgen_lora.demo.instruments import TIMBRES
from musicgen_lora.demo.styles import GENRES, STEPS_PER_BAR

# ----------------------------------------------------------------------------------------------------------
# Determinism
# ----------------------------------------------------------------------------------------------------------


def test_every_style_names_known_voices_and_fits_the_grid():
    """A typo in a table would only fail when a clip of that genre is rendered: checked here for every genre."""
    for name, style in GENRES.items():
        assert {style.instrument, style.chord_timbre, style.bass_timbre} <= set(TIMBRES), name
        assert style.snare_kind in ("snare", "clap", "rim") and style.hat_kind in ("hat", "shaker"), name
        assert all(len(row) == STEPS_PER_BAR for row in (style.kick, style.snare, style.hats, style.open_hats)), name
        assert all(0 <= step < STEPS_PER_BAR for step, _ in style.chord_rhythm), name
        assert all(0 <= step < STEPS_PER_BAR for step, *_ in style.bass_rhythm), name
        assert style.bpm_range[0] <= style.bpm_range[1] and style.lead_mode in ("melody", "arp"), name
        for progression in style.progressions_major + style.progressions_minor:
            assert progression[0] == 0 and all(0 <= degree < 7 for degree in progression), name
