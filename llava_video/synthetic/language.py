"""Text from ground truth: detailed captions, questions with short answers, 5-way multiple choice.

Every question is built from the scene's ground truth and needs the pixels to answer: the colour of a
named shape, the shape and size of a named colour, how many objects, where one ends up, which way it
moves, what happens to it, and which event comes right after / right before another. Each question kind
maps onto a NExT-QA type (table in docs/synthetic.md), so the held-out split can be written as NExT-QA
CSVs and scored per type. Distractors come from the scene first (other objects' colours, shapes and
events), so an option list cannot be solved by knowing only what is in the clip.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from llava_video.synthetic.world import REGIONS, SIZES, Scene, SceneObject, WorldConfig, region_of

__all__ = [
    "QA",
    "KIND_TO_NEXTQA",
    "NUMBER_WORDS",
    "DIRECTION_ANSWERS",
    "NO_EVENT_ANSWER",
    "VIDEO_CAPTION_PROMPTS",
    "IMAGE_CAPTION_PROMPTS",
    "video_caption",
    "image_caption",
    "video_questions",
    "image_questions",
    "select_questions",
    "event_phrase",
]

NUM_OPTIONS = 5
NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five")
DIRECTION_ANSWERS: dict[str, str] = {"left": "left", "right": "right", "up": "up", "down": "down", "still": "not moving"}
NO_EVENT_ANSWER = "stays the same"
KIND_TO_NEXTQA: dict[str, str] = {
    "colour": "DO",  # what colour is X
    "identity": "DO",  # what is the red object (size + shape)
    "count": "DC",  # how many objects
    "location": "DL",  # where is X at the start / end
    "direction": "CH",  # how (which way) does X move
    "event": "TC",  # what happens to X during the clip
    "colour_change": "TC",  # what colour is X at the start / at the end
    "after": "TN",  # what happens right after E
    "before": "TN",  # what happens right before E
}
# The last one is tools/infer_video.py's default prompt, so the demo model answers it with a caption.
VIDEO_CAPTION_PROMPTS: tuple[str, ...] = (
    "Describe the video in detail.",
    "What happens in the video?",
    "Give a detailed description of the video.",
    "Please describe this video in detail.",
)
IMAGE_CAPTION_PROMPTS: tuple[str, ...] = (
    "Describe the image in detail.",
    "What is in the image?",
)
_MOTION_PHRASES = {
    "left": "moves left",
    "right": "moves right",
    "up": "moves up",
    "down": "moves down",
    "still": "does not move",
}


@dataclass(frozen=True)
class QA:
    """One question with its short answer and a 5-way multiple choice version."""

    kind: str
    question: str
    answer: str
    options: tuple[str, ...]
    answer_index: int

    @property
    def nextqa_type(self) -> str:
        return KIND_TO_NEXTQA[self.kind]


def _count_sentence(n: int) -> str:
    return "There is one object." if n == 1 else f"There are {NUMBER_WORDS[n]} objects."


def _name(obj: SceneObject, colour: str | None = None) -> str:
    return f"{colour or obj.colour} {obj.shape}"


def event_phrase(obj: SceneObject) -> str:
    """'the red square appears' / 'the red square disappears' / 'the red square turns green'."""
    if obj.event == "change":
        return f"the {_name(obj)} turns {obj.new_colour}"
    return f"the {_name(obj)} {obj.event}s"


def _region_phrase(obj: SceneObject, scene: Scene, t: float) -> str:
    x, y = obj.centre_at(t)
    region = region_of(x=x, y=y, width=scene.width, height=scene.height)
    if region is None:
        return ""
    return " in the centre" if region == "centre" else f" at the {region}"


def _by_first_appearance(scene: Scene) -> list[SceneObject]:
    return sorted(scene.objects, key=lambda o: (o.first_time, o.centre_at(o.first_time)[0]))


def video_caption(scene: Scene, *, with_events: bool = True) -> str:
    """A detailed caption: count, each object (size, colour, shape, start place, motion), events in order.
    ``with_events=False``: the same without the events, the briefer description some SFT captions give."""
    parts = [_count_sentence(len(scene.objects))]
    for obj in _by_first_appearance(scene):
        parts.append(f"A {obj.size} {_name(obj)}{_region_phrase(obj, scene, obj.first_time)} {_MOTION_PHRASES[obj.direction]}.")
    if not with_events:
        return " ".join(parts)
    events = scene.events()
    if not events:
        parts.append("Nothing appears, disappears or changes colour.")
    elif len(events) == 1:
        parts.append(f"Later, {event_phrase(events[0][1])}.")
    else:
        leads = ["First"] + ["Then"] * (len(events) - 2) + ["Finally"]
        parts.extend(f"{lead}, {event_phrase(obj)}." for lead, (_, obj) in zip(leads, events))
    return " ".join(parts)


def image_caption(scene: Scene) -> str:
    """A detailed caption of a still scene: count, then each object left to right with its place."""
    parts = [_count_sentence(len(scene.objects))]
    for obj in sorted(scene.objects, key=lambda o: o.start[0]):
        parts.append(f"A {obj.size} {_name(obj)}{_region_phrase(obj, scene, 0.0)}.")
    return " ".join(parts)


def _choice(*, rng: np.random.Generator, answer: str, preferred: list[str], pool: list[str]) -> tuple[tuple[str, ...], int]:
    """5 options: the answer, distractors from ``preferred`` first (shuffled), then from ``pool``."""
    distractors: list[str] = []
    for group in (preferred, pool):
        candidates = [c for c in dict.fromkeys(group) if c != answer and c not in distractors]
        for idx in rng.permutation(len(candidates)):
            if len(distractors) == NUM_OPTIONS - 1:
                break
            distractors.append(candidates[int(idx)])
    if len(distractors) < NUM_OPTIONS - 1:
        raise ValueError(f"not enough distractors for {answer!r}")
    options = [answer] + distractors
    order = rng.permutation(NUM_OPTIONS)
    shuffled = tuple(options[int(i)] for i in order)
    return shuffled, shuffled.index(answer)


def _qa(*, rng: np.random.Generator, kind: str, question: str, answer: str, preferred: list[str], pool: list[str]) -> QA:
    options, index = _choice(rng=rng, answer=answer, preferred=preferred, pool=pool)
    return QA(kind=kind, question=question, answer=answer, options=options, answer_index=index)


def _refs(obj: SceneObject) -> list[str]:
    """Unambiguous names of an object: by shape always, by colour when it never changes colour."""
    refs = [f"the {obj.shape}"]
    if obj.event != "change":
        refs.append(f"the {obj.colour} object")
    return refs


def _pick(rng: np.random.Generator, items: list[str]) -> str:
    return items[int(rng.integers(0, len(items)))]


def _identity(obj: SceneObject) -> str:
    return f"{obj.size} {obj.shape}"


def _attribute_questions(
    *, scene: Scene, rng: np.random.Generator, config: WorldConfig, medium: str
) -> list[QA]:
    """Colour, identity and count questions (shared by videos and still images)."""
    qas: list[QA] = []
    colours = list(config.colours)
    identities = [f"{size} {shape}" for shape in config.shapes for size in SIZES]
    scene_colours = [c for o in scene.objects for c in (o.colour, o.new_colour) if c]
    for obj in scene.objects:
        if obj.event != "change":
            qas.append(
                _qa(rng=rng, kind="colour", question=f"What colour is the {obj.shape}?", answer=obj.colour,
                    preferred=scene_colours, pool=colours)
            )
            same_shape = [f"{s} {obj.shape}" for s in SIZES]
            others = [_identity(o) for o in scene.objects]
            qas.append(
                _qa(rng=rng, kind="identity", question=f"What is the {obj.colour} object?", answer=_identity(obj),
                    preferred=same_shape + others, pool=identities)
            )
    where = "in the video" if medium == "video" else "in the image"
    qas.append(
        _qa(rng=rng, kind="count", question=f"How many objects are there {where}?",
            answer=NUMBER_WORDS[len(scene.objects)], preferred=[], pool=list(NUMBER_WORDS[1:6]))
    )
    return qas


def _location_question(*, obj: SceneObject, scene: Scene, rng: np.random.Generator, video: bool) -> QA | None:
    moments = []
    if video:
        if obj.visible_at(0.0):
            moments.append(("at the start", 0.0))
        if obj.visible_at(1.0):
            moments.append(("at the end", 1.0))
    else:
        moments.append(("", 0.0))
    when, t = moments[int(rng.integers(0, len(moments)))]
    x, y = obj.centre_at(t)
    region = region_of(x=x, y=y, width=scene.width, height=scene.height)
    if region is None:
        return None  # too close to a region border to have one right answer
    ref = _pick(rng, _refs(obj))
    question = f"Where is {ref} {when}?" if when else f"Where is {ref}?"
    return _qa(rng=rng, kind="location", question=question, answer=region, preferred=[], pool=list(REGIONS))


def _event_answer(obj: SceneObject) -> str:
    if obj.event == "none":
        return NO_EVENT_ANSWER
    if obj.event == "change":
        return f"turns {obj.new_colour}"
    return f"{obj.event}s"


def _order_questions(*, scene: Scene, rng: np.random.Generator, config: WorldConfig) -> list[QA]:
    """'What happens right after / right before E?' for scenes with two or more events."""
    events = [obj for _, obj in scene.events()]
    if len(events) < 2:
        return []
    real = [event_phrase(o) for o in events]
    fabricated = []
    for obj in scene.objects:
        for verb in ("appears", "disappears"):
            fabricated.append(f"the {_name(obj)} {verb}")
        for colour in config.colours:
            if colour != obj.colour:
                fabricated.append(f"the {_name(obj)} turns {colour}")
    qas = []
    for i in range(len(events) - 1):
        anchor, following = real[i], real[i + 1]
        qas.append(
            _qa(rng=rng, kind="after", question=f"What happens right after {anchor}?", answer=following,
                preferred=[r for r in real if r != anchor], pool=[f for f in fabricated if f not in real])
        )
        anchor, previous = real[i + 1], real[i]
        qas.append(
            _qa(rng=rng, kind="before", question=f"What happens right before {anchor}?", answer=previous,
                preferred=[r for r in real if r != anchor], pool=[f for f in fabricated if f not in real])
        )
    return qas


def video_questions(*, scene: Scene, rng: np.random.Generator, config: WorldConfig) -> list[QA]:
    """Every question this clip supports (one per kind and object where it applies)."""
    qas = _attribute_questions(scene=scene, rng=rng, config=config, medium="video")
    directions = list(DIRECTION_ANSWERS.values())
    event_pool = ["appears", "disappears", NO_EVENT_ANSWER] + [f"turns {c}" for c in config.colours]
    for obj in scene.objects:
        if obj.event == "change":
            when, colour = [("at the start", obj.colour), ("at the end", obj.new_colour)][int(rng.integers(0, 2))]
            qas.append(
                _qa(rng=rng, kind="colour_change", question=f"What colour is the {obj.shape} {when}?", answer=colour,
                    preferred=[obj.colour, obj.new_colour], pool=list(config.colours))
            )
        location = _location_question(obj=obj, scene=scene, rng=rng, video=True)
        if location is not None:
            qas.append(location)
        ref = _pick(rng, _refs(obj))
        qas.append(
            _qa(rng=rng, kind="direction", question=f"Which way does {ref} move?",
                answer=DIRECTION_ANSWERS[obj.direction], preferred=[], pool=directions)
        )
        ref = _pick(rng, _refs(obj))
        answer = _event_answer(obj)
        own = [a for a in event_pool if a != f"turns {obj.colour}"]
        qas.append(
            _qa(rng=rng, kind="event", question=f"What happens to {ref}?", answer=answer,
                preferred=["appears", "disappears", NO_EVENT_ANSWER], pool=own)
        )
    qas.extend(_order_questions(scene=scene, rng=rng, config=config))
    return qas


def image_questions(*, scene: Scene, rng: np.random.Generator, config: WorldConfig) -> list[QA]:
    """Every question a still image supports: colour, identity, count, location."""
    qas = _attribute_questions(scene=scene, rng=rng, config=config, medium="image")
    for obj in scene.objects:
        location = _location_question(obj=obj, scene=scene, rng=rng, video=False)
        if location is not None:
            qas.append(location)
    return qas


def select_questions(qas: list[QA], *, rng: np.random.Generator, count: int,
                     kind_weights: Mapping[str, float] | None = None) -> list[QA]:
    """Up to ``count`` questions, spread over kinds: one random question per kind in turn, kinds shuffled.

    ``kind_weights`` (kind -> weight, 1 for kinds not named) biases the shuffle: kinds are drawn without
    replacement with probability proportional to their weight, so a heavier kind more often makes the first
    ``count``. Without it (or with every weight 1) the draws are those of the unweighted shuffle."""
    by_kind: dict[str, list[QA]] = {}
    for qa in qas:
        by_kind.setdefault(qa.kind, []).append(qa)
    kinds = sorted(by_kind)
    weights = np.array([float((kind_weights or {}).get(k, 1.0)) for k in kinds])
    if np.all(weights == 1.0):
        order = rng.permutation(len(kinds))
    else:
        order = rng.choice(len(kinds), size=len(kinds), replace=False, p=weights / weights.sum())
    kinds = [kinds[int(i)] for i in order]
    pools = {k: [by_kind[k][int(i)] for i in rng.permutation(len(by_kind[k]))] for k in kinds}
    chosen: list[QA] = []
    while len(chosen) < count and any(pools.values()):
        for kind in kinds:
            if pools[kind] and len(chosen) < count:
                chosen.append(pools[kind].pop())
    return chosen
