"""Preference pairs for DPO: reading ``pairs.jsonl``, tokenising chosen and rejected, batching them.

A pair is one (video, prompt) with a chosen and a rejected answer (the file ``tools/build_pairs.py`` writes; see
docs/dpo.md). Both answers are tokenised through the one conversation path (``encode_conversation``: the loss mask
is the answer), and the video is decoded and preprocessed once per pair: the chosen and the rejected sequence of
a pair share its pixel tensor, so the model encodes the visual prefix once for both (``train/dpo.py``).

A batch of ``n`` pairs holds ``2n`` sequences, the chosen ones first (``0..n-1``) then the rejected ones
(``n..2n-1``), packed into one row (``position_ids`` restart per sequence, ``segment_ids`` name each position's
sequence) or right-padded to ``(2n, max L)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from llava_video.config import LlavaVideoConfig
from llava_video.data.batching import BadSample, EncodingDataset, MediaLoader
from llava_video.data.conversation import VIDEO_MARKER, encode_conversation
from llava_video.data.records import Record
from llava_video.errors import InputError, LlavaVideoError

__all__ = [
    "PreferencePair",
    "read_pairs",
    "PairSample",
    "PreferenceDataset",
    "PairBatch",
    "collate_pairs",
]


@dataclass(frozen=True)
class PreferencePair:
    """One line of pairs.jsonl, with its video path resolved and where it came from."""

    id: str
    video: str
    prompt: str
    chosen: str
    rejected: str
    source: str
    line: int
    reference_chosen_logp: float | None = None  # precomputed log ref(chosen | prompt), optional
    reference_rejected_logp: float | None = None

    def as_record(self) -> Record:
        """The LLaVA record view the trainer's bad-record report understands."""
        turns = ({"from": "human", "value": self.prompt}, {"from": "gpt", "value": self.chosen})
        return Record(source=self.source, line=self.line, record_id=self.id, conversations=turns, videos=(self.video,))


def _optional_float(row: dict[str, Any], name: str, where: str) -> float | None:
    value = row.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{where}: field '{name}' must be a number or null")
    return float(value)


def read_pairs(path: str | Path, *, video_root: str | Path = ".") -> list[PreferencePair]:
    """Every pair of a pairs JSONL; relative video paths are taken from ``video_root``. Bad lines raise
    InputError naming the file, line and field."""
    from llava_video.feedback.records import read_jsonl

    root = Path(video_root)
    pairs = []
    for where, row in read_jsonl(path):
        if not isinstance(row, dict):
            raise InputError(f"{where}: expected a JSON object, got {type(row).__name__}")
        for name in ("id", "video", "prompt", "chosen", "rejected"):
            if not isinstance(row.get(name), str) or (name != "prompt" and not row[name]):
                raise InputError(f"{where}: field '{name}' must be a non-empty string")
        video = Path(row["video"])
        _, _, line = where.rpartition(":")
        pairs.append(
            PreferencePair(
                id=row["id"],
                video=str(video if video.is_absolute() else root / video),
                prompt=row["prompt"],
                chosen=row["chosen"],
                rejected=row["rejected"],
                source=str(path),
                line=int(line),
                reference_chosen_logp=_optional_float(row, "reference_chosen_logp", where),
                reference_rejected_logp=_optional_float(row, "reference_rejected_logp", where),
            )
        )
    if not pairs:
        raise InputError(f"{path}: no preference pairs")
    return pairs


@dataclass
class PairSample:
    """A tokenised pair: both sequences start with the same prompt (visual placeholders included)."""

    index: int
    chosen_ids: torch.Tensor  # (Lc,)
    chosen_labels: torch.Tensor  # (Lc,), ignore_index except on the chosen answer
    rejected_ids: torch.Tensor  # (Lr,)
    rejected_labels: torch.Tensor  # (Lr,)
    video: torch.Tensor  # (frames, 3, S, S), shared by both sequences
    reference_logps: tuple[float, float] | None = None  # (chosen, rejected) when precomputed


