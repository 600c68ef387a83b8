"""How many optimizer steps a run will take, and a warning before training when that is too few to change the music.

With Adam each optimizer step moves every adapter weight by about the learning rate, whatever the batch: the number
of steps, not the number of epochs, decides whether an adapter moves far enough to be heard. A folder of 16 full-length
songs without ``chunk_long_tracks`` is 16 examples; at batch 2 x accumulation 8 and 4 epochs that is 4 steps, over
in a minute, with an adapter that sounds like the base model. The README's *Recipe* asks for at least
``MIN_OPTIMIZER_STEPS``.
"""

from __future__ import annotations

import logging
import math

from transformers import TrainingArguments

logger = logging.getLogger(__name__)

# The recipe's floor (README, *Recipe*): the fewest optimizer steps after which a LoRA run at the recipe's learning
# rate is worth listening to; below it training starts with a warning naming the fix.
MIN_OPTIMIZER_STEPS = 50


def planned_optimizer_steps(num_examples: int, training: TrainingArguments) -> int:
    """The optimizer steps ``transformers.Trainer`` will take on ``num_examples`` training examples: ``max_steps``
    when set, else ``num_train_epochs`` times the steps of one epoch, counted as Trainer counts them (batches of
    ``train_batch_size`` shared out among ``world_size`` processes, accelerate's ``even_batches``, then
    ``gradient_accumulation_steps`` batches a step, a last partial group included).

    Args:
        num_examples: rows of the prepared training split (chunks, when ``chunk_long_tracks`` cut the tracks).
        training: the run's training arguments.
    """
    if training.max_steps > 0:
        return training.max_steps
    batch, processes = training.train_batch_size, max(training.world_size, 1)
    if training.dataloader_drop_last:
        batches = num_examples // batch // processes
    else:
        batches = math.ceil(math.ceil(num_examples / batch) / processes)
    per_epoch = max(math.ceil(batches / training.gradient_accumulation_steps), 1)
    return math.ceil(training.num_train_epochs * per_epoch)


def warn_if_few_steps(num_examples: int, training: TrainingArguments, chunked: bool) -> int:
    """Warn (on the process that logs) when the run will take fewer than ``MIN_OPTIMIZER_STEPS`` optimizer steps,
    naming the option that fixes it; called once the training split is prepared and its size is known.

    Args:
        num_examples: rows of the prepared training split.
        training: the run's training arguments.
        chunked: ``chunk_long_tracks`` is on (else it is the first fix named: a long track is one example).

    Returns:
        The planned number of optimizer steps.
    """
    steps = planned_optimizer_steps(num_examples, training)
    if steps >= MIN_OPTIMIZER_STEPS or not training.should_log:
        return steps
    if training.max_steps > 0:
        why = f"max_steps is {training.max_steps}"
        fix = "raise max_steps"
    else:
        per_step = training.train_batch_size * max(training.world_size, 1) * training.gradient_accumulation_steps
        why = (
            f"{num_examples} training examples at {per_step} a step (batch {training.per_device_train_batch_size} x "
            f"accumulation {training.gradient_accumulation_steps}"
            + (f" x {training.world_size} processes" if training.world_size > 1 else "")
            + f") for {training.num_train_epochs:g} epochs"
        )
        chunking = "set chunk_long_tracks true (a long track becomes one example per max_duration_in_seconds)"
        fixes = [] if chunked else [chunking]
        fixes += ["lower gradient_accumulation_steps", "raise num_train_epochs", "or set max_steps"]
        fix = ", ".join(fixes)
    logger.warning(
        "Only %d optimizer steps planned (%s): fewer than %d, too few for the adapter to change the music; %s "
        "(see the README's Recipe).",
        steps,
        why,
        MIN_OPTIMIZER_STEPS,
        fix,
    )
    return steps
