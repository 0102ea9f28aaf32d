import pytest

from llava_video.synthetic.rule_judge import content_words, score_answer

CAPTION = (
    "There are three objects. A small purple cross at the top left does not move. A small blue triangle at the "
    "bottom right moves up. A big red circle moves up. First, the red circle appears. Then, the purple cross "
    "turns green. Finally, the blue triangle turns yellow."
)
AFTER = "What happens right after the red circle appears?"


@pytest.mark.parametrize(
    "question, reference, answer, score",
    [
        ("Which way does the triangle move?", "up", "up", 5),
        ("Which way does the triangle move?", "up", "The triangle moves up.", 5),
        ("Which way does the triangle move?", "up", "up or down", 3),
        ("Which way does the triangle move?", "up", "down", 2),
        ("Which way does the triangle move?", "up", "banana", 1),
        ("Which way does the triangle move?", "up", "", 1),
        ("Which way does the cross move?", "not moving", "It does not move.", 5),
        ("Where is the cross at the start?", "top left", "at the upper left", 5),
        ("Where is the cross at the start?", "top left", "left", 1),
        ("What is the red object?", "big circle", "a big red circle", 5),
        ("What is the red object?", "big circle", "small circle", 3),
        ("What is the red object?", "big circle", "big green square", 2),
        ("How many objects are there in the video?", "three", "3", 5),
        ("How many objects are there in the video?", "three", "two", 2),
        (AFTER, "the purple cross turns green", "the purple cross turns green", 5),
        (AFTER, "the purple cross turns green", "The purple cross turns green after the red circle appears.", 5),
        (AFTER, "the purple cross turns green", "the purple cross turns yellow", 3),
        (AFTER, "the purple cross turns green", "the blue triangle turns yellow", 2),
        ("Describe the video in detail.", CAPTION, CAPTION, 5),
        ("Describe the video in detail.", CAPTION, "There are three objects. A small purple cross at the top left does not move.", 3),
        ("Describe the video in detail.", CAPTION, "There are two objects. A big green square.", 2),
    ],
)
def test_scores(question, reference, answer, score):
    assert score_answer(caption=CAPTION, question=question, reference=reference, answer=answer) == score


def test_multiple_choice_options_are_not_the_questions_words():
    """The options listed under a multiple-choice question are candidates, not facts the question states:
    answering with a wrong option is scored as the wrong answer it is."""
    options = ["the purple cross turns green", "the blue triangle turns yellow", "the red circle disappears",
               "the purple cross appears", "the blue triangle moves up"]
    question = AFTER + "\n" + "\n".join(f"{l}. {o}" for l, o in zip("ABCDE", options)) + "\nAnswer with the option."
    right, wrong = options[0], options[1]
    assert score_answer(caption=CAPTION, question=question, reference=right, answer=right) == 5
    assert score_answer(caption=CAPTION, question=question, reference=right, answer=wrong) == \
        score_answer(caption=CAPTION, question=AFTER, reference=right, answer=wrong) == 2


def test_content_words_normalise():
    assert content_words("Two large Squares in the center, not moving; it appeared") == [
        "two", "big", "square", "centre", "still", "appears"]
    assert content_words("top left, then left") == ["top_left", "left"]


def test_scores_are_ordered_for_a_partly_right_description():
    full = score_answer(caption=CAPTION, question="Describe the video.", reference=CAPTION, answer=CAPTION)
    half = score_answer(caption=CAPTION, question="Describe the video.", reference=CAPTION,
                        answer="A small purple cross does not move. A big red circle moves up.")
    wrong = score_answer(caption=CAPTION, question="Describe the video.", reference=CAPTION,
                         answer="A big white square moves down.")
    assert full > half > wrong >= 1


def test_the_judge_prefers_the_full_description_to_the_brief_one():
    """What the demo's DPO stage can learn from the judge: the caption without its events is right as far as
    it goes but misses the events' words, so it scores 3 or 4 against the full caption's 5."""
    import numpy as np

    from llava_video.synthetic.language import video_caption
    from llava_video.synthetic.world import WorldConfig, sample_scene

    seen = 0
    for i in range(60):
        scene = sample_scene(rng=np.random.default_rng([11, i]), config=WorldConfig())
        if not scene.events():
            continue
        caption = video_caption(scene)

        def score(answer):
            return score_answer(caption=caption, question="Describe the video in detail.", reference=caption, answer=answer)

        assert score(caption) == 5
        assert 3 <= score(video_caption(scene, with_events=False)) <= 4
        seen += 1
    assert seen >= 20