class PreferenceDataset(EncodingDataset):
    """Pairs -> ``PairSample`` (or ``BadSample`` with the reason), lazily: videos decode in ``__getitem__``."""

    def __init__(self, pairs: Sequence[PreferencePair], *, tokenizer: Any, config: LlavaVideoConfig, template: Any,
                 media: MediaLoader, max_length: int) -> None:
        super().__init__(tokenizer=tokenizer, config=config, template=template, media=media, max_length=max_length)
        self.pairs = list(pairs)
        self.records = [p.as_record() for p in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def modalities(self) -> list[str]:
        return ["video"] * len(self.pairs)

    def _estimate_lengths(self) -> list[int]:
        """Tokens per pair (both sequences: prompt and answer twice, the video's tokens twice)."""
        self.media.read_frame_counts(p.video for p in self.pairs)
        texts = [f"{p.prompt} {p.chosen} {p.prompt} {p.rejected}" for p in self.pairs]
        text_lens = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        return [n + 2 * self.config.video_token_count(self.media.estimated_frames(p.video)) for n, p in zip(text_lens, self.pairs)]

    def _encode(self, pair: PreferencePair, answer: str, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        prompt = pair.prompt if VIDEO_MARKER in pair.prompt else f"{VIDEO_MARKER}\n{pair.prompt}"
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
        enc = encode_conversation(
            messages, tokenizer=self.tokenizer, template=self.template, config=self.config, video_frames=[frames]
        )
        if len(enc.input_ids) > self.max_length:
            raise InputError(f"over-long: {len(enc.input_ids)} tokens > max_length {self.max_length}")
        if all(label == self.config.ignore_index for label in enc.labels):
            raise InputError("the answer has no tokens")
        return torch.tensor(enc.input_ids, dtype=torch.long), torch.tensor(enc.labels, dtype=torch.long)

    def __getitem__(self, index: int) -> PairSample | BadSample:
        pair = self.pairs[index]
        try:
            video = self.media.video(pair.video)
        except (LlavaVideoError, OSError, ValueError) as exc:
            return BadSample(index, f"media failed to load: {exc}")
        try:
            chosen_ids, chosen_labels = self._encode(pair, pair.chosen, int(video.shape[0]))
            rejected_ids, rejected_labels = self._encode(pair, pair.rejected, int(video.shape[0]))
        except LlavaVideoError as exc:
            return BadSample(index, f"cannot encode the pair: {exc}")
        reference = None
        if pair.reference_chosen_logp is not None and pair.reference_rejected_logp is not None:
            reference = (pair.reference_chosen_logp, pair.reference_rejected_logp)
        return PairSample(index, chosen_ids, chosen_labels, rejected_ids, rejected_labels, video, reference)


@dataclass
class PairBatch:
    """``2n`` sequences of ``n`` pairs (chosen ``0..n-1``, rejected ``n..2n-1``) and the ``n`` videos.

    Packed: ``input_ids`` (1, sum L), ``position_ids`` restarting per sequence, no attention mask, and
    ``segment_ids`` (1, sum L) giving each position's sequence. Padded: (2n, max L) with an attention mask,
    ``segment_ids`` None (row i is sequence i).
    """

    input_ids: torch.Tensor
    labels: torch.Tensor
    attention_mask: torch.Tensor | None
    position_ids: torch.Tensor | None
    segment_ids: torch.Tensor | None
    videos: list[torch.Tensor]  # n tensors (frames, 3, S, S), one per pair
    reference_logps: torch.Tensor | None  # (2n,) chosen then rejected, when every pair has them
    num_pairs: int
    real_tokens: int
    processed_tokens: int
    bad: list[BadSample] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)

    @property
    def num_samples(self) -> int:
        return self.num_pairs


def collate_pairs(items: Sequence[PairSample | BadSample], *, packing: bool, pad_token_id: int, ignore_index: int) -> PairBatch:
    """Pair samples -> one PairBatch; bad samples ride along for the trainer to report."""
    samples = [s for s in items if isinstance(s, PairSample)]
    bad = [s for s in items if isinstance(s, BadSample)]
    if not samples:
        empty = torch.zeros(1, 0, dtype=torch.long)
        return PairBatch(empty, empty, None, None, None, [], None, 0, 0, 0, bad, [])
    ids = [s.chosen_ids for s in samples] + [s.rejected_ids for s in samples]
    labels = [s.chosen_labels for s in samples] + [s.rejected_labels for s in samples]
    # The first label of each sequence is never scored, so no prediction crosses a packed boundary.
    labels = [torch.cat([lab.new_full((1,), ignore_index), lab[1:]]) for lab in labels]
    lengths = [len(t) for t in ids]
    real = sum(lengths)
    if packing:
        input_ids = torch.cat(ids)[None]  # (1, sum L)
        label_row = torch.cat(labels)[None]  # (1, sum L)
        position_ids = torch.cat([torch.arange(n) for n in lengths])[None]  # (1, sum L)
        segment_ids = torch.cat([torch.full((n,), i, dtype=torch.long) for i, n in enumerate(lengths)])[None]
        attention_mask = None
        processed = real
    else:
        width = max(lengths)
        input_ids = torch.full((len(ids), width), pad_token_id, dtype=torch.long)  # (2n, max L)
        label_row = torch.full((len(ids), width), ignore_index, dtype=torch.long)
        attention_mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, (seq, lab) in enumerate(zip(ids, labels)):
            input_ids[row, : len(seq)] = seq
            label_row[row, : len(lab)] = lab
            attention_mask[row, : len(seq)] = 1
        position_ids = segment_ids = None
        processed = len(ids) * width
    reference = None
    if all(s.reference_logps is not None for s in samples):
        reference = torch.tensor(
            [s.reference_logps[0] for s in samples] + [s.reference_logps[1] for s in samples], dtype=torch.float32
        )  # (2n,)
    return PairBatch(
        input_ids=input_ids,
        labels=label_row,
        attention_mask=attention_mask,
        position_ids=position_ids,
        segment_ids=segment_ids,
        videos=[s.video for s in samples],
        reference_logps=reference,
        num_pairs=len(samples),
        real_tokens=real,
        processed_tokens=processed,
        bad=bad,
        indices=[s.index for s in samples],
    )

