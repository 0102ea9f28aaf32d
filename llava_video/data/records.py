"""LLaVA training records, dataset mixtures and bad-record reports.

A record is one LLaVA JSON object: ``id``, ``image`` (a path or a list of paths) or ``video``, and
``conversations`` (``from: human|gpt``, ``value`` with ``<image>``/``<video>`` markers). Files are JSON
arrays or JSONL. Every record that cannot be trained on is reported with its file and line and the
reason; the policy decides whether that stops the run (``fail``) or the record is left out (``skip``),
never silently.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from llava_video.atomic import write_text_atomic
from llava_video.errors import ConfigError, InputError

__all__ = [
    "Record",
    "BadRecord",
    "BadRecordReport",
    "BadRecordError",
    "Modality",
    "parse_sampling",
    "apply_sampling",
    "read_records",
    "read_mixture",
    "load_records",
]

Modality = Literal["text", "image", "video"]
_IMAGE, _VIDEO = "<image>", "<video>"


class BadRecordError(InputError):
    """A record cannot be trained on and the policy is ``fail``."""


@dataclass(frozen=True)
class Record:
    source: str
    line: int
    record_id: str
    conversations: tuple[dict[str, Any], ...]
    images: tuple[str, ...] = ()
    videos: tuple[str, ...] = ()

    @property
    def modality(self) -> Modality:
        return "video" if self.videos else "image" if self.images else "text"

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line} (id {self.record_id})"


@dataclass(frozen=True)
class BadRecord:
    source: str
    line: int
    record_id: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line} (id {self.record_id}): {self.reason}"


@dataclass
class BadRecordReport:
    """Every record left out, and why. With ``policy='fail'`` the first one raises ``BadRecordError``."""

    policy: Literal["skip", "fail"] = "skip"
    items: list[BadRecord] = field(default_factory=list)

    def add(self, bad: BadRecord) -> None:
        """Record ``bad`` once (a record failing again in a later epoch is not counted twice)."""
        if any((b.source, b.line) == (bad.source, bad.line) for b in self.items):
            return
        if self.policy == "fail":
            raise BadRecordError(f"bad training record {bad} (data.on_bad_record=fail; set it to skip to leave such records out)")
        self.items.append(bad)

    def add_record(self, record: Record, reason: str) -> None:
        self.add(BadRecord(record.source, record.line, record.record_id, reason))

    def __len__(self) -> int:
        return len(self.items)

    def counts(self) -> dict[str, int]:
        """Bad records per kind of reason (the text before the first colon)."""
        return dict(Counter(b.reason.split(":")[0] for b in self.items))

    def summary(self, limit: int = 5) -> str:
        if not self.items:
            return "bad records: 0"
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(self.counts().items()))
        shown = "; ".join(str(b) for b in self.items[:limit])
        more = f"; ... {len(self.items) - limit} more" if len(self.items) > limit else ""
        return f"bad records: {len(self.items)} ({kinds}) - {shown}{more}"

    def write_jsonl(self, path: str | Path) -> None:
        write_text_atomic(path, "".join(json.dumps(b.__dict__) + "\n" for b in self.items))


# ---- sampling strategies ---------------------------------------------------------------------------
_SAMPLING_RE = re.compile(r"^(all|first:(\d+)|random:(\d+)|random:(\d+(?:\.\d+)?)%)$")


def parse_sampling(spec: str) -> tuple[str, float | None]:
    """``all`` | ``first:N`` | ``random:N`` | ``random:P%`` -> (kind, amount); P% is returned as a fraction."""
    m = _SAMPLING_RE.match(str(spec).strip())
    if m is None:
        raise ConfigError(f"sampling {spec!r} is not one of all, first:N, random:N, random:P%")
    if m.group(1) == "all":
        return "all", None
    if m.group(2) is not None:
        return "first", float(m.group(2))
    if m.group(3) is not None:
        return "random", float(m.group(3))
    pct = float(m.group(4))
    if not 0 < pct <= 100:
        raise ConfigError(f"sampling {spec!r}: the percentage must lie in (0, 100]")
    return "random_fraction", pct / 100


def apply_sampling(records: list[Record], spec: str, *, seed: int) -> list[Record]:
    """The records a sampling strategy keeps; random picks are seeded and keep file order."""
    kind, amount = parse_sampling(spec)
    if kind == "all":
        return list(records)
    if kind == "first":
        return records[: int(amount or 0)]
    n = int(amount or 0) if kind == "random" else round(len(records) * float(amount or 0))
    n = min(n, len(records))
    picked = sorted(random.Random(seed).sample(range(len(records)), n))
    return [records[i] for i in picked]


# ---- reading files ------------------------------------------------------------------------------------
def _iter_json_objects(path: Path) -> Iterator[tuple[int, Any]]:
    """(line, parsed object) for each element of a JSON array or each line of a JSONL file.

    A JSONL line that is not JSON yields (line, JSONDecodeError); a broken JSON array yields one error
    at the line where parsing stopped (nothing after it can be read).
    """
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if path.suffix == ".jsonl" or not stripped.startswith("["):
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                yield lineno, exc
        return
    decoder = json.JSONDecoder()
    pos = len(text) - len(stripped) + 1  # just after "["
    line, counted_to = 1, 0

    def line_at(i: int) -> int:
        nonlocal line, counted_to
        line += text.count("\n", counted_to, i)
        counted_to = i
        return line

    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text):
            yield line_at(pos), json.JSONDecodeError("unterminated JSON array", text, pos)
            return
        if text[pos] == "]":
            return
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            yield line_at(exc.pos), exc
            return
        yield line_at(pos), obj
        pos = end


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _check_record(obj: Any, *, source: str, line: int, image_root: Path, video_root: Path) -> Record | BadRecord:
    """A Record, or a BadRecord saying why ``obj`` cannot be trained on."""
    rid = str(obj.get("id", "?")) if isinstance(obj, dict) else "?"

    def bad(reason: str) -> BadRecord:
        return BadRecord(source, line, rid, reason)

    if isinstance(obj, json.JSONDecodeError):
        return bad(f"malformed JSON: {obj.msg} at column {obj.colno}")
    if not isinstance(obj, dict):
        return bad(f"malformed record: expected an object, got {type(obj).__name__}")
    convs = obj.get("conversations")
    if not isinstance(convs, list) or not all(isinstance(t, dict) for t in convs) or not convs:
        return bad("malformed record: 'conversations' must be a non-empty list of turns")
    speakers = [str(t.get("from", t.get("role", ""))) for t in convs]
    unknown = sorted({s for s in speakers if s not in ("human", "gpt", "user", "assistant", "system")})
    if unknown:
        return bad(f"malformed record: unknown speaker(s) {unknown}")
    if not any(s in ("gpt", "assistant") for s in speakers):
        return bad("no assistant turn: nothing to learn from")
    images, videos = _as_list(obj.get("image")), _as_list(obj.get("video"))
    text = "".join(str(t.get("value", t.get("content", ""))) for t in convs)
    for marker, media in ((_IMAGE, images), (_VIDEO, videos)):
        if text.count(marker) != len(media):
            return bad(f"placeholder mismatch: {text.count(marker)} {marker} marker(s) for {len(media)} file(s)")
    resolved: dict[str, list[str]] = {"image": [], "video": []}
    for kind, media, root in (("image", images, image_root), ("video", videos, video_root)):
        for rel in media:
            p = Path(rel).expanduser()
            p = p if p.is_absolute() else root / p
            if not p.exists():
                return bad(f"missing media: {kind} file {p} not found")
            resolved[kind].append(str(p))
    return Record(source, line, rid, tuple(convs), tuple(resolved["image"]), tuple(resolved["video"]))


def read_records(path: str | Path, *, image_root: str | Path, video_root: str | Path, report: BadRecordReport) -> list[Record]:
    """Every trainable record of one LLaVA JSON/JSONL file; the others go to ``report``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: dataset file not found")
    out: list[Record] = []
    for line, obj in _iter_json_objects(path):
        checked = _check_record(obj, source=str(path), line=line, image_root=Path(image_root), video_root=Path(video_root))
        if isinstance(checked, BadRecord):
            report.add(checked)
        else:
            out.append(checked)
    return out


