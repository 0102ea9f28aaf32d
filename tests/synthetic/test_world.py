import numpy as np
import pytest

from llava_video.errors import ConfigError
from llava_video.synthetic.world import (
    PALETTE,
    Scene,
    WorldConfig,
    frame_times,
    region_of,
    render_clip,
    render_frame,
    sample_scene,
    shape_mask,
)

CONFIG = WorldConfig()


def scenes(n=60, seed=0):
    return [sample_scene(rng=np.random.default_rng([seed, i]), config=CONFIG) for i in range(n)]


def test_same_seed_same_scene_and_frames():
    a = sample_scene(rng=np.random.default_rng(5), config=CONFIG)
    b = sample_scene(rng=np.random.default_rng(5), config=CONFIG)
    assert a == b
    assert np.array_equal(render_clip(a, num_frames=8), render_clip(b, num_frames=8))
    assert a != sample_scene(rng=np.random.default_rng(6), config=CONFIG)


def test_scene_round_trips_through_dict():
    for scene in scenes(10):
        assert Scene.from_dict(scene.to_dict()) == scene


def test_rendered_colour_at_stated_position():
    for scene in scenes():
        for t in frame_times(16):
            frame = render_frame(scene, float(t))
            for obj in scene.objects:
                x0, y0 = obj.box_at(t)
                centre = frame[y0 + obj.side // 2, x0 + obj.side // 2]
                if obj.visible_at(t):
                    assert tuple(centre) == PALETTE[obj.colour_at(t)]
                else:
                    # Nothing of this object is drawn (another visible object may pass over the spot).
                    alone = render_frame(Scene(scene.width, scene.height, (obj,), scene.background), float(t))
                    assert (alone == np.array(scene.background, np.uint8)).all()


def test_direction_matches_positions_and_objects_stay_inside():
    seen = set()
    for scene in scenes():
        for obj in scene.objects:
            dx, dy = obj.end[0] - obj.start[0], obj.end[1] - obj.start[1]
            expected = {"left": (dx < 0 and dy == 0), "right": (dx > 0 and dy == 0), "up": (dy < 0 and dx == 0),
                        "down": (dy > 0 and dx == 0), "still": (dx == 0 and dy == 0)}
            assert expected[obj.direction], obj
            seen.add(obj.direction)
            for t in (0.0, 1.0):
                x0, y0 = obj.box_at(t)
                assert 0 <= x0 and x0 + obj.side <= scene.width and 0 <= y0 and y0 + obj.side <= scene.height
    assert seen == {"left", "right", "up", "down", "still"}


def test_scene_constraints_hold():
    for scene in scenes():
        shapes = [o.shape for o in scene.objects]
        colours = [c for o in scene.objects for c in (o.colour, o.new_colour) if c]
        assert len(set(shapes)) == len(shapes) and len(set(colours)) == len(colours)
        times = [t for t, _ in scene.events()]
        assert all(0.2 <= t <= 0.8 for t in times)
        # Events are more than one frame step apart at 8 frames, so their order is visible.
        assert all(b - a > 1 / 7 for a, b in zip(times, times[1:]))


def test_objects_never_overlap():
    for scene in scenes():
        for t in frame_times(32):
            drawn = np.zeros((scene.height, scene.width), dtype=int)
            for obj in scene.objects:
                if obj.visible_at(t):
                    x0, y0 = obj.box_at(t)
                    drawn[y0 : y0 + obj.side, x0 : x0 + obj.side] += 1
            assert drawn.max() <= 1


def test_same_motion_at_any_frame_count():
    scene = scenes(1, seed=3)[0]
    clips = {t: render_clip(scene, num_frames=t) for t in (8, 16, 32)}
    for t, clip in clips.items():
        assert clip.shape == (t, CONFIG.size, CONFIG.size, 3) and clip.dtype == np.uint8
        assert np.array_equal(clip[0], clips[8][0]) and np.array_equal(clip[-1], clips[8][-1])
    assert np.array_equal(clips[8][0], render_frame(scene, 0.0))


def test_shapes_have_distinct_silhouettes():
    masks = {s: shape_mask(s, 12) for s in CONFIG.shapes}
    for a in masks:
        for b in masks:
            if a != b:
                assert (masks[a] != masks[b]).sum() >= 12, (a, b)


def test_regions():
    assert region_of(x=32, y=32, width=64, height=64) == "centre"
    assert region_of(x=10, y=10, width=64, height=64) == "top left"
    assert region_of(x=50, y=55, width=64, height=64) == "bottom right"
    assert region_of(x=40, y=32, width=64, height=64) is None  # between centre and the right quadrants


@pytest.mark.parametrize("kwargs", [{"size": 8}, {"max_objects": 9}, {"min_objects": 0}, {"colours": ("red",)},
                                    {"held_out_combos": (("pink", "square"),)}, {"event_probability": 2.0},
                                    {"max_objects": 2, "count_weights": (1.0,)}, {"max_objects": 2, "count_weights": (0.0, 0.0)},
                                    {"max_objects": 2, "count_weights": (1.0, -1.0)}])
def test_bad_config_is_rejected(kwargs):
    with pytest.raises(ConfigError):
        WorldConfig(**kwargs)


def test_held_out_combos_are_respected():
    config = WorldConfig(held_out_combos=(("red", "circle"), ("blue", "square")))
    held = set(config.held_out_combos)
    for i in range(30):
        train = sample_scene(rng=np.random.default_rng(i), config=config, combo_rule="exclude")
        test = sample_scene(rng=np.random.default_rng(i), config=config, combo_rule="require")
        pairs = lambda s: {(c, o.shape) for o in s.objects for c in (o.colour, o.new_colour) if c}  # noqa: E731
        assert not pairs(train) & held
        assert pairs(test) & held


def test_count_weights_set_how_often_each_object_count_is_drawn():
    counts = lambda config: [len(sample_scene(rng=np.random.default_rng(i), config=config).objects)  # noqa: E731
                             for i in range(300)]
    assert set(counts(WorldConfig(max_objects=2, count_weights=(0.0, 1.0)))) == {2}
    skewed = counts(WorldConfig(max_objects=2, count_weights=(1.0, 3.0)))
    assert 0.68 < skewed.count(2) / 300 < 0.82  # 0.75 expected; 300 draws: sd 0.025
    even = counts(WorldConfig(max_objects=2))
    assert 0.4 < even.count(2) / 300 < 0.6
