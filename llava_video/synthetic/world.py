"""A tiny world of moving shapes: seeded scene sampling and a numpy renderer.

A scene is a handful of flat-coloured objects on a dark background. Each object has a shape, a colour
and a size, moves in a straight line at constant speed (or stays still) and may have one event: it
appears, disappears or changes colour at some moment. Time is continuous in [0, 1], so the same scene
can be rendered at any number of frames (8, 16, 32, ...) with the same motion: that is what the
length-generalisation study needs.

Design choices (the reasons are in docs/synthetic.md):
- objects in one scene have distinct shapes and distinct colours (before and after a change), so
  "the red object" and "the square" always name exactly one object;
- objects never overlap (with a gap), so every object is fully visible whenever it exists;
- events are at least ~0.17 of the clip apart and inside [0.2, 0.8], so their order survives sampling
  at 8 frames.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Literal

import numpy as np

from llava_video.errors import ConfigError

__all__ = [
    "PALETTE",
    "SHAPES",
    "SIZES",
    "DIRECTIONS",
    "EVENTS",
    "REGIONS",
    "WorldConfig",
    "check_count_weights",
    "ComboRule",
    "SceneObject",
    "Scene",
    "sample_scene",
    "sample_still_scene",
    "frame_times",
    "render_frame",
    "render_clip",
    "shape_mask",
    "region_of",
]

# Colours far apart in RGB and in YUV chroma, so that video compression cannot confuse them.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 255),
    "yellow": (240, 220, 40),
    "purple": (170, 60, 230),
    "white": (240, 240, 240),
}
# Silhouettes that differ in where the mass is (full, round, top-narrow, plus), not only in area.
SHAPES: tuple[str, ...] = ("square", "circle", "triangle", "cross")
SIZES: tuple[str, ...] = ("small", "big")
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down", "still")
EVENTS: tuple[str, ...] = ("none", "appear", "disappear", "change")
REGIONS: tuple[str, ...] = ("top left", "top right", "bottom left", "bottom right", "centre")

# Event times are slots with jitter: any two events are >= 0.17 apart, more than one frame step at 8 frames.
_EVENT_SLOTS = (0.25, 0.5, 0.75)
_EVENT_JITTER = 0.04
_GAP_PX = 2  # minimum empty pixels between two objects' boxes
_MAX_TRIES = 200

ComboRule = Literal["any", "exclude", "require"]


@dataclass(frozen=True)
class WorldConfig:
    """What can vary in the world. Sizes are fractions of the frame side so any resolution works."""

    size: int = 64
    min_objects: int = 1
    max_objects: int = 3
    event_probability: float = 0.6
    still_probability: float = 0.2
    small_fraction: float = 0.1875
    big_fraction: float = 0.28125
    travel_fraction: float = 0.375
    background: tuple[int, int, int] = (16, 16, 16)
    colours: tuple[str, ...] = tuple(PALETTE)
    shapes: tuple[str, ...] = SHAPES
    held_out_combos: tuple[tuple[str, str], ...] = field(default=())
    # Relative weights of the object counts min_objects..max_objects (one per count); () draws them uniformly.
    count_weights: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not 16 <= self.size <= 1024:
            raise ConfigError(f"size: must be in [16, 1024] pixels, got {self.size}")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ConfigError(f"min_objects/max_objects: need 1 <= min <= max, got {self.min_objects}/{self.max_objects}")
        if self.max_objects > min(len(self.shapes), len(self.colours) // 2, 5):
            raise ConfigError(
                f"max_objects: at most {min(len(self.shapes), len(self.colours) // 2, 5)} "
                f"(distinct shapes and colours per scene, counts up to five), got {self.max_objects}"
            )
        for name in ("event_probability", "still_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name}: must be in [0, 1], got {getattr(self, name)}")
        if not 0 < self.small_fraction < self.big_fraction <= 0.35:
            raise ConfigError("small_fraction/big_fraction: need 0 < small < big <= 0.35")
        if not 0 < self.travel_fraction <= 0.5:
            raise ConfigError(f"travel_fraction: must be in (0, 0.5], got {self.travel_fraction}")
        if self.big_fraction * 2 + self.travel_fraction > 0.95:
            raise ConfigError("big_fraction * 2 + travel_fraction: objects cannot move that far in the frame")
        if round(self.size * self.small_fraction) < 4:
            raise ConfigError(f"size: small objects would be under 4 px at size {self.size}")
        unknown = [c for c in self.colours if c not in PALETTE] + [s for s in self.shapes if s not in SHAPES]
        if unknown:
            raise ConfigError(f"colours/shapes: unknown names {unknown}")
        if len(self.colours) < 5 or len(self.shapes) < 3:
            raise ConfigError("colours/shapes: need >= 5 colours and >= 3 shapes (5 MC options each)")
        if self.count_weights:
            check_count_weights(self.count_weights, min_objects=self.min_objects, max_objects=self.max_objects)
        for colour, shape in self.held_out_combos:
            if colour not in self.colours or shape not in self.shapes:
                raise ConfigError(f"held_out_combos: ({colour}, {shape}) is not a colour/shape of this world")

    def side_px(self, size_word: str) -> int:
        fraction = self.small_fraction if size_word == "small" else self.big_fraction
        return int(self.size * fraction + 0.5)


def check_count_weights(weights: tuple[float, ...], *, min_objects: int, max_objects: int,
                        name: str = "count_weights") -> None:
    """One weight >= 0 per object count min_objects..max_objects, not all zero; ``name`` is the key reported."""
    expected = max_objects - min_objects + 1
    if len(weights) != expected or any(not w >= 0 for w in weights) or not any(weights):
        raise ConfigError(f"{name}: need {expected} weights >= 0 (objects {min_objects}..{max_objects}), "
                          f"not all zero, got {list(weights)}")


def _draw_count(rng: np.random.Generator, config: WorldConfig) -> int:
    if not config.count_weights:  # the uniform draw every dataset without weights was made with
        return int(rng.integers(config.min_objects, config.max_objects + 1))
    weights = np.asarray(config.count_weights, dtype=np.float64)
    return config.min_objects + int(rng.choice(len(weights), p=weights / weights.sum()))


@dataclass(frozen=True)
class SceneObject:
    """One object's ground truth. Positions are box centres in pixels, (x, y), y down."""

    shape: str
    colour: str
    size: str
    side: int
    direction: str
    start: tuple[float, float]
    end: tuple[float, float]
    event: str = "none"
    event_time: float | None = None
    new_colour: str | None = None

    def centre_at(self, t: float) -> tuple[float, float]:
        return (
            self.start[0] + (self.end[0] - self.start[0]) * t,
            self.start[1] + (self.end[1] - self.start[1]) * t,
        )

    def visible_at(self, t: float) -> bool:
        if self.event == "appear":
            return t >= self.event_time
        if self.event == "disappear":
            return t < self.event_time
        return True

    def colour_at(self, t: float) -> str:
        if self.event == "change" and t >= self.event_time:
            return self.new_colour
        return self.colour

    def box_at(self, t: float) -> tuple[int, int]:
        """Top-left pixel of the object's box at time ``t`` (what the renderer draws)."""
        cx, cy = self.centre_at(t)
        return int(np.floor(cx - self.side / 2 + 0.5)), int(np.floor(cy - self.side / 2 + 0.5))

    @property
    def first_time(self) -> float:
        return self.event_time if self.event == "appear" else 0.0

    @property
    def last_time(self) -> float:
        """The last moment the object is visible (just before it disappears)."""
        return self.event_time - 1e-6 if self.event == "disappear" else 1.0


