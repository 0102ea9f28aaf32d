"""Judge backends behind one interface (:class:`Judge`)."""

from llava_video.feedback.judges.base import Judge, JudgeRequest, JudgeResult
from llava_video.feedback.judges.openai_compat import OpenAICompatibleJudge
from llava_video.feedback.judges.rule_based import RuleBasedJudge, reference_overlap_rule

__all__ = ["Judge", "JudgeRequest", "JudgeResult", "OpenAICompatibleJudge", "RuleBasedJudge",
           "reference_overlap_rule", "TransformersJudge"]


def __getattr__(name: str):
    # transformers is heavy to import; only the local-model judge needs it.
    if name == "TransformersJudge":
        from llava_video.feedback.judges.transformers_judge import TransformersJudge

        return TransformersJudge
    raise AttributeError(name)
