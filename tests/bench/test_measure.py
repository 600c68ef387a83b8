"""Tests of the benchmark's instruments: the FLOP count of a LoRA step, the peak-RSS reset, and the step timer's rule
for steps taken at full speed."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch.utils.flop_counter import FlopCounterMode

from musicgen_lora.bench import measure
from musicgen_lora.config.arguments import LoraArguments, ModelArguments
from musicgen_lora.models.loading import load_model_and_processor
from musicgen_lora.train.collator import MusicgenCollator
from musicgen_lora.train.lora import add_trainable_parts


def test_counted_flops_of_a_lora_step_are_about_twice_the_forward(tiny_model_dir):
    """The counter sees the forward and the input-gradient backward of the frozen layers (not their weight
    gradients)."""
    model, processor = load_model_and_processor(ModelArguments(model_name_or_path=str(tiny_model_dir)))
    model = add_trainable_parts(model, LoraArguments())
    collator = MusicgenCollator(processor.tokenizer, pad_token_id=64, decoder_start_token_id=64, max_frames=200)
    batch = collator([{"codes": torch.randint(0, 64, (4, 150)).tolist(), "text": "lofi piano"}] * 2)
    step = measure.count_step_flops(model, batch)
    assert model.get_base_model().config.decoder._attn_implementation == "sdpa"  # restored after counting
    assert all(p.grad is None for p in model.parameters())
    model.get_base_model().set_attn_implementation({"decoder": "eager", "text_encoder": "eager"})
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(**{k: v for k, v in batch.items() if k != "labels"})
    forward = counter.get_total_flops()
    assert 1.8 * forward < step < 2.6 * forward


def test_peak_rss_can_be_reset_between_measurements():
    before = measure.peak_rss_bytes()
    block = torch.ones(64 * 2**20, dtype=torch.uint8)  # 64 MiB, touched
    assert measure.peak_rss_bytes() >= before
    del block
    if measure.reset_peak_rss():
        assert measure.peak_rss_bytes() < before + 64 * 2**20


def test_step_timer_keeps_training_until_enough_steps_ran_at_full_speed():
    """On a host whose speed swings, a case trains on until `steps` steps had fast probes on both sides."""
    speeds = iter([10.0, 4.0, 4.0, 10.0, 10.0, 10.0, 10.0])  # probe values in FLOP/s, in the order they are taken
    timer = measure.StepTimer("cpu", lambda: next(speeds), None, warmup=1, steps=2, reference_peak=10.0)
    timer.on_train_begin()
    control = SimpleNamespace(should_training_stop=False)
    stopped_after = None
    for step in range(6):
        timer.on_step_end(None, None, control)
        if control.should_training_stop:
            stopped_after = step
            break
    # step 0 is warm-up; steps 1 and 2 ran next to slow probes; steps 3 and 4 between fast ones: stop there
    trainer_peaks, _ = timer.step_peaks()
    assert trainer_peaks == [7.0, 4.0, 7.0, 10.0, 10.0]
    assert stopped_after == 4
    fast, _ = measure.full_speed_steps(
        {"trainer_steps_s": timer.trainer_steps[1:], "trainer_step_peaks": trainer_peaks[1:]}, best_peak=10.0
    )
    assert len(fast) == 2
