"""The demo recipe's pieces that run in seconds: the recipe files validate, the initial model's tokenizer is
trained on the world's text, installing copies a loadable model, RoPE variants store their factor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llava_video.demo.recipe import remove_media_cache
from llava_video.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "configs" / "demo"


def test_recipe_and_stage_configs_validate():
    from llava_video.demo.recipe import load_demo_recipe
    from llava_video.train.config import load_train_config

    recipe = load_demo_recipe(CONFIG_DIR)
    assert recipe.frames == 8 and recipe.data.mc_share > 0
    for name in ("stage1.yaml", "stage2_open.yaml", "stage2.yaml", "dpo.yaml"):
        config = load_train_config(CONFIG_DIR / name)
        assert config.runtime.device == "cpu" and config.data.num_frames == recipe.frames
    # The SFT stages read the long clips whole (the recipe passes data.num_frames); the 8-frame clips stay 8.
    assert recipe.data.long_share > 0 and recipe.sft_frames == recipe.data.long_frames == 32
    assert load_train_config(CONFIG_DIR / "stage1.yaml").parts.vision_tower.train  # nothing is pretrained
    assert load_train_config(CONFIG_DIR / "dpo.yaml").objective.name == "dpo"


def test_recipe_world_is_the_one_its_data_command_makes():
    from llava_video.demo.recipe import load_demo_recipe

    recipe = load_demo_recipe(CONFIG_DIR)
    world = recipe.world()
    assert world.size == recipe.data.size and world.max_objects == recipe.data.max_objects
    assert world.background == recipe.data.background and world.shapes == recipe.data.shapes
    args = recipe.data_arguments()
    assert args[args.index("--background") + 1] == ",".join(map(str, recipe.data.background))
    assert args[args.index("--shapes") + 1] == ",".join(recipe.data.shapes)
    assert args[args.index("--mc-answer") + 1] == recipe.data.mc_answer
    assert args[args.index("--long-frames") + 1] == str(recipe.data.long_frames)
    assert args[args.index("--long-share") + 1] == str(recipe.data.long_share)
    assert args[args.index("--dpo-caption-share") + 1] == str(recipe.dpo.caption_share)
    assert args[args.index("--brief-caption-share") + 1] == str(recipe.data.brief_caption_share)
    assert args[args.index("--num-dpo-clips") + 1] == str(recipe.data.num_dpo_clips)
    from llava_video.cli.make_synthetic import build_parser

    parsed = build_parser().parse_args(["--output", "x", *args])
    assert dict(parsed.kind_weights) == recipe.data.kind_weights
    assert parsed.train_count_weights == recipe.data.train_count_weights


def test_train_count_weights_become_the_data_flag(tmp_path):
    import yaml

    from llava_video.cli.make_synthetic import build_parser
    from llava_video.demo.recipe import load_demo_recipe

    for name in ("stage1.yaml", "stage2_open.yaml", "stage2.yaml", "dpo.yaml", "model.yaml"):
        (tmp_path / name).write_text((CONFIG_DIR / name).read_text())
    raw = yaml.safe_load((CONFIG_DIR / "recipe.yaml").read_text())
    raw["data"]["train_count_weights"] = [1, 3]
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(raw))
    args = load_demo_recipe(tmp_path).data_arguments()
    assert build_parser().parse_args(["--output", "x", *args]).train_count_weights == (1.0, 3.0)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r.update(epochs=3), "unknown: epochs"),
        (lambda r: r.pop("eval"), "missing: eval"),
        (lambda r: r["data"].update(mc_shares=0.3), "unknown config key.s.: data.mc_shares"),
        (lambda r: r["dpo"].pop("temperature"), "missing config key.s.: dpo.temperature"),
        (lambda r: r["data"].update(num_train="many"), "data.num_train='many' must be an integer"),
        (lambda r: r["data"].update(mc_answer="word"), "data.mc_answer='word' is not one of 'letter', 'text'"),
        (lambda r: r["data"].update(max_objects=9), "max_objects"),  # the world validates on load
        (lambda r: r["data"].update(kind_weights=[3.0]), "data.kind_weights must be a mapping"),
        (lambda r: r["data"].update(kind_weights={"identity": "x"}), "data.kind_weights.identity='x' must be a number"),
        (lambda r: r["data"].update(kind_weights={"shape": 2.0}), "data.kind_weights: unknown question kind 'shape'"),
        (lambda r: r["data"].update(kind_weights={"identity": 0}), "weight of 'identity' must be > 0"),
        (lambda r: r["data"].update(train_count_weights=[1.0]), "data.train_count_weights: need 2 weights"),
        (lambda r: r["data"].update(train_count_weights=["x", 1]), "data.train_count_weights"),
    ],
)
def test_recipe_rejects_bad_keys_and_values(tmp_path, edit, message):
    """Each bad recipe is rejected when it loads, with the key in the message."""
    import yaml

    from llava_video.demo.recipe import load_demo_recipe

    for name in ("stage1.yaml", "stage2_open.yaml", "stage2.yaml", "dpo.yaml", "model.yaml"):
        (tmp_path / name).write_text((CONFIG_DIR / name).read_text())
    raw = yaml.safe_load((CONFIG_DIR / "recipe.yaml").read_text())
    edit(raw)
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=message):
        load_demo_recipe(tmp_path)


@pytest.fixture(scope="module")
def initial_model(tmp_path_factory):
    from llava_video.demo.initial import write_initial_model
    from llava_video.synthetic.export import ExportConfig, export_dataset

    root = tmp_path_factory.mktemp("demo")
    export_dataset(output=root / "data", config=ExportConfig(seed=0, num_train=6, num_eval=2, num_images=3, num_dpo=2,
                                                             num_dpo_eval=1, frames=8, mc_share=0.5))
    return write_initial_model(model_config=CONFIG_DIR / "model.yaml", data_dir=root / "data", output=root / "init", seed=0,
                               template="mistral")


def test_initial_model_tokenizer_is_trained_on_the_world(initial_model):
    from llava_video import LlavaVideo

    model = LlavaVideo.from_pretrained(str(initial_model), device="cpu", dtype="float32")
    tok = model.tokenizer
    assert tok.convert_tokens_to_ids("<video>") == model.config.video_token_id == 4
    assert tok.convert_tokens_to_ids("<image>") == model.config.image_token_id == 5
    # The world's words are whole tokens: answers stay short.
    for word in (" triangle", " purple", " circle", " square"):
        assert len(tok(word, add_special_tokens=False).input_ids) == 1, word
    assert len(tok) <= int(model.config.text["vocab_size"])


def test_initial_model_tokenizer_keeps_the_template_markers_whole(initial_model):
    """Each "[INST] " and " [/INST]" is one token (8 byte-level tokens without this), and text round-trips."""
    from transformers import AutoTokenizer

    from llava_video.demo.initial import template_markers

    assert template_markers("mistral") == ["[INST] ", " [/INST]"]
    tok = AutoTokenizer.from_pretrained(str(initial_model))
    text = "[INST] <video>\nWhat colour is the cross? [/INST] red</s>[INST] How many objects? [/INST] two</s>"
    tokens = tok.convert_ids_to_tokens(tok(text, add_special_tokens=False).input_ids)
    assert tokens.count("[INST] ") == 2 and tokens.count(" [/INST]") == 2
    assert len(tokens) == 20  # every word one token as well
    assert tok.decode(tok(text, add_special_tokens=False).input_ids) == text


def test_template_markers_of_other_templates():
    from llava_video.demo.initial import template_markers

    # vicuna_v1 writes "USER: {content} " and "ASSISTANT:": the lone space after a turn is not a marker.
    assert template_markers("vicuna_v1") == ["USER: ", "ASSISTANT:"]


def test_install_copies_a_loadable_model(initial_model, tmp_path):
    from llava_video import LlavaVideo
    from llava_video.demo.recipe import install_model

    target = install_model(initial_model, target=tmp_path / "assets" / "demo")
    assert sum(p.stat().st_size for p in target.iterdir()) <= 25 * 1024 * 1024
    LlavaVideo.from_pretrained(str(target), device="cpu", dtype="float32")
    with pytest.raises(Exception, match="model.safetensors"):
        install_model(tmp_path / "nothing", target=tmp_path / "other")


def test_rope_variant_stores_its_factor(initial_model, tmp_path):
    from llava_video import LlavaVideo
    from llava_video.demo.length_table import format_length_table, rope_variant

    path = rope_variant(model_dir=initial_model, output=tmp_path / "rope4", factor=4.0)
    model = LlavaVideo.from_pretrained(str(path), device="cpu", dtype="float32")
    assert model.config.rope_linear_factor == 4.0 and model.config.max_position_embeddings == 8192
    table = format_length_table({"rows": [{"frames": 8, "setting": "auto", "accuracy": 50.0},
                                          {"frames": 32, "setting": "factor 4", "accuracy": 25.0}]})
    assert "| 32 | - | 25.0 |" in table and json.dumps(table)


def test_paired_score_difference():
    from llava_video.demo.judge_eval import paired_score_difference

    before = [{"id": str(i), "score": s} for i, s in enumerate([1, 2, 3, 4])]
    after = [{"id": str(i), "score": s} for i, s in reversed(list(enumerate([2, 2, 4, 3])))]  # matched by id
    result = paired_score_difference(before, after + [{"id": "new", "score": 5}])
    assert result["count"] == 4 and result["mean_difference"] == 0.25
    assert (result["up"], result["down"]) == (2, 1)
    low, high = result["ci95"]
    assert -1.0 <= low < 0.25 < high <= 1.0
    # Every prompt up by one: no uncertainty left in the mean.
    assert paired_score_difference(before, [{"id": r["id"], "score": r["score"] + 1} for r in before])["ci95"] == [1.0, 1.0]
    with pytest.raises(ValueError, match="no prompt"):
        paired_score_difference(before, [{"id": "x", "score": 1}])


def test_tokenizer_corpus_reads_no_held_out_text(initial_model):
    """Held-out prompts must not shape the tokenizer: the recipe's weights would then depend on how many
    held-out prompts the data stage wrote (and held-out text would leak into training)."""
    from llava_video.demo.initial import demo_corpus

    data = initial_model.parent / "data"
    before = demo_corpus(data)
    held_out = data / "dpo_eval_prompts.jsonl"
    saved = held_out.read_text()
    try:
        held_out.write_text(saved + json.dumps({"question": "zebra?", "reference": "zebra", "caption": "A zebra."}) + "\n")
        assert demo_corpus(data) == before
    finally:
        held_out.write_text(saved)
    assert not any("zebra" in text for text in before)


def test_remove_media_cache_reports_and_deletes(tmp_path):
    cache = tmp_path / "media_cache"
    (cache / "ab").mkdir(parents=True)
    (cache / "ab" / "clip.safetensors").write_bytes(b"x" * 100)
    (cache / "frame_counts.json").write_text("{}")
    assert remove_media_cache(cache) == {"path": str(cache), "files": 2, "bytes": 102}
    assert not cache.exists()
    # A second call (a resumed run) finds nothing and says so.
    assert remove_media_cache(cache) == {"path": str(cache), "files": 0, "bytes": 0}


def test_train_demo_keeps_the_media_cache_only_when_asked():
    from llava_video.cli.train_demo import build_parser

    assert build_parser().parse_args(["--output", "r"]).keep_media_cache is False
    assert build_parser().parse_args(["--output", "r", "--keep-media-cache"]).keep_media_cache is True