@dataclass(frozen=True)
class Scene:
    width: int
    height: int
    objects: tuple[SceneObject, ...]
    background: tuple[int, int, int] = (16, 16, 16)

    def to_dict(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "background": list(self.background),
            "objects": [
                {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(obj).items()}
                for obj in self.objects
            ],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Scene":
        objects = tuple(
            SceneObject(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in obj.items()})
            for obj in data["objects"]
        )
        return cls(width=data["width"], height=data["height"], objects=objects, background=tuple(data["background"]))

    def events(self) -> list[tuple[float, SceneObject]]:
        """(time, object) for every object with an event, in time order."""
        return sorted(((o.event_time, o) for o in self.objects if o.event != "none"), key=lambda e: e[0])


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    # Rounded so that JSON round-trips give exactly the same floats and the same rendering.
    return round(float(rng.uniform(low, high)), 3)


def _trajectory(
    *, rng: np.random.Generator, width: int, height: int, side: int, direction: str, travel: float
) -> tuple[tuple[float, float], tuple[float, float]]:
    half = side / 2 + 1
    dx, dy = {"left": (-travel, 0), "right": (travel, 0), "up": (0, -travel), "down": (0, travel), "still": (0, 0)}[
        direction
    ]
    # The start is drawn so that start and end both keep the whole box inside the frame.
    x0 = _uniform(rng, half + max(0.0, -dx), width - half - max(0.0, dx))
    y0 = _uniform(rng, half + max(0.0, -dy), height - half - max(0.0, dy))
    return (x0, y0), (round(x0 + dx, 3), round(y0 + dy, 3))


