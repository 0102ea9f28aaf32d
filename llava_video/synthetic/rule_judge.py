"""A rule-based judge for the synthetic world: scores an answer 1..5 against the ground-truth caption.

It plays the part of the LLM judge of the DPO recipe (which sees a caption, the question, a reference
answer and the model's answer). The world's language is small, so answers can be reduced to their
*content words* (colours, shapes, sizes, directions, places, counts, event verbs) and compared:

- 5: every content word of the reference is in the answer and nothing else it says is wrong;
- 4 / 3: F1 of (recall of the reference's words, share of the answer's words that are not wrong)
  at least 0.8 / 0.5;
- 2: on topic but wrong (some overlap, or a word of the same kind as the reference, e.g. another colour);
- 1: empty or irrelevant.

An extra word is *wrong* when it is of a kind the reference or the question uses (another colour when
the question asks for a colour, "green" about "the red object") or when the caption does not have it. Repeating the
question's words ("the red square moves left") is not penalised; the options a multiple-choice prompt lists
below its question are not the question's words.
"""

from __future__ import annotations

import re

from llava_video.synthetic.world import PALETTE, SHAPES

__all__ = ["content_words", "word_kind", "score_answer", "judge_rule"]

_PHRASES = {
    # Multi-word phrases first, so 'top left' (a place) is not read as 'left' (a direction).
    "top left": "top_left",
    "top right": "top_right",
    "bottom left": "bottom_left",
    "bottom right": "bottom_right",
    "upper left": "top_left",
    "upper right": "top_right",
    "lower left": "bottom_left",
    "lower right": "bottom_right",
    "not moving": "still",
    "does not move": "still",
    "doesn't move": "still",
    "stays still": "still",
    "stays the same": "stays",
    "nothing happens": "stays",
    "nothing changes": "stays",
}
_SYNONYMS = {
    "center": "centre",
    "middle": "centre",
    "large": "big",
    "little": "small",
    "grey": "white",
    "violet": "purple",
    "squares": "square",
    "circles": "circle",
    "triangles": "triangle",
    "crosses": "cross",
    "plus": "cross",
    "appear": "appears",
    "appeared": "appears",
    "disappear": "disappears",
    "disappeared": "disappears",
    "vanishes": "disappears",
    "turn": "turns",
    "turned": "turns",
    "changes": "turns",
    "stationary": "still",
    "1": "one",
    "2": "two",
    "3": "three",
    "4": "four",
    "5": "five",
}
_KINDS: dict[str, str] = {}
_KINDS.update({c: "colour" for c in PALETTE})
_KINDS.update({s: "shape" for s in SHAPES})
_KINDS.update({s: "size" for s in ("big", "small")})
_KINDS.update({d: "direction" for d in ("left", "right", "up", "down", "still")})
_KINDS.update({p: "place" for p in ("top_left", "top_right", "bottom_left", "bottom_right", "centre")})
_KINDS.update({n: "count" for n in ("one", "two", "three", "four", "five")})
_KINDS.update({e: "event" for e in ("appears", "disappears", "turns", "stays")})


def word_kind(word: str) -> str | None:
    """The kind of a content word ('colour', 'shape', ...), None for other words."""
    return _KINDS.get(word)


def content_words(text: str) -> list[str]:
    """The content words of ``text`` in order, normalised (synonyms, plurals, multi-word phrases)."""
    lowered = " " + re.sub(r"[^a-z0-9' ]+", " ", text.lower()) + " "
    lowered = re.sub(r"\s+", " ", lowered)
    for phrase, token in _PHRASES.items():
        lowered = lowered.replace(f" {phrase} ", f" {token} ")
        lowered = lowered.replace(f" {phrase} ", f" {token} ")  # overlapping matches need a second pass
    words = []
    for raw in lowered.split():
        word = _SYNONYMS.get(raw, raw)
        if word in _KINDS:
            words.append(word)
    return words


def score_answer(*, caption: str, question: str, reference: str, answer: str) -> int:
    """Score ``answer`` to ``question`` from 1 (irrelevant) to 5 (exactly right); see the module doc."""
    reference_words = set(content_words(reference))
    answer_words = set(content_words(answer))
    if not answer_words:
        return 1
    if not reference_words:
        # Nothing to check against: an answer that stays within the caption's facts is acceptable.
        return 3 if answer_words <= set(content_words(caption)) | set(content_words(question)) else 2
    # Only the question's first line: a multiple-choice prompt lists its options below it, and an option is a
    # candidate answer, not something the question says (the wrong options' words are still wrong).
    question_words = set(content_words(question.split("\n", 1)[0]))
    caption_words = set(content_words(caption))
    reference_kinds = {word_kind(w) for w in reference_words}
    matched = reference_words & answer_words
    # Repeating the question's own words ("the red circle appears, then ...") is never wrong.
    extras = answer_words - matched - question_words
    # A new word of a kind the reference or the question uses contradicts them ("green" about "the red object").
    checked_kinds = reference_kinds | {word_kind(w) for w in question_words}
    wrong = {w for w in extras if word_kind(w) in checked_kinds or w not in caption_words}
    recall = len(matched) / len(reference_words)
    precision = 1.0 - len(wrong) / len(answer_words)
    if recall == 1.0 and not wrong:
        return 5
    f1 = 0.0 if recall + precision == 0 else 2 * recall * precision / (recall + precision)
    if f1 >= 0.8:
        return 4
    if f1 >= 0.5:
        return 3
    if matched or any(word_kind(w) in reference_kinds for w in answer_words):
        return 2
    return 1


def judge_rule(caption: str, question: str, reference: str | None, answer: str) -> int:
    """:func:`score_answer` in the judge's rule signature, for ``tools/judge.py --backend rule
    --rule llava_video.synthetic.rule_judge:judge_rule``."""
    return score_answer(caption=caption, question=question, reference=reference or "", answer=answer)
