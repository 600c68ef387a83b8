"""Batches for training: crop a window of codes, build delay-pattern labels, pad, tokenize captions.

MusicGen predicts K codebooks per step with the *delay pattern*: codebook k is shifted k steps to the right, so the
model predicts codebook k of frame t at step t + k, after it has seen codebooks < k of that frame. transformers'
``forward(labels=...)`` shifts labels right by one (prepending the start token) but does NOT apply this delay, so the
labels built here are already delayed. For K = 4 codebooks and T = 5 frames (c<k><t> = code of codebook k, frame t;
``-`` = ignored, -100):

    step:        0    1    2    3    4    5    6    7
    codebook 0:  c00  c01  c02  c03  c04  -    -    -
    codebook 1:  -    c10  c11  c12  c13  c14  -    -
    codebook 2:  -    -    c20  c21  c22  c23  c24  -
    codebook 3:  -    -    -    c30  c31  c32  c33  c34

Stereo models interleave the codebooks of the two channels (L0, R0, L1, R1, ...) and delay each left/right pair
together: codebook j is delayed by j // 2, so the sequence has T + K/2 - 1 steps. In general codebook j is delayed
by j // audio_channels.

The sequence has T + K - 1 steps (mono). The model's input at step s is the label at step s - 1 (the start token,
which is
also the pad token ``vocab_size``, at step 0) with ignored positions replaced by the pad token — exactly the
sequence ``generate()`` builds with ``build_delay_pattern_mask``, so training and inference see the same inputs.

Conditioning dropout (classifier-free guidance training): with probability ``text_dropout_prob`` a clip's text
attention mask is zeroed. MusicGen multiplies the text encoder's output by that mask and masks cross-attention with
it, so the decoder then sees all-zero conditioning under a fully masked cross-attention — exactly the "null" input
``generate()`` builds for the unconditional branch when ``guidance_scale > 1``.

Melody models also take each clip's chroma (``input_features``, (bsz, chroma_frames, 12)), cropped to the same
stretch of audio as the codes. Clips of different lengths are padded by repeating their chroma, which is what the
model does itself up to its ``chroma_length``. With probability ``chroma_dropout_prob`` the chroma is replaced by the
null melody ``generate()`` uses when no audio is given: a one-hot on the first chroma bin."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100


def delay_pattern_labels(codes: torch.Tensor, audio_channels: int = 1) -> torch.Tensor:
    """Delay-pattern labels of one clip.

    Args:
        codes: (num_codebooks, frames) integer codes; for stereo, channels interleaved (L0, R0, L1, R1, ...).
        audio_channels: 1 (mono) or 2 (stereo: each left/right pair of codebooks shares its delay).

    Returns:
        (frames + num_codebooks // audio_channels - 1, num_codebooks) labels, ``IGNORE_INDEX`` where the delay leaves
        no target.
    """
    num_codebooks, frames = codes.shape
    delays = num_codebooks // audio_channels
    labels = torch.full((frames + delays - 1, num_codebooks), IGNORE_INDEX, dtype=torch.long)
    for k in range(num_codebooks):
        delay = k // audio_channels
        labels[delay : delay + frames, k] = codes[k]
    return labels


def shift_right(labels: torch.Tensor, start_token_id: int, pad_token_id: int) -> torch.Tensor:
    """Decoder inputs from labels: prepend the start token, drop the last step, ignored positions become pad.

    Args:
        labels: (bsz, steps, num_codebooks).

    Returns:
        (bsz * num_codebooks, steps), the layout MusicGen's decoder takes.
    """
    bsz, steps, num_codebooks = labels.shape
    inputs = torch.full_like(labels, start_token_id)
    inputs[:, 1:] = labels[:, :-1]
    inputs = inputs.masked_fill(inputs == IGNORE_INDEX, pad_token_id)
    return inputs.permute(0, 2, 1).reshape(bsz * num_codebooks, steps)


@dataclass
class MusicgenCollator:
    """Turns dataset rows ``{"codes": (K, T) ints, "text": str}`` into a training batch.

    Args:
        tokenizer: the text encoder's tokenizer.
        pad_token_id: the decoder's pad token (``vocab_size`` for MusicGen), used for delayed positions.
        decoder_start_token_id: the decoder's start token (equal to the pad token for MusicGen).
        max_frames: longest window of frames per clip; longer clips are cropped.
        random_crop: crop at a random frame (training) or at the start (evaluation, reproducible).
        text_dropout_prob: probability that a clip is trained unconditionally (its caption masked out).
        audio_channels: 2 for stereo models (see ``delay_pattern_labels``).
        chroma_per_frame: melody models: chroma frames per codec frame (None: no chroma in the batch).
        chroma_dropout_prob: melody models: probability that a clip's chroma is replaced by the null melody.
    """

    tokenizer: PreTrainedTokenizerBase
    pad_token_id: int
    decoder_start_token_id: int
    max_frames: int
    random_crop: bool = True
    text_dropout_prob: float = 0.0
    audio_channels: int = 1
    chroma_per_frame: float | None = None
    chroma_dropout_prob: float = 0.0
    seed: int = 0
    process_index: int = 0
    # Batches collated so far. Random windows and dropout are drawn from a generator seeded by (seed, process,
    # batch number) instead of the global stream: the dataloader collates one batch ahead of training, so on resume
    # the global stream would be restored after that batch was drawn. A resumed run sets this to the batches already
    # consumed, and draws exactly what the uninterrupted run drew.
    batches_collated: int = 0
    codes_column: str = "codes"
    text_column: str = "text"

    def for_evaluation(self) -> MusicgenCollator:
        """The same collator without randomness: fixed windows, every caption kept."""
        return dataclasses.replace(self, random_crop=False, text_dropout_prob=0.0, chroma_dropout_prob=0.0)

    def next_generator(self) -> torch.Generator | None:
        """The generator of the next batch, a pure function of (seed, process, batch number).

        In DataLoader worker processes (dataloader_num_workers > 0) each worker holds a copy of this collator whose
        counter restarts every epoch, so there the worker's own random stream is used (None), which DataLoader seeds
        differently for every worker and epoch: random as it should be, but not bit-exact on resume.
        """
        if torch.utils.data.get_worker_info() is not None:
            return None
        self.batches_collated += 1
        return torch.Generator().manual_seed(hash((self.seed, self.process_index, self.batches_collated)) & (2**63 - 1))

    def window_start(self, frames: int, generator: torch.Generator | None = None) -> int:
        """First frame of the window taken from a clip of ``frames`` frames."""
        if frames <= self.max_frames or not self.random_crop:
            return 0
        return int(torch.randint(0, frames - self.max_frames + 1, (), generator=generator))

    def crop(self, codes: torch.Tensor) -> torch.Tensor:
        """A window of at most ``max_frames`` frames of (K, T) codes."""
        start = self.window_start(codes.shape[1])
        return codes[:, start : start + self.max_frames]

    def chroma_batch(
        self,
        features: list[dict[str, Any]],
        starts: list[int],
        frames: list[int],
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """(bsz, chroma_frames, num_chroma) chroma of each clip's window, padded by repetition; some dropped."""
        windows = []
        for feature, start, length in zip(features, starts, frames, strict=False):
            chroma = torch.as_tensor(feature["chroma"], dtype=torch.float32)  # (clip_chroma_frames, num_chroma)
            first = min(int(start * self.chroma_per_frame), chroma.shape[0] - 1)
            windows.append(chroma[first : first + max(1, math.ceil(length * self.chroma_per_frame))])
        longest = max(w.shape[0] for w in windows)
        batch = torch.stack([w.repeat(math.ceil(longest / w.shape[0]), 1)[:longest] for w in windows])
        if self.chroma_dropout_prob > 0:
            dropped = torch.rand(len(features), generator=generator) < self.chroma_dropout_prob
            batch[dropped] = 0.0
            batch[dropped, :, 0] = 1.0  # the null melody of generate()
        return batch

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        generator = self.next_generator()
        all_codes = [torch.as_tensor(f[self.codes_column], dtype=torch.long) for f in features]
        starts = [self.window_start(codes.shape[1], generator) for codes in all_codes]
        windows = [codes[:, start : start + self.max_frames] for codes, start in zip(all_codes, starts, strict=False)]
        labels = [delay_pattern_labels(window, self.audio_channels) for window in windows]
        steps = max(label.shape[0] for label in labels)
        num_codebooks = labels[0].shape[1]
        batch_labels = torch.full((len(labels), steps, num_codebooks), IGNORE_INDEX, dtype=torch.long)
        decoder_attention_mask = torch.zeros((len(labels), steps), dtype=torch.long)
        for i, label in enumerate(labels):
            batch_labels[i, : label.shape[0]] = label  # (steps_i, K), padded at the end with IGNORE_INDEX
            decoder_attention_mask[i, : label.shape[0]] = 1
        text = self.tokenizer(
            [f[self.text_column] for f in features], padding=True, return_tensors="pt"
        )  # input_ids / attention_mask: (bsz, text_len)
        if self.text_dropout_prob > 0:
            dropped = torch.rand(len(features), generator=generator) < self.text_dropout_prob  # (bsz,)
            text["attention_mask"][dropped] = 0
        batch = {
            "input_ids": text["input_ids"],
            "attention_mask": text["attention_mask"],
            "decoder_input_ids": shift_right(batch_labels, self.decoder_start_token_id, self.pad_token_id),
            "decoder_attention_mask": decoder_attention_mask,  # (bsz, steps)
            "labels": batch_labels,  # (bsz, steps, K)
        }
        if self.chroma_per_frame is not None:
            batch["input_features"] = self.chroma_batch(features, starts, [w.shape[1] for w in windows], generator)
        return batch