def read_mixture(path: str | Path) -> list[dict[str, Any]]:
    """A mixture YAML: ``datasets: [{path, sampling, image_root?, video_root?, name?}]``; paths inside are
    relative to the mixture file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the mixture ({exc})") from None
    if not isinstance(data, dict) or set(data) - {"datasets"} or not isinstance(data.get("datasets"), list):
        raise ConfigError(f"{path}: a mixture is a mapping with one key, 'datasets' (a list)")
    entries = []
    for i, entry in enumerate(data["datasets"]):
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: datasets[{i}] must be a mapping")
        entry = dict(entry)
        for key in ("path", "image_root", "video_root"):
            if entry.get(key) is not None and not Path(entry[key]).expanduser().is_absolute():
                entry[key] = str(path.parent / entry[key])
        entries.append(entry)
    return entries


def load_records(
    entries: list[Any], *, image_root: str, video_root: str, seed: int, report: BadRecordReport
) -> list[Record]:
    """The records of a mixture: each entry read, checked and sampled, in entry order.

    ``entries`` are ``DatasetEntry`` objects (or mappings with the same keys).
    """
    out: list[Record] = []
    for i, entry in enumerate(entries):
        get = entry.get if isinstance(entry, dict) else lambda k, d=None, e=entry: getattr(e, k, d)
        records = read_records(
            get("path"),
            image_root=get("image_root") or image_root,
            video_root=get("video_root") or video_root,
            report=report,
        )
        out.extend(apply_sampling(records, get("sampling", "all") or "all", seed=seed + i))
    if not out:
        raise ConfigError(f"no trainable records in the data ({report.summary()})")
    return out
