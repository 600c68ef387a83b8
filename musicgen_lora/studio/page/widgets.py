"""Pieces the tabs share: the page's CSS and head script, the progress bar, plots that draw what they are given, and
the log boxes that open at their end."""

from __future__ import annotations

import html

import gradio as gr
import pandas as pd

CSS = """
.studio-bar { display: flex; align-items: center; gap: .6em; margin: .2em 0 .4em; }
.studio-bar progress { flex: 1; height: 1.1em; accent-color: var(--color-accent); }
.studio-bar .studio-bar-text { font-weight: 600; }
#tracks th .header { white-space: nowrap !important; word-break: keep-all !important;
  overflow-wrap: normal !important; }
#tracks td { word-break: normal; overflow-wrap: anywhere; }
#tracks .body-cell, #tracks th { font-family: var(--font); }  /* prose: a third more a line than mono */
.gallery-prompt { padding-top: .5em; }
.gallery-prompt, .gallery-prompt p { font-weight: 600; }
.gallery-row { align-items: stretch; }
"""


# Gradio 6.31's plots watch their chart's size with a ResizeObserver and never stop watching an old chart. When a plot
# in a hidden tab is emptied (None: another project with no data), Chromium reports the removed chart's size, and the
# plot's handler reads its container, gone by then: "TypeError: Cannot read properties of null (reading
# 'offsetWidth')" in the page, once per stale observer (six to ten after one switch of project). A size report about an
# element that is no longer in the page is of no use to anyone, so the page does not deliver it. Gradio runs the
# head's scripts before it draws the components, so every observer is made by this class.
HEAD = """<script>
(() => {
  const Native = window.ResizeObserver;
  if (!Native) return;
  window.ResizeObserver = class extends Native {
    constructor(callback) {
      super((entries, observer) => {
        const shown = entries.filter((entry) => entry.target.isConnected);
        if (shown.length) callback(shown, observer);
      });
    }
  };
})();
</script>"""

# Gradio shows a timer in an event's outputs while it runs, over the message a person should read (and grey): the
# page's events run quietly and say what they do themselves (a progress bar, a "Pushing…" message).
QUIET = {"show_progress": "hidden"}


def scroll_to_end(elem_id: str) -> str:
    """JavaScript that shows a log box's end once its accordion has opened (Gradio keeps a box's scroll position at
    the top otherwise): it waits for the box to have a height, a few frames at most."""
    return (
        f"() => {{ let tries = 0; const go = () => {{ const box = document.querySelector('#{elem_id} textarea'); "
        "if (box && box.scrollHeight > 0) { box.scrollTop = box.scrollHeight; } "
        "if (tries++ < 20) requestAnimationFrame(go); }; go(); return []; }"
    )


def bar_html(fraction: float | None, text: str, busy: bool = False) -> str:
    """A progress bar with its text (``fraction`` None: the text only, or with ``busy`` a bar that says work goes on
    without saying how far)."""
    words = f'<span class="studio-bar-text">{html.escape(text)}</span>' if text else ""
    if fraction is None:
        bar = '<progress aria-label="working"></progress>' if busy else ""
        return f'<div class="studio-bar" data-fraction="">{bar}{words}</div>'
    fraction = min(max(float(fraction), 0.0), 1.0)
    return (
        f'<div class="studio-bar" data-fraction="{fraction:.4f}"><progress max="1" value="{fraction:.4f}">'
        f"{100 * fraction:.0f} %</progress>{words}</div>"
    )


def bar_plot(x: str, y: str, title: str, elem_id: str) -> gr.BarPlot:
    """A bar plot that starts empty (``None``, see :func:`bar_update`)."""
    return gr.BarPlot(
        None,
        x=x,
        y=y,
        title=title,
        height=240,
        y_lim=[0, 5],
        y_axis_format="d",
        x_label_angle=-40,
        elem_id=elem_id,
    )


def bar_update(frame: pd.DataFrame) -> dict:
    """A bar plot's new data, its bins in the given order and its y axis in whole numbers (at least 0-5, so the axis
    never ticks at fractions of a track). No data is ``None``: Gradio 6.31 keeps drawing a bar plot's previous bars
    when it is given an empty frame (another project's keys stayed up after a switch), and draws nothing it is
    given after that; a plot that starts from ``None`` and is emptied with ``None`` draws each update."""
    if not len(frame):
        return gr.update(value=None)
    top = int(frame.iloc[:, 1].max())
    return gr.update(value=frame, sort=list(frame.iloc[:, 0]), y_lim=[0, max(5, top)])


def line_plot(title: str, y_title: str, color_title: str, elem_id: str) -> gr.LinePlot:
    """A line plot that starts empty (``None``): Gradio 6 fixes a plot's colour scale at the first data it draws, and
    a plot that started from an empty frame draws its lines with no stroke (see :func:`curves`)."""
    return gr.LinePlot(
        None,
        x="step",
        y="value",
        color="curve",
        title=title,
        y_title=y_title,  # (the frame's column is "value")
        color_title=color_title,
        height=260,
        x_axis_format="d",
        elem_id=elem_id,
    )


def curve_names(frame: pd.DataFrame) -> tuple[str, ...]:
    return tuple(sorted(set(frame["curve"]))) if len(frame) else ()
