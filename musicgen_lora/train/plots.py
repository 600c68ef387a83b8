"""A PNG of the loss curves (train, eval, and each codebook's cross-entropy), for users without a tracker.

Written to ``OUTPUT_DIR/loss_curves.png`` at the end of every training run, from the Trainer's log history; again at
any time from a finished run's ``trainer_state.json``::

    python -m musicgen_lora.plots OUTPUT_DIR

matplotlib draws without pyplot (no global backend state, no display needed)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..errors import CommandLineParser, UserError, exit_on_user_error
from ..files import read_json_object

logger = logging.getLogger(__name__)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _series(log_history: list[Any], key: str) -> tuple[list[float], list[float]]:
    """The (step, value) points of one logged quantity; records that are not well-formed (a hand-edited or damaged
    trainer_state.json) are left out."""
    steps, values = [], []
    for record in log_history:
        if isinstance(record, dict) and _number(record.get(key)) and _number(record.get("step")):
            steps.append(record["step"])
            values.append(float(record[key]))
    return steps, values


def plot_loss_curves(log_history: list[dict[str, Any]], path: str | Path) -> Path:
    """Draw the training and evaluation losses (left) and the per-codebook cross-entropy (right) to a PNG.

    Args:
        log_history: the Trainer's ``state.log_history`` (records with ``step`` and ``loss`` / ``eval_loss`` /
            ``ce_q1``... / ``eval_ce_q1``...).
        path: the PNG to write.

    Returns:
        ``path``.

    Raises:
        UserError: there is no logged loss to draw.
    """
    train = _series(log_history, "loss")
    evaluation = _series(log_history, "eval_loss")
    if not train[0] and not evaluation[0]:
        raise UserError("no loss was logged (too few steps for logging_steps?); lower logging_steps to get curves")
    names = {k for record in log_history if isinstance(record, dict) for k in record if isinstance(k, str)}
    codebooks = sorted(
        (k for k in names if k.startswith("ce_q") and k.removeprefix("ce_q").isdigit()),
        key=lambda k: int(k.removeprefix("ce_q")),
    )
    figure = Figure(figsize=(11, 4), dpi=100)
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    if train[0]:
        left.plot(*train, label="train", color="C0", marker="." if len(train[0]) < 30 else None)
    if evaluation[0]:
        left.plot(*evaluation, label="eval", color="C1", marker="o")
    left.set(title="loss (mean cross-entropy over codebooks)", xlabel="optimizer step", ylabel="cross-entropy (nats)")
    left.grid(alpha=0.3)
    left.legend()
    for index, key in enumerate(codebooks):
        color = f"C{index % 10}"
        right.plot(*_series(log_history, key), color=color, label=f"q{key.removeprefix('ce_q')} train")
        steps, values = _series(log_history, f"eval_{key}")
        if steps:
            right.plot(
                steps, values, color=color, linestyle="--", marker="o", label=f"q{key.removeprefix('ce_q')} eval"
            )
    right.set(title="per codebook (q1 = coarsest)", xlabel="optimizer step", ylabel="cross-entropy (nats)")
    right.grid(alpha=0.3)
    if codebooks:
        right.legend(fontsize="small", ncol=2)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, format="png")
    return path


def plot_loss_curves_if_possible(log_history: list[dict[str, Any]], path: str | Path) -> Path | None:
    """:func:`plot_loss_curves` at the end of training: an empty history is only a warning."""
    try:
        return plot_loss_curves(log_history, path)
    except UserError as err:
        logger.warning("%s", err)
        return None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = CommandLineParser(
        prog="python -m musicgen_lora.plots",
        description="Draw OUTPUT_DIR/loss_curves.png from a finished run's trainer_state.json.",
    )
    parser.add_argument("output_dir", metavar="OUTPUT_DIR", help="a training run's output folder")
    with exit_on_user_error(argv):
        options = parser.parse_args(argv)
        state_file = Path(options.output_dir) / "trainer_state.json"
        if not state_file.is_file():
            raise UserError(f"'{state_file}' not found; give the output_dir of a finished training run")
        history = read_json_object(state_file).get("log_history")
        if not isinstance(history, list):
            raise UserError(
                f"'{state_file}' holds no log history (damaged?); give the output_dir of a finished training run"
            )
        path = plot_loss_curves(history, Path(options.output_dir) / "loss_curves.png")
        print(path)
        return {"plot": str(path)}
