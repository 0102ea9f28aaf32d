"""The judge's prompt and the parser for its replies.

The judge never sees the video: a detailed caption stands in for it as evidence. It rates the candidate for
relevance, accuracy, clarity and completeness, explains, and ends with ``Score: N`` (N an integer 1-5).
``PROMPT_VERSION`` is part of every judge's identity, so editing the prompt invalidates cached scores.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

__all__ = [
    "PROMPT_VERSION",
    "SYSTEM_PROMPT",
    "REASK_PROMPT",
    "ChatMessage",
    "build_judge_messages",
    "render_messages",
    "ParsedJudgement",
    "MalformedReply",
    "parse_judge_reply",
]

PROMPT_VERSION = "v1"

ChatMessage = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}

SYSTEM_PROMPT = (
    "You evaluate answers to questions about videos. You cannot watch the video; a detailed description of it "
    "is your evidence. Judge the answer only against that evidence (and the reference answer, when one is given). "
    "Consider four qualities:\n"
    "- Relevance: does the answer address the question that was asked?\n"
    "- Accuracy: is every claim supported by the video description? Claims the description contradicts or "
    "does not support count against the answer.\n"
    "- Clarity: is the answer easy to understand and free of contradictions?\n"
    "- Completeness: does it cover everything the question asks for?\n"
    "Rate the answer on a scale of 1 (useless or wrong) to 5 (relevant, fully accurate, clear and complete).\n"
    "Reply in exactly this format:\n"
    "Explanation: <two or three sentences on the four qualities>\n"
    "Score: <one integer from 1 to 5>"
)

REASK_PROMPT = (
    "Your reply could not be read. Reply again in exactly this format, with nothing after the score:\n"
    "Explanation: <two or three sentences>\n"
    "Score: <one integer from 1 to 5>"
)


def build_judge_messages(*, caption: str, question: str, reference: str | None, answer: str) -> list[ChatMessage]:
    """System + user messages asking for a 1-5 rating of ``answer`` with ``caption`` as the only evidence."""
    parts = [f"Video description:\n{caption.strip()}", f"Question:\n{question.strip()}"]
    if reference is not None and reference.strip():
        parts.append(f"Reference answer:\n{reference.strip()}")
    parts.append(f"Answer to evaluate:\n{answer.strip()}")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n\n".join(parts)}]


def render_messages(messages: list[ChatMessage]) -> str:
    """A canonical text of a conversation: what the cache hashes."""
    return json.dumps(messages, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class ParsedJudgement:
    score: int
    explanation: str


class MalformedReply(ValueError):
    """The judge's reply holds no readable 1-5 score; the message says what was wrong."""


# "Score: 4", "**Score:** 4", "score = 4/5", "Final score - 4". The last such line wins: judges that restate the
# instructions ("Score: <1-5>") before answering would otherwise be misread.
_SCORE = re.compile(r"score\s*\**\s*[:=\-]\s*\**\s*(-?\d+(?:\.\d+)?)\s*(?:/\s*5)?", re.IGNORECASE)
_EXPLANATION = re.compile(r"explanation\s*\**\s*:\s*\**\s*(.*?)(?=\n[^\n]*score\s*\**\s*[:=\-]|\Z)",
                          re.IGNORECASE | re.DOTALL)


def _from_json(text: str) -> ParsedJudgement | None:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        obj = json.loads(text[start:end + 1])
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or "score" not in obj:
        return None
    score = obj["score"]
    if isinstance(score, str) and score.strip().lstrip("-").isdigit():
        score = int(score.strip())
    if isinstance(score, bool) or not isinstance(score, int):
        raise MalformedReply(f"JSON score is not an integer: {obj['score']!r}")
    return _checked(score, str(obj.get("explanation", "")).strip())


def _checked(score: int, explanation: str) -> ParsedJudgement:
    if not 1 <= score <= 5:
        raise MalformedReply(f"score {score} is outside 1-5")
    return ParsedJudgement(score=score, explanation=explanation)


def parse_judge_reply(text: str) -> ParsedJudgement:
    """Read the score (and explanation) from a judge's reply, or raise MalformedReply saying why not."""
    if not isinstance(text, str) or not text.strip():
        raise MalformedReply("empty reply")
    matches = list(_SCORE.finditer(text))
    if not matches:
        parsed = _from_json(text)
        if parsed is None:
            raise MalformedReply("no 'Score: N' line")
        return parsed
    raw = matches[-1].group(1)
    if "." in raw:
        value = float(raw)
        if not value.is_integer():
            raise MalformedReply(f"score {raw} is not an integer")
        raw = str(int(value))
    explanation_match = _EXPLANATION.search(text)
    if explanation_match:
        explanation = explanation_match.group(1).strip()
    else:  # no "Explanation:" label: the lines before the score's line explain it
        line_start = text.rfind("\n", 0, matches[-1].start()) + 1
        explanation = text[:line_start].strip()
    return _checked(int(raw), explanation)
