"""Tests for musicgen_lora.demo.dsp: the Butterworth filters pass, cut and cascade as a Butterworth filter does."""

from __future__ import annotations

import numpy as np
import pytest

from musicgen_lora.demo.dsp import butterworth, time_axis

SR = 32000


def gain(freq: float, **cutoffs: float) -> float:
    """Steady-state amplitude gain of butterworth() for a sine at ``freq`` (the first 0.2 s, its transient, skipped)."""
    t = time_axis(SR, SR)
    x = np.sin(2 * np.pi * freq * t)
    y = butterworth(x, SR, **cutoffs)
    return float(np.sqrt(np.mean(y[SR // 5 :] ** 2)) / np.sqrt(np.mean(x[SR // 5 :] ** 2)))


def test_time_axis_is_float32_seconds():
    t = time_axis(4, 8000)
    assert t.dtype == np.float32 and np.allclose(t, [0, 1 / 8000, 2 / 8000, 3 / 8000])


@pytest.mark.parametrize(("freq", "cutoffs"), [(4000.0, {"lowpass": 4000.0}), (200.0, {"highpass": 200.0})])
def test_cutoff_is_minus_3_db(freq, cutoffs):
    assert gain(freq, **cutoffs) == pytest.approx(1 / np.sqrt(2), rel=0.03)


def test_lowpass_passes_the_band_and_cuts_12_db_per_octave_above():
    assert gain(125.0, lowpass=1000.0) == pytest.approx(1.0, abs=0.01)
    for octaves in (1, 2):  # order 2: |H| = 1 / sqrt(1 + (f / fc) ** 4) (well below Nyquist, where digital = analogue)
        expected_db = -10 * np.log10(1 + 2.0 ** (4 * octaves))
        assert 20 * np.log10(gain(1000.0 * 2**octaves, lowpass=1000.0)) == pytest.approx(expected_db, abs=1.0)


def test_band_pass_is_the_two_filters_in_series():
    for freq in (60.0, 1000.0, 9000.0):
        both = gain(freq, highpass=120.0, lowpass=5000.0)
        assert both == pytest.approx(gain(freq, highpass=120.0) * gain(freq, lowpass=5000.0), rel=0.02)


def test_cutoffs_above_nyquist_are_clamped_and_no_cutoff_is_identity():
    x = np.random.default_rng(0).standard_normal(8000)
    assert np.all(np.isfinite(butterworth(x, 8000, highpass=7000.0, lowpass=10000.0)))  # 3200 Hz and 3600 Hz
    assert butterworth(x, 8000) is x
