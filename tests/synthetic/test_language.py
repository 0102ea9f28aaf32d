import re

import numpy as np

from llava_video.synthetic.language import (
    KIND_TO_NEXTQA,
    image_caption,
    image_questions,
    select_questions,
    video_caption,
    video_questions,
)
from llava_video.synthetic.world import WorldConfig, region_of, sample_scene, sample_still_scene

CONFIG = WorldConfig()
NEXTQA_TYPES = {"CW", "CH", "TN", "TC", "DL", "DC", "DO"}


def scenes(n=80):
    return [sample_scene(rng=np.random.default_rng([7, i]), config=CONFIG) for i in range(n)]


def find(scene, question):
    """The object a question names, read independently of the generator's code."""
    for obj in scene.objects:
        if re.search(rf"\bthe {obj.shape}\b", question) or (
            obj.event != "change" and re.search(rf"\bthe {obj.colour} object\b", question)
        ):
            return obj
    raise AssertionError(f"no object named in {question!r}")


def expected_answer(scene, qa):
    if qa.kind == "count":
        return ["zero", "one", "two", "three", "four", "five"][len(scene.objects)]
    obj = find(scene, qa.question)
    if qa.kind == "colour":
        return obj.colour
    if qa.kind == "identity":
        return f"{obj.size} {obj.shape}"
    if qa.kind == "colour_change":
        return obj.new_colour if "at the end" in qa.question else obj.colour
    if qa.kind == "direction":
        return {"still": "not moving"}.get(obj.direction, obj.direction)
    if qa.kind == "event":
        return {"none": "stays the same", "appear": "appears", "disappear": "disappears"}.get(
            obj.event, f"turns {obj.new_colour}")
    if qa.kind == "location":
        t = 1.0 if "at the end" in qa.question else 0.0
        assert obj.visible_at(t)
        x, y = obj.centre_at(t)
        return region_of(x=x, y=y, width=scene.width, height=scene.height)
    raise AssertionError(qa.kind)


def phrase(obj):
    verb = f"turns {obj.new_colour}" if obj.event == "change" else f"{obj.event}s"
    return f"the {obj.colour} {obj.shape} {verb}"


def test_video_answers_match_ground_truth():
    kinds = set()
    for scene in scenes():
        events = [o for _, o in scene.events()]
        for qa in video_questions(scene=scene, rng=np.random.default_rng(0), config=CONFIG):
            kinds.add(qa.kind)
            if qa.kind in ("after", "before"):
                anchor = re.match(r"What happens right (after|before) (.*)\?", qa.question).group(2)
                i = [phrase(o) for o in events].index(anchor)
                assert qa.answer == phrase(events[i + 1] if qa.kind == "after" else events[i - 1])
            else:
                assert qa.answer == expected_answer(scene, qa), qa
    assert kinds == set(KIND_TO_NEXTQA)


def test_image_answers_match_ground_truth():
    for i in range(40):
        scene = sample_still_scene(rng=np.random.default_rng(i), config=CONFIG, width=128, height=64)
        for qa in image_questions(scene=scene, rng=np.random.default_rng(i), config=CONFIG):
            assert qa.answer == expected_answer(scene, qa), qa
            assert "video" not in qa.question


def test_multiple_choice_is_valid():
    for scene in scenes():
        for qa in video_questions(scene=scene, rng=np.random.default_rng(1), config=CONFIG):
            assert len(qa.options) == 5 and len(set(qa.options)) == 5
            assert qa.options[qa.answer_index] == qa.answer
            assert qa.nextqa_type in NEXTQA_TYPES


def test_answer_positions_are_spread():
    positions = [qa.answer_index for i, s in enumerate(scenes())
                 for qa in video_questions(scene=s, rng=np.random.default_rng([2, i]), config=CONFIG)]
    counts = np.bincount(positions, minlength=5)
    assert counts.min() > 0.12 * len(positions)


def test_distractors_prefer_other_objects_in_the_scene():
    for scene in scenes():
        colours = {o.colour for o in scene.objects}
        for qa in video_questions(scene=scene, rng=np.random.default_rng(3), config=CONFIG):
            if qa.kind == "colour":
                assert colours <= set(qa.options)


def test_text_is_deterministic_from_the_rng():
    scene = scenes(1)[0]
    a = video_questions(scene=scene, rng=np.random.default_rng(4), config=CONFIG)
    b = video_questions(scene=scene, rng=np.random.default_rng(4), config=CONFIG)
    assert a == b


def test_captions_mention_every_object_and_event_in_order():
    for scene in scenes():
        caption = video_caption(scene)
        for obj in scene.objects:
            assert f"{obj.size} {obj.colour} {obj.shape}" in caption
        positions = [caption.index(phrase(o)) for _, o in scene.events()]
        assert positions == sorted(positions)
        n = len(scene.objects)
        assert caption.startswith("There is one object." if n == 1 else "There are")
    still = sample_still_scene(rng=np.random.default_rng(0), config=CONFIG, width=64, height=128)
    assert all(f"{o.colour} {o.shape}" in image_caption(still) for o in still.objects)


def test_select_questions_spreads_kinds():
    scene = max(scenes(), key=lambda s: len(s.events()))
    qas = video_questions(scene=scene, rng=np.random.default_rng(5), config=CONFIG)
    chosen = select_questions(qas, rng=np.random.default_rng(6), count=6)
    assert len(chosen) == 6 and len({q.kind for q in chosen}) == 6


def test_kind_weights_bias_the_kinds_drawn():
    scene = max(scenes(), key=lambda s: len(s.events()))
    qas = video_questions(scene=scene, rng=np.random.default_rng(5), config=CONFIG)
    draw = lambda seed, weights: [q.question for q in select_questions(qas, rng=np.random.default_rng(seed), count=2,
                                                                        kind_weights=weights)]
    # Weights of 1 are the unweighted draws (datasets made without weights do not change).
    assert all(draw(seed, {"count": 1.0}) == draw(seed, None) for seed in range(20))
    first = lambda weights: sum("How many" in draw(seed, weights)[0] for seed in range(200))
    # p(count first) = 50 / (50 + other kinds) ~ 0.86 with the weight, ~ 1 / 9 without.
    assert first({"count": 50.0}) > 150 > 40 > first(None)


def test_brief_caption_is_the_caption_without_its_events():
    """with_events=False: the objects' sentences of the full caption, word for word, and no event sentence."""
    for scene in scenes():
        full, brief = video_caption(scene), video_caption(scene, with_events=False)
        assert full.startswith(brief) and len(full) > len(brief)
        rest = full[len(brief):]
        assert rest.startswith((" Later, ", " First, ", " Nothing appears"))
        assert not any(word in brief for word in ("Later", "First", "Finally", "Nothing"))
