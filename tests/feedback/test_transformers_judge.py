"""The local-model judge's plumbing, with a tiny random Llama and a tokenizer trained offline.

Its verdicts are garbage by construction; the test checks that every candidate still gets exactly one result,
that failures carry a reason, and that the runner and cache work with this backend.
"""

from __future__ import annotations

import json

import pytest
import torch

from llava_video.errors import ConfigError
from llava_video.feedback.judge import judge_candidates
from llava_video.feedback.judges import JudgeRequest

CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<assistant> {% endif %}")


@pytest.fixture(scope="module")
def tiny_judge_dir(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from llava_video.feedback.prompt import REASK_PROMPT, SYSTEM_PROMPT

    folder = tmp_path_factory.mktemp("tiny_judge")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    corpus = [SYSTEM_PROMPT, REASK_PROMPT, "Score: 1 2 3 4 5 Explanation: the answer", "video ball dog runs"]
    tok.train_from_iterator(corpus * 3, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<pad>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    from tokenizers import decoders

    tok.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="</s>")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def test_every_candidate_gets_a_result(tiny_judge_dir, tmp_path) -> None:
    from llava_video.feedback.judges.transformers_judge import TransformersJudge

    judge = TransformersJudge(model_dir=tiny_judge_dir, device="cpu", dtype="float32", batch_size=3,
                              max_new_tokens=6, max_reasks=1, chat_template=CHAT_TEMPLATE)
    assert str(tiny_judge_dir.resolve()) in judge.identity
    requests = [JudgeRequest(key=f"k{i}", caption="a dog runs", question="what runs?", answer=f"a dog {i}")
                for i in range(4)]
    results = judge.score(requests)
    assert [r.key for r in results] == [r.key for r in requests]
    for result in results:
        assert result.status in ("scored", "failed")
        if result.status == "failed":
            assert result.reason and "malformed reply" in result.reason and result.attempts == 2

    # Through the runner: one line per candidate; a rerun judges nothing.
    candidates = tmp_path / "c.jsonl"
    candidates.write_text("".join(json.dumps({"id": "i", "video": "v.mp4", "question": "what runs?",
                                              "caption": "a dog runs", "candidate_index": i,
                                              "answer": f"a dog {i}"}) + "\n" for i in range(3)))
    output = tmp_path / "j.jsonl"
    report = judge_candidates(candidates_path=candidates, output_path=output, judge=judge, progress=False,
                              cache_path=tmp_path / "cache.jsonl")
    assert report.scored + report.failed == 3 and len(output.read_text().splitlines()) == 3
    again = judge_candidates(candidates_path=candidates, output_path=output, judge=judge, progress=False,
                             cache_path=tmp_path / "cache.jsonl")
    assert again.sent == 0 and again.already_done == 3


def test_prompt_longer_than_context_fails_with_reason(tiny_judge_dir) -> None:
    from llava_video.feedback.judges.transformers_judge import TransformersJudge

    judge = TransformersJudge(model_dir=tiny_judge_dir, device="cpu", dtype="float32", max_new_tokens=4,
                              chat_template=CHAT_TEMPLATE)
    [result] = judge.score([JudgeRequest(key="k", caption="dog " * 2000, question="q", answer="a")])
    assert result.status == "failed" and "context of 1024" in result.reason


def test_missing_chat_template_is_a_config_error(tiny_judge_dir) -> None:
    from llava_video.feedback.judges.transformers_judge import TransformersJudge

    with pytest.raises(ConfigError, match="chat template"):
        TransformersJudge(model_dir=tiny_judge_dir, device="cpu", dtype="float32")
