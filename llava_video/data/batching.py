"""From records to model batches: a lazy dataset, micro-batch plans and the collator (packed or padded).

Media is decoded in ``__getitem__`` (so in DataLoader workers) through the one video/image path
(``data/video.py`` + ``data/preprocess.py``) and the one tokenisation path (``encode_conversation``).

Packing concatenates the samples of a micro-batch into one row with ``position_ids`` restarting at 0
per sample and no attention mask: transformers then isolates the samples (varlen kernels with
flash-attention 2, a block-diagonal mask with sdpa/eager), so no compute is spent on padding.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import Dataset, Sampler

from llava_video.atomic import atomic_path, write_json_atomic
from llava_video.config import LlavaVideoConfig
from llava_video.data.conversation import encode_conversation, llava_record_to_messages
from llava_video.data.records import Modality, Record
from llava_video.errors import LlavaVideoError

__all__ = [
    "MediaLoader",
    "Sample",
    "BadSample",
    "EncodingDataset",
    "ConversationDataset",
    "Batch",
    "collate",
    "plan_micro_batches",
    "MicroBatchSampler",
]


# Declared frame counts of the videos under a MediaLoader's cache_dir (see MediaLoader.read_frame_counts).
_FRAME_COUNTS = "frame_counts.json"


@dataclass
class MediaLoader:
    """Decodes and preprocesses one record's media (picklable, so it runs in DataLoader workers).

    ``cache_mb`` > 0 keeps preprocessed media in memory, up to that many MiB, first come first kept: for
    small datasets read for many epochs (the demo recipe reads each clip ~17 times) decoding is then paid
    once. The cache lives in the process that loads, so it pays off with ``num_workers=0``; each DataLoader
    worker would fill its own copy and lose it at the end of the epoch.

    ``cache_dir`` keeps preprocessed media on disk as well (safetensors, one file per medium and loader
    setting), so later processes (the next training stage, a rerun) read instead of decoding. A file is
    named by a hash of the medium's path, size and modification time and of every setting that shapes the
    result, so an edited file or another frame count or processor never reads a stale entry; files are
    written atomically, so concurrent loaders at worst decode the same medium twice.
    """

    processor: Any  # llava_video.data.preprocess.ImageProcessorConfig
    num_frames: int = 16
    fps: float | None = None
    max_frames: int | None = None
    backend: str = "auto"
    cache_mb: int = 0
    cache_dir: str | None = None
    _cache: dict[tuple[str, str], Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    _cache_bytes: int = field(default=0, init=False, repr=False, compare=False)
    _header_frames: dict[str, int | None] = field(default_factory=dict, init=False, repr=False, compare=False)
    _disk_warned: bool = field(default=False, init=False, repr=False, compare=False)

    def _cached(self, kind: str, path: str, load: Callable[[], Any], size: Callable[[Any], int]) -> Any:
        fetch = (lambda: self._disk_cached(kind, path, load)) if self.cache_dir else load
        if self.cache_mb <= 0:
            return fetch()
        key = (kind, path)
        if key in self._cache:
            return self._cache[key]
        value = fetch()
        nbytes = size(value)
        if self._cache_bytes + nbytes <= self.cache_mb * 2**20:
            self._cache[key] = value
            self._cache_bytes += nbytes
        return value

    def _disk_file(self, kind: str, path: str) -> Path:
        """This medium's entry under ``cache_dir`` (only called when it is set)."""
        stat = os.stat(path)
        identity = json.dumps([kind, os.path.abspath(path), stat.st_size, stat.st_mtime_ns, self.num_frames, self.fps,
                               self.max_frames, self.backend, repr(self.processor)])
        return Path(self.cache_dir) / f"{hashlib.sha256(identity.encode()).hexdigest()}.safetensors"

    def _disk_cached(self, kind: str, path: str, load: Callable[[], Any]) -> Any:
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import save_file

        try:
            file = self._disk_file(kind, path)
        except OSError:
            return load()  # a missing medium: let the loader raise its own error
        if file.is_file():
            try:
                with safe_open(str(file), framework="pt") as entry:
                    pixels, meta = entry.get_tensor("pixels"), entry.metadata() or {}
                return (pixels, tuple(json.loads(meta["size"]))) if kind == "image" else pixels
            except (SafetensorError, OSError, KeyError, ValueError):
                pass  # an unreadable entry (not one of ours, or damaged): decode again and replace it
        value = load()
        pixels, meta = (value[0], {"size": json.dumps(list(value[1]))}) if kind == "image" else (value, {})
        try:
            with atomic_path(file) as partial:
                save_file({"pixels": pixels.contiguous()}, str(partial), metadata=meta)
        except OSError as exc:
            # The cache only saves time: a full disk or a read-only folder must not turn good records into bad
            # ones (the dataset counts an OSError from loading as a bad record), so say so once and go on.
            if not self._disk_warned:
                warnings.warn(f"data.media_cache_dir {self.cache_dir}: cannot write ({exc}); decoding without the disk cache",
                              stacklevel=2)
                self._disk_warned = True
        return value

    def image(self, path: str) -> tuple[torch.Tensor, tuple[int, int]]:
        """(tiles (n, 3, S, S), (height, width)) of an AnyRes image."""
        return self._cached("image", path, lambda: self._load_image(path), lambda v: v[0].nbytes)

    def _load_image(self, path: str) -> tuple[torch.Tensor, tuple[int, int]]:
        from PIL import Image

        from llava_video.data.preprocess import preprocess_anyres_image

        with Image.open(path) as img:
            rgb = img.convert("RGB")
        return preprocess_anyres_image(rgb, self.processor)

    def read_frame_counts(self, paths: Iterable[str]) -> None:
        """Read the declared frame counts of ``paths`` for :meth:`estimated_frames` in one pass. With ``cache_dir``
        they are also kept there (``frame_counts.json``, keyed by path, size and modification time), so a later
        process reads one file instead of opening every container again (~0.5 ms a clip: ~13 s for the demo
        recipe's 24,000 clips, at every training stage)."""
        if self.fps is not None:
            return  # estimates do not use the header
        from llava_video.data.video import header_frame_count

        index_file = Path(self.cache_dir) / _FRAME_COUNTS if self.cache_dir else None
        stored: dict[str, int | None] = {}
        if index_file is not None and index_file.is_file():
            with contextlib.suppress(OSError, ValueError):
                loaded = json.loads(index_file.read_text(encoding="utf-8"))
                stored = loaded if isinstance(loaded, dict) else {}
        learned = False
        for path in dict.fromkeys(paths):
            if path in self._header_frames:
                continue
            try:
                stat = os.stat(path)
            except OSError:
                self._header_frames[path] = None  # a missing file: the load reports it
                continue
            key = json.dumps([os.path.abspath(path), stat.st_size, stat.st_mtime_ns])
            if key in stored and (stored[key] is None or isinstance(stored[key], int)):
                self._header_frames[path] = stored[key]
            else:
                self._header_frames[path] = stored[key] = header_frame_count(path)
                learned = True
        if index_file is not None and learned:
            # The index only saves time: an unwritable folder costs the next process the header reads again
            # (the medium cache warns about it).
            with contextlib.suppress(OSError):
                write_json_atomic(index_file, stored, indent=None)

    @property
    def expected_frames(self) -> int:
        """Frames a video yields when it is long enough (for length estimates before decoding)."""
        return self.num_frames if self.max_frames is None else min(self.num_frames, self.max_frames)

    def estimated_frames(self, path: str) -> int:
        """Frames ``video(path)`` should yield, for length estimates before decoding: with uniform sampling,
        ``expected_frames`` capped by the frame count in the file's header (short clips yield every frame
        once), so clips of different lengths in one dataset are grouped apart; ``expected_frames`` otherwise."""
        if self.fps is not None:
            return self.expected_frames
        if path not in self._header_frames:
            from llava_video.data.video import header_frame_count

            self._header_frames[path] = header_frame_count(path)
        declared = self._header_frames[path]
        return self.expected_frames if declared is None else min(self.expected_frames, declared)

    def video(self, path: str) -> torch.Tensor:
        """(frames, 3, S, S) pixel tensor of the sampled frames."""
        return self._cached("video", path, lambda: self._load_video(path), lambda v: v.nbytes)

    def _load_video(self, path: str) -> torch.Tensor:
        from llava_video.data.preprocess import preprocess_frames
        from llava_video.data.video import load_video

        # Inside a DataLoader worker, one thread each: the workers already use the cores.
        threads = 1 if torch.utils.data.get_worker_info() is not None else 0
        clip = load_video(
            path, num_frames=self.num_frames, fps=self.fps, max_frames=self.max_frames, backend=self.backend, threads=threads
        )
        return preprocess_frames(clip.frames, self.processor, threads=threads or None)