def _overlaps(a: SceneObject, b: SceneObject) -> bool:
    for t in np.linspace(0.0, 1.0, 33):
        if not (a.visible_at(t) and b.visible_at(t)):
            continue
        (ax, ay), (bx, by) = a.centre_at(t), b.centre_at(t)
        reach = (a.side + b.side) / 2 + _GAP_PX
        if abs(ax - bx) < reach and abs(ay - by) < reach:
            return True
    return False


def _combo_ok(objects: list[SceneObject], *, config: WorldConfig, rule: ComboRule) -> bool:
    if rule == "any" or not config.held_out_combos:
        return True
    held = set(config.held_out_combos)
    hits = [
        (c, o.shape) in held for o in objects for c in ((o.colour, o.new_colour) if o.new_colour else (o.colour,))
    ]
    return not any(hits) if rule == "exclude" else any(hits)


def sample_scene(
    *,
    rng: np.random.Generator,
    config: WorldConfig,
    width: int | None = None,
    height: int | None = None,
    static: bool = False,
    combo_rule: ComboRule = "any",
) -> Scene:
    """Draw one scene. ``static`` scenes (still images) have no motion and no events.

    ``combo_rule`` applies ``config.held_out_combos``: "exclude" for training scenes, "require" (at least
    one held-out colour/shape pair) for the held-out split.
    """
    width = width or config.size
    height = height or config.size
    travel = config.travel_fraction * min(width, height)
    for _ in range(_MAX_TRIES):
        count = _draw_count(rng, config)
        shapes = rng.permutation(len(config.shapes))[:count]
        colour_ids = rng.permutation(len(config.colours))
        colours, spare = colour_ids[:count], list(colour_ids[count:])
        n_events = 0 if static else int(rng.binomial(count, config.event_probability))
        n_events = min(n_events, len(_EVENT_SLOTS))
        with_event = set(rng.permutation(count)[:n_events].tolist())
        slots = sorted(rng.permutation(len(_EVENT_SLOTS))[:n_events].tolist())
        slot_iter = iter(rng.permutation(slots).tolist())
        objects: list[SceneObject] = []
        for i in range(count):
            size_word = SIZES[int(rng.integers(0, len(SIZES)))]
            side = config.side_px(size_word)
            if static or rng.random() < config.still_probability:
                direction = "still"
            else:
                direction = DIRECTIONS[int(rng.integers(0, 4))]
            event, event_time, new_colour = "none", None, None
            if i in with_event:
                event = ("appear", "disappear", "change")[int(rng.integers(0, 3))]
                slot = _EVENT_SLOTS[next(slot_iter)]
                event_time = round(slot + _uniform(rng, -_EVENT_JITTER, _EVENT_JITTER), 3)
                if event == "change":
                    # The new colour is used by no other object, so colour names stay unambiguous.
                    new_colour = config.colours[int(spare.pop(0))]
            # Placement is retried per object, so crowded scenes are not rarer than sparse ones.
            for _ in range(_MAX_TRIES):
                start, end = _trajectory(
                    rng=rng, width=width, height=height, side=side, direction=direction, travel=travel
                )
                candidate = SceneObject(
                    shape=config.shapes[int(shapes[i])],
                    colour=config.colours[int(colours[i])],
                    size=size_word,
                    side=side,
                    direction=direction,
                    start=start,
                    end=end,
                    event=event,
                    event_time=event_time,
                    new_colour=new_colour,
                )
                if not any(_overlaps(candidate, other) for other in objects):
                    objects.append(candidate)
                    break
        if len(objects) < count:
            continue
        if not _combo_ok(objects, config=config, rule=combo_rule):
            continue
        return Scene(width=width, height=height, objects=tuple(objects), background=config.background)
    raise ConfigError(
        f"world: no valid scene in {_MAX_TRIES} tries (frame {width}x{height}, up to {config.max_objects} objects); "
        "use a larger frame, fewer objects or smaller objects"
    )


