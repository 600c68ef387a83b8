"""Delay-pattern labels, decoder inputs, padding and cropping."""

from __future__ import annotations

import torch
from transformers import AutoModelForTextToWaveform, AutoProcessor
from transformers.models.musicgen.modeling_musicgen import shift_tokens_right

from musicgen_lora.train.collator import IGNORE_INDEX, MusicgenCollator, delay_pattern_labels, shift_right

X = IGNORE_INDEX


def test_delay_pattern_labels_match_hand_written_example():
    codes = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]])  # (K=3, T=4)
    expected = torch.tensor(
        [  # step: codebook 0, 1, 2
            [1, X, X],
            [2, 5, X],
            [3, 6, 9],
            [4, 7, 10],
            [X, 8, 11],
            [X, X, 12],
        ]
    )
    assert torch.equal(delay_pattern_labels(codes), expected)


def test_shift_right_matches_transformers():
    labels = delay_pattern_labels(torch.randint(0, 64, (4, 7)))[None].repeat(2, 1, 1)  # (2, 10, 4)
    ours = shift_right(labels, start_token_id=64, pad_token_id=64)  # (bsz * K, steps)
    reference = shift_tokens_right(labels, pad_token_id=64, decoder_start_token_id=64)  # (bsz, K, steps)
    assert torch.equal(ours, reference.reshape(ours.shape))
    assert (ours[:, 0] == 64).all()


def test_decoder_inputs_equal_the_delay_pattern_generate_builds(tiny_model_dir):
    """Training inputs must be what generate() feeds the decoder, codebook k silent (pad) for its first k steps."""
    model = AutoModelForTextToWaveform.from_pretrained(tiny_model_dir)
    num_codebooks, pad = model.decoder.num_codebooks, model.generation_config.pad_token_id
    codes = torch.randint(0, pad, (num_codebooks, 6))
    inputs = shift_right(delay_pattern_labels(codes)[None], pad, pad)  # (K, 9): start token + 8 steps
    steps = inputs.shape[-1]
    # To return T frames, generate() grows a sequence of T + K tokens (start token included) and builds its pattern
    # mask over that length: -1 where the model predicts, pad where the delay forces one. The decoder is fed the
    # first T + K - 1 of them, which must agree with our inputs at every forced position.
    _, mask = model.decoder.build_delay_pattern_mask(
        torch.full((num_codebooks, 1), pad), pad_token_id=pad, max_length=codes.shape[1] + num_codebooks
    )
    mask = mask[:, :steps]
    forced = mask != -1
    assert torch.equal(inputs[forced], mask[forced])
    # and where the model predicts, the inputs carry the codes of the previous step, never a pad
    assert (inputs[~forced] != pad).all()
    assert int((~forced).sum()) == codes.numel() - 1  # only the very last code (last codebook) is never an input


def test_collator_pads_masks_and_tokenizes(tiny_model_dir):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    collator = MusicgenCollator(processor.tokenizer, pad_token_id=64, decoder_start_token_id=64, max_frames=100)
    short, long = torch.randint(0, 64, (4, 3)), torch.randint(0, 64, (4, 6))
    batch = collator([{"codes": short.tolist(), "text": "lofi"}, {"codes": long.tolist(), "text": "techno 128 bpm"}])
    assert batch["labels"].shape == (2, 9, 4)  # longest: 6 frames + 3 delay steps
    assert torch.equal(batch["labels"][0, :6], delay_pattern_labels(short))
    assert (batch["labels"][0, 6:] == X).all()  # padding is ignored by the loss
    assert batch["decoder_attention_mask"].tolist() == [[1] * 6 + [0] * 3, [1] * 9]
    assert batch["decoder_input_ids"].shape == (2 * 4, 9)
    assert batch["input_ids"].shape[0] == 2 and batch["attention_mask"][0].sum() < batch["attention_mask"][1].sum()
    # every label is a real code or ignored: as many real targets as codes in the batch
    assert int((batch["labels"] != X).sum()) == short.numel() + long.numel()


def test_crop_is_random_for_training_and_fixed_for_evaluation(tiny_model_dir):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    codes = torch.arange(200).repeat(4, 1)  # (4, 200): frame index as code
    train = MusicgenCollator(processor.tokenizer, 64, 64, max_frames=50, random_crop=True)
    starts = {int(train.crop(codes)[0, 0]) for _ in range(30)}
    assert len(starts) > 5 and all(0 <= s <= 150 for s in starts)
    assert all(train.crop(codes).shape == (4, 50) for _ in range(5))
    fixed = MusicgenCollator(processor.tokenizer, 64, 64, max_frames=50, random_crop=False)
    assert int(fixed.crop(codes)[0, 0]) == 0


def test_a_three_minute_track_gives_full_windows_from_all_over_it(tiny_model_dir):
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    frames, window = 3 * 60 * 50, 30 * 50  # 3 min and 30 s at 50 Hz
    track = {"codes": torch.arange(frames).remainder(64).repeat(4, 1).tolist(), "text": "a long song"}
    collator = MusicgenCollator(processor.tokenizer, 64, 64, max_frames=window, random_crop=True)
    torch.manual_seed(0)
    starts = []
    for _ in range(60):  # 60 epochs over a one-song dataset
        labels = collator([track])["labels"][0]  # (window + 3, 4)
        assert int((labels != X).sum()) == window * 4  # every window is all real audio, never padding
        starts.append(int(labels[0, 0]))  # code = frame index mod 64 ...
    # ... so recover the start through the crop itself for the spread check
    spread = [int(collator.crop(torch.arange(frames)[None])[0, 0]) for _ in range(200)]
    assert min(spread) < 0.1 * (frames - window) and max(spread) > 0.9 * (frames - window)
    assert len(set(spread)) > 150  # a different window (almost) every epoch
    assert len(set(starts)) > 1


def test_dataloader_workers_draw_different_windows(tiny_model_dir):
    """Worker copies of the collator must not repeat each other's (or the previous epoch's) random windows."""
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    track = {"codes": torch.arange(3000).remainder(64).repeat(4, 1).tolist(), "text": "x"}
    collator = MusicgenCollator(processor.tokenizer, 64, 64, max_frames=50, random_crop=True)
    loader = torch.utils.data.DataLoader([track] * 8, batch_size=1, num_workers=2, collate_fn=collator)
    torch.manual_seed(0)
    firsts = [int(batch["labels"][0, 0, 0]) for _ in range(2) for batch in loader]  # two epochs, 16 windows
    assert len(set(firsts)) > 8