@dataclass
class Sample:
    index: int
    input_ids: torch.Tensor  # (L,)
    labels: torch.Tensor  # (L,), ignore_index off the assistant replies; labels[0] always ignored
    images: list[torch.Tensor] = field(default_factory=list)  # each (tiles, 3, S, S)
    image_sizes: list[tuple[int, int]] = field(default_factory=list)
    videos: list[torch.Tensor] = field(default_factory=list)  # each (frames, 3, S, S)
    modality: Modality = "text"


@dataclass
class BadSample:
    """A record that failed while loading (decode error, over-long...): reported by the trainer."""

    index: int
    reason: str


class EncodingDataset(Dataset):
    """What the training datasets share: the encoding context (tokenizer, chat template, model config),
    the media loader, the length limit, and token-length estimates cached for length grouping."""

    def __init__(self, *, tokenizer: Any, config: LlavaVideoConfig, template: Any, media: MediaLoader, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.config = config
        self.template = template
        self.media = media
        self.max_length = max_length
        self._lengths: list[int] | None = None

    @property
    def lengths(self) -> list[int]:
        """Estimated tokens per item (text + visual), without decoding media; computed once."""
        if self._lengths is None:
            self._lengths = self._estimate_lengths()
        return self._lengths

    def _estimate_lengths(self) -> list[int]:
        raise NotImplementedError


class ConversationDataset(EncodingDataset):
    """Records -> ``Sample`` (or ``BadSample``), lazily; ``lengths`` estimates tokens without decoding."""

    def __init__(self, records: Sequence[Record], *, tokenizer: Any, config: LlavaVideoConfig, template: Any,
                 media: MediaLoader, max_length: int) -> None:
        super().__init__(tokenizer=tokenizer, config=config, template=template, media=media, max_length=max_length)
        self.records = list(records)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def modalities(self) -> list[Modality]:
        return [r.modality for r in self.records]

    def _estimate_lengths(self) -> list[int]:
        """Text tokens + visual tokens per record (image and video headers read: ``MediaLoader.estimated_frames``).
        For length grouping only; exact lengths come from loading."""
        self.media.read_frame_counts(path for r in self.records for path in r.videos)
        texts = [" ".join(str(t.get("value", t.get("content", ""))) for t in r.conversations) for r in self.records]
        text_lens = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []
        return [n + self._visual_estimate(r) for n, r in zip(text_lens, self.records)]

    def _visual_estimate(self, record: Record) -> int:
        from PIL import Image

        total = 0
        for path in record.images:
            try:
                with Image.open(path) as img:
                    w, h = img.size
                total += self.config.image_token_count((h, w))
            except OSError:
                total += self.config.tokens_per_tile  # the load will report it
        return total + sum(self.config.video_token_count(self.media.estimated_frames(path)) for path in record.videos)

    def __getitem__(self, index: int) -> Sample | BadSample:
        record = self.records[index]
        try:
            images = [self.media.image(p) for p in record.images]
            videos = [self.media.video(p) for p in record.videos]
        except (LlavaVideoError, OSError, ValueError) as exc:
            return BadSample(index, f"media failed to load: {exc}")
        try:
            enc = encode_conversation(
                llava_record_to_messages(record.conversations),
                tokenizer=self.tokenizer,
                template=self.template,
                config=self.config,
                video_frames=[v.shape[0] for v in videos],
                image_sizes=[size for _, size in images],
            )
        except LlavaVideoError as exc:
            return BadSample(index, f"cannot encode the conversation: {exc}")
        ids, labels = enc.input_ids, enc.labels
        ignore = self.config.ignore_index
        if len(ids) > self.max_length:
            visual = {self.config.image_token_id, self.config.video_token_id}
            if any(t in visual for t in ids[self.max_length :]):
                return BadSample(index, f"over-long: {len(ids)} tokens > max_length {self.max_length} and truncation would cut visual tokens")
            ids, labels = ids[: self.max_length], labels[: self.max_length]
            if all(lab == ignore for lab in labels[1:]):
                return BadSample(index, f"over-long: {len(enc.input_ids)} tokens > max_length {self.max_length}, no reply left after truncation")
        labels = [ignore] + labels[1:]  # nothing is learned across a packed boundary
        return Sample(
            index=index,
            input_ids=torch.tensor(ids, dtype=torch.long),
            labels=torch.tensor(labels, dtype=torch.long),
            images=[tiles for tiles, _ in images],
            image_sizes=[size for _, size in images],
            videos=videos,
            modality=record.modality,
        )


@dataclass
class Batch:
    """What the model gets, plus accounting. Packed: ``input_ids`` (1, sum L), ``position_ids`` restart
    per sample, ``attention_mask`` None. Padded: (b, max L) with an attention mask."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    attention_mask: torch.Tensor | None
    position_ids: torch.Tensor | None
    pixel_values: list[torch.Tensor] | None
    image_sizes: list[tuple[int, int]] | None
    pixel_values_videos: list[torch.Tensor] | None
    real_tokens: int
    processed_tokens: int
    num_samples: int
    modalities: dict[str, int]
    bad: list[BadSample]
    indices: list[int]

    def model_inputs(self, device: torch.device) -> dict[str, Any]:
        def move(t: Any) -> Any:
            return None if t is None else t.to(device, non_blocking=True)

        return {
            "input_ids": move(self.input_ids),
            "labels": move(self.labels),
            "attention_mask": move(self.attention_mask),
            "position_ids": move(self.position_ids),
            "pixel_values": [move(p) for p in self.pixel_values] if self.pixel_values else None,
            "image_sizes": self.image_sizes or None,
            "pixel_values_videos": [move(v) for v in self.pixel_values_videos] if self.pixel_values_videos else None,
        }


def collate(items: Sequence[Sample | BadSample], *, packing: bool, pad_token_id: int, ignore_index: int) -> Batch:
    """Samples -> one Batch; bad samples are carried along (not dropped) for the trainer to report."""
    samples = [s for s in items if isinstance(s, Sample)]
    bad = [s for s in items if isinstance(s, BadSample)]
    lengths = [len(s.input_ids) for s in samples]
    real = sum(lengths)
    if not samples:
        empty = torch.zeros(1, 0, dtype=torch.long)
        return Batch(empty, empty, None, None, None, None, None, 0, 0, 0, {}, bad, [])
    if packing:
        input_ids = torch.cat([s.input_ids for s in samples])[None]  # (1, sum L)
        labels = torch.cat([s.labels for s in samples])[None]  # (1, sum L)
        position_ids = torch.cat([torch.arange(n) for n in lengths])[None]  # (1, sum L), restarts per sample
        attention_mask = None
        processed = real
    else:
        width = max(lengths)
        input_ids = torch.full((len(samples), width), pad_token_id, dtype=torch.long)  # (b, max L)
        labels = torch.full((len(samples), width), ignore_index, dtype=torch.long)
        attention_mask = torch.zeros((len(samples), width), dtype=torch.long)
        for row, s in enumerate(samples):
            input_ids[row, : len(s.input_ids)] = s.input_ids
            labels[row, : len(s.labels)] = s.labels
            attention_mask[row, : len(s.input_ids)] = 1
        position_ids = None
        processed = len(samples) * width
    images = [t for s in samples for t in s.images]
    sizes = [sz for s in samples for sz in s.image_sizes]
    videos = [v for s in samples for v in s.videos]
    return Batch(
        input_ids=input_ids,
        labels=labels,
        attention_mask=attention_mask,
        position_ids=position_ids,
        pixel_values=images or None,
        image_sizes=sizes or None,
        pixel_values_videos=videos or None,
        real_tokens=real,
        processed_tokens=processed,
        num_samples=len(samples),
        modalities=dict(Counter(s.modality for s in samples)),
        bad=bad,
        indices=[s.index for s in samples],
    )


def plan_micro_batches(
    *,
    lengths: Sequence[int],
    modalities: Sequence[str],
    batch_size: int,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    group_by_length: bool = True,
    group_size: int = 8,
    modality: Literal["mixed", "separate"] = "mixed",
) -> list[list[int]]:
    """The epoch's micro-batches (lists of dataset indices), the same for every process and world size.

    ``mixed`` lets images and videos share a batch; ``separate`` builds batches within one modality and
    interleaves them. With ``group_by_length`` each group of ``group_size`` micro-batches is sorted by
    length before being cut, so a batch's samples are similar in size (less work imbalance).
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    pools: list[list[int]]
    if modality == "separate":
        by_mod: dict[str, list[int]] = {}
        for i, m in enumerate(modalities):
            by_mod.setdefault(m, []).append(i)
        pools = [by_mod[m] for m in sorted(by_mod)]
    else:
        pools = [list(range(len(lengths)))]
    batches: list[list[int]] = []
    for pool in pools:
        order = list(pool)
        if shuffle:
            rng.shuffle(order)
        if group_by_length:
            span = batch_size * group_size
            grouped = []
            for start in range(0, len(order), span):
                chunk = sorted(order[start : start + span], key=lambda i: -lengths[i])
                grouped.extend(chunk)
            order = grouped
        batches.extend(order[i : i + batch_size] for i in range(0, len(order), batch_size))
    if shuffle:
        rng.shuffle(batches)
    return batches


class MicroBatchSampler(Sampler[list[int]]):
    """This process's micro-batches from a plan: global micro-batch ``g`` goes to rank ``g % world``.

    Optimizer step ``s`` of a run with ``accum`` accumulation steps consumes global micro-batches
    ``[s*world*accum, (s+1)*world*accum)``, so 1 process x accum 2 sees what 2 processes x accum 1 see.
    ``start`` (a multiple of world*accum) skips what a resumed run already trained on.
    """

    def __init__(self, plan: list[list[int]], *, rank: int, world: int, accum: int, start: int = 0) -> None:
        self.plan = plan
        self.rank, self.world, self.accum = rank, world, accum
        per_step = world * accum
        self.num_steps = len(plan) // per_step  # a trailing partial step is dropped
        if start % per_step:
            raise ValueError(f"start {start} is not a multiple of world*accum={per_step}")
        self.start = start

    def __len__(self) -> int:
        return max(0, self.num_steps * self.accum - self.start // self.world)

    def __iter__(self) -> Iterator[list[int]]:
        end = self.num_steps * self.world * self.accum
        for g in range(self.start + self.rank, end, self.world):
            yield self.plan[g]