def sample_still_scene(
    *, rng: np.random.Generator, config: WorldConfig, width: int, height: int, combo_rule: ComboRule = "any"
) -> Scene:
    """A scene for a still image (no motion, no events) of the given size."""
    return sample_scene(rng=rng, config=config, width=width, height=height, static=True, combo_rule=combo_rule)


def frame_times(num_frames: int) -> np.ndarray:
    """Times in [0, 1] of ``num_frames`` evenly spaced frames, first at 0 and last at 1."""
    if num_frames < 1:
        raise ConfigError(f"num_frames: must be >= 1, got {num_frames}")
    if num_frames == 1:
        return np.zeros(1)
    return np.linspace(0.0, 1.0, num_frames)


@cache
def shape_mask(shape: str, side: int) -> np.ndarray:
    """Boolean (side, side) silhouette of ``shape``."""
    centre = (side - 1) / 2
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float64)
    if shape == "square":
        mask = np.ones((side, side), dtype=bool)
    elif shape == "circle":
        mask = (xs - centre) ** 2 + (ys - centre) ** 2 <= (side / 2) ** 2
    elif shape == "triangle":
        # Apex at the top, base on the bottom row: the half-width grows linearly with the row.
        mask = np.abs(xs - centre) <= (ys + 1) / 2
    elif shape == "cross":
        arm = side / 6
        mask = (np.abs(xs - centre) <= arm) | (np.abs(ys - centre) <= arm)
    else:
        raise ConfigError(f"shape: unknown shape {shape!r}")
    mask.setflags(write=False)
    return mask


def render_frame(scene: Scene, t: float) -> np.ndarray:
    """The frame at time ``t`` as (H, W, 3) uint8 RGB."""
    frame = np.empty((scene.height, scene.width, 3), dtype=np.uint8)
    frame[:] = scene.background
    for obj in scene.objects:
        if not obj.visible_at(t):
            continue
        x0, y0 = obj.box_at(t)
        mask = shape_mask(obj.shape, obj.side)
        # Clip the box to the frame (trajectories keep it inside; this only guards hand-made scenes).
        ys, xs = slice(max(y0, 0), min(y0 + obj.side, scene.height)), slice(max(x0, 0), min(x0 + obj.side, scene.width))
        sub = mask[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
        frame[ys, xs][sub] = PALETTE[obj.colour_at(t)]
    return frame


def render_clip(scene: Scene, *, num_frames: int) -> np.ndarray:
    """(T, H, W, 3) uint8 frames at ``frame_times(num_frames)``."""
    return np.stack([render_frame(scene, float(t)) for t in frame_times(num_frames)])


def region_of(*, x: float, y: float, width: int, height: int) -> str | None:
    """The named region of a point, or None where it is too close to a border between regions."""
    dx, dy = x - width / 2, y - height / 2
    if max(abs(dx) / width, abs(dy) / height) <= 0.1:
        return "centre"
    if min(abs(dx) / width, abs(dy) / height) >= 0.1:
        return f"{'top' if dy < 0 else 'bottom'} {'left' if dx < 0 else 'right'}"
    return None
