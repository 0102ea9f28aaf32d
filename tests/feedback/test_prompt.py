"""The judge prompt carries the evidence, and the parser reads the score judges actually write."""

from __future__ import annotations

import pytest

from llava_video.feedback.prompt import MalformedReply, build_judge_messages, parse_judge_reply


def test_prompt_has_caption_question_reference_and_answer() -> None:
    messages = build_judge_messages(caption="A dog runs.", question="What runs?", reference="a dog", answer="A cat")
    assert [m["role"] for m in messages] == ["system", "user"]
    system, user = messages[0]["content"], messages[1]["content"]
    for quality in ("Relevance", "Accuracy", "Clarity", "Completeness"):
        assert quality in system
    assert "Score: <one integer from 1 to 5>" in system
    assert user.index("A dog runs.") < user.index("What runs?") < user.index("a dog") < user.index("A cat")
    without = build_judge_messages(caption="A dog runs.", question="What runs?", reference=None, answer="A cat")
    assert "Reference answer" not in without[1]["content"]


@pytest.mark.parametrize("reply, score, explanation", [
    ("Explanation: Good and complete.\nScore: 4", 4, "Good and complete."),
    ("**Explanation:** fine\n**Score:** 5", 5, "fine"),
    ("The answer is wrong.\nFinal score = 1/5", 1, "The answer is wrong."),
    ("Format: Score: <1-5>\nExplanation: partly right\nScore: 3", 3, "partly right"),
    ("score: 2.0", 2, ""),
    ('{"explanation": "ok", "score": 5}', 5, "ok"),
    ('Sure! {"score": "3", "explanation": "meh"}', 3, "meh"),
])
def test_parser_reads_common_forms(reply: str, score: int, explanation: str) -> None:
    parsed = parse_judge_reply(reply)
    assert parsed.score == score and parsed.explanation == explanation


@pytest.mark.parametrize("reply, reason", [
    ("", "empty"),
    ("I like it a lot.", "no 'Score: N' line"),
    ("Score: 7", "outside 1-5"),
    ("Score: 0", "outside 1-5"),
    ("Score: 3.5", "not an integer"),
    ('{"score": "high"}', "not an integer"),
])
def test_parser_rejects_unreadable_replies(reply: str, reason: str) -> None:
    with pytest.raises(MalformedReply, match=reason):
        parse_judge_reply(reply)
