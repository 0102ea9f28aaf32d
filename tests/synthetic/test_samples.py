import numpy as np
import pytest

from llava_video.errors import ConfigError
from llava_video.synthetic.samples import SyntheticDataset, make_image_sample, make_video_sample, world_for_holdout
from llava_video.synthetic.world import WorldConfig


def test_dataset_mixes_media_and_is_deterministic():
    data = SyntheticDataset(seed=1, length=40, num_frames=8, video_share=0.75)
    items = [data[i] for i in range(20)]
    assert {item["medium"] for item in items} == {"video", "image"}
    assert sum(item["medium"] == "video" for item in items) == 15
    again = SyntheticDataset(seed=1, length=40, num_frames=8, video_share=0.75)
    for i in (0, 3, 17):
        assert np.array_equal(items[i]["frames"], again[i]["frames"])
        assert items[i]["conversations"] == again[i]["conversations"]
    assert len({item["id"] for item in items}) == 20
    video, image = items[0], next(item for item in items if item["medium"] == "image")
    assert video["frames"].shape == (8, 64, 64, 3) and image["frames"].ndim == 3
    assert video["conversations"][0]["value"].startswith("<video>\n")
    assert image["conversations"][0]["value"].startswith("<image>\n")
    with pytest.raises(IndexError):
        data[40]


def test_caption_task_and_frame_count_independence():
    data = SyntheticDataset(seed=2, length=4, num_frames=32, task="caption", video_share=1.0)
    item = data[0]
    assert item["frames"].shape[0] == 32 and item["conversations"][1]["value"] == item["caption"]
    a = make_video_sample(seed=2, split="train", index=0, num_frames=8, config=WorldConfig())
    b = make_video_sample(seed=2, split="train", index=0, num_frames=32, config=WorldConfig())
    assert (a.scene, a.qas, a.caption) == (b.scene, b.qas, b.caption)


def test_splits_are_disjoint_streams():
    train = [make_video_sample(seed=0, split="train", index=i, num_frames=2, config=WorldConfig()).scene for i in range(30)]
    held = [make_video_sample(seed=0, split="eval", index=i, num_frames=2, config=WorldConfig()).scene for i in range(30)]
    assert not set(train) & set(held)


def test_stills_have_varied_aspect_ratios():
    shapes = {make_image_sample(seed=0, split="train", index=i, config=WorldConfig()).frames.shape[:2] for i in range(40)}
    assert len(shapes) >= 4


def test_holdout_modes():
    assert world_for_holdout(WorldConfig(), "combos").held_out_combos
    assert world_for_holdout(WorldConfig(held_out_combos=(("red", "square"),)), "seeds").held_out_combos == ()
    with pytest.raises(ConfigError):
        world_for_holdout(WorldConfig(), "nope")


def test_multiple_choice_turns_match_the_evaluation_prompt():
    """mc_share=1: every question turn is the prompt tools/eval_nextqa.py builds, answered by the right letter;
    mc_share=0 (the default) leaves conversations as they were."""
    import numpy as np

    from llava_video.evaluation.nextqa import NextQAQuestion, build_prompt
    from llava_video.synthetic.samples import make_video_sample, qa_conversation
    from llava_video.synthetic.world import WorldConfig

    sample = make_video_sample(seed=3, split="train", index=1, num_frames=8, config=WorldConfig())
    turns = qa_conversation(sample, rng=np.random.default_rng(0), turns=3, mc_share=1.0)
    by_question = {qa.question: qa for qa in sample.qas}
    assert len(turns) == 6
    for human, gpt in zip(turns[::2], turns[1::2]):
        text = human["value"].removeprefix("<video>\n")
        qa = by_question[text.split("\n")[0]]
        question = NextQAQuestion(video="v", qid="0", question=qa.question, qtype=qa.nextqa_type,
                                  answer=str(qa.answer_index), options=tuple(qa.options))
        assert text == build_prompt(question, task="mc")
        assert gpt["value"] == "ABCDE"[qa.answer_index]
    plain = qa_conversation(sample, rng=np.random.default_rng(0), turns=3)
    assert plain == qa_conversation(sample, rng=np.random.default_rng(0), turns=3, mc_share=0.0)
    assert all("Answer with the option's letter" not in t["value"] for t in plain)


def test_multiple_choice_turns_answered_by_option_text_parse_to_the_right_option():
    """mc_answer="text": the reply is the right option's text, which the evaluation's parser maps back to
    the right option (and the letters run unchanged in the prompt)."""
    import numpy as np

    from llava_video.evaluation.nextqa import parse_mc_answer
    from llava_video.synthetic.samples import make_video_sample, qa_conversation
    from llava_video.synthetic.world import WorldConfig

    sample = make_video_sample(seed=3, split="train", index=1, num_frames=8, config=WorldConfig())
    by_question = {qa.question: qa for qa in sample.qas}
    lettered = qa_conversation(sample, rng=np.random.default_rng(0), turns=3, mc_share=1.0)
    texted = qa_conversation(sample, rng=np.random.default_rng(0), turns=3, mc_share=1.0, mc_answer="text")
    assert [t["value"] for t in texted[::2]] == [t["value"] for t in lettered[::2]]  # same prompts
    for human, gpt in zip(texted[::2], texted[1::2]):
        qa = by_question[human["value"].removeprefix("<video>\n").split("\n")[0]]
        assert gpt["value"] == qa.options[qa.answer_index] == qa.answer
        assert parse_mc_answer(gpt["value"], qa.options) == qa.answer_index


def test_brief_caption_turns_keep_the_other_draws():
    """brief_caption_share=1: every video caption turn is the caption without its events, and the question
    turns are the ones drawn without it (the extra draw comes last); 0 (the default) changes nothing."""
    import numpy as np

    from llava_video.synthetic.language import video_caption
    from llava_video.synthetic.samples import make_video_sample, qa_conversation
    from llava_video.synthetic.world import WorldConfig

    sample = make_video_sample(seed=3, split="train", index=1, num_frames=8, config=WorldConfig())

    def turns(**kw):
        return qa_conversation(sample, rng=np.random.default_rng(5), turns=3, caption_share=1.0, mc_share=0.3, **kw)

    plain, brief = turns(), turns(brief_caption_share=1.0)
    assert plain == turns(brief_caption_share=0.0)
    assert plain[1]["value"] == sample.caption
    assert brief[1]["value"] == video_caption(sample.scene, with_events=False) != sample.caption
    assert brief[0] == plain[0] and brief[2:] == plain[2:]
