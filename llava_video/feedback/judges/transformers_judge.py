"""A judge that runs a local causal language model (a transformers checkpoint folder) greedily."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch

from llava_video.errors import CheckpointError, ConfigError
from llava_video.feedback.judges.base import Judge, JudgeRequest, JudgeResult
from llava_video.feedback.prompt import PROMPT_VERSION, REASK_PROMPT, ChatMessage, MalformedReply, parse_judge_reply
from llava_video.runtime import resolve_device, resolve_dtype

__all__ = ["TransformersJudge"]


class TransformersJudge(Judge):
    """Greedy decoding from the model's chat template, in left-padded batches.

    A reply without a readable score is re-asked (the bad reply plus a format reminder appended to the
    conversation) up to ``max_reasks`` times, then failed with the parser's reason. A prompt longer than the
    model's context fails with that reason instead of being truncated.
    """

    def __init__(
        self,
        *,
        model_dir: str | Path,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 4,
        max_new_tokens: int = 256,
        max_reasks: int = 1,
        chat_template: str | None = None,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if batch_size < 1 or max_new_tokens < 1 or max_reasks < 0:
            raise ConfigError(f"batch_size and max_new_tokens must be >= 1 and max_reasks >= 0, got "
                              f"{batch_size}, {max_new_tokens}, {max_reasks}")
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise CheckpointError(f"{model_dir}: not a transformers checkpoint folder (no config.json)")
        self.model_dir = model_dir.resolve()
        self._device = resolve_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        if chat_template is not None:
            self.tokenizer.chat_template = chat_template
        if not self.tokenizer.chat_template:
            raise ConfigError(f"{model_dir}: the tokenizer has no chat template; pass one (--judge-chat-template)")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"  # generation continues from the right end of every row
        self.model = AutoModelForCausalLM.from_pretrained(
            model_dir, local_files_only=True, dtype=resolve_dtype(dtype, self._device)).to(self._device).eval()
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.max_reasks = max_reasks
        self._context = getattr(self.model.config.get_text_config(), "max_position_embeddings", None)

    @property
    def identity(self) -> str:
        return (f"transformers:{self.model_dir}:greedy:max_new_tokens={self.max_new_tokens}"
                f":prompt={PROMPT_VERSION}")

    def _generate(self, conversations: list[list[ChatMessage]]) -> list[str | None]:
        """Replies in order; None for a conversation too long for the model's context."""
        prompts = [self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                   for c in conversations]
        lengths = [len(self.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
        fits = [self._context is None or n + self.max_new_tokens <= self._context for n in lengths]
        replies: list[str | None] = [None] * len(prompts)
        runnable = [i for i, ok in enumerate(fits) if ok]
        if runnable:
            batch = self.tokenizer([prompts[i] for i in runnable], return_tensors="pt", padding=True,
                                   add_special_tokens=False).to(self._device)
            with torch.no_grad():
                output = self.model.generate(**batch, do_sample=False, max_new_tokens=self.max_new_tokens,
                                             pad_token_id=self.tokenizer.pad_token_id)
            new_tokens = output[:, batch["input_ids"].shape[1]:]  # (n, new): drop the prompt
            for i, text in zip(runnable, self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
                replies[i] = text
        return replies

    def iter_score(
        self, requests: Sequence[JudgeRequest], on_complete: Callable[[JudgeResult], None] | None = None
    ) -> Iterator[JudgeResult]:
        # Work items: (request, conversation, asks so far)
        queue: deque[tuple[JudgeRequest, list[ChatMessage], int]] = deque(
            (request, request.messages(), 0) for request in requests)
        while queue:
            batch = [queue.popleft() for _ in range(min(self.batch_size, len(queue)))]
            replies = self._generate([conversation for _, conversation, _ in batch])
            for (request, conversation, asks), reply in zip(batch, replies):
                asks += 1
                if reply is None:
                    result = JudgeResult.failed(request.key, attempts=asks, reason=(
                        f"prompt plus {self.max_new_tokens} new tokens exceeds the model's context of {self._context}"))
                else:
                    try:
                        parsed = parse_judge_reply(reply)
                    except MalformedReply as exc:
                        if asks <= self.max_reasks:
                            queue.append((request, request.messages() + [
                                {"role": "assistant", "content": reply}, {"role": "user", "content": REASK_PROMPT}],
                                asks))
                            continue
                        result = JudgeResult.failed(request.key, attempts=asks,
                                                    reason=f"malformed reply: {exc} (after {asks} asks)")
                    else:
                        result = JudgeResult.scored(request.key, score=parsed.score,
                                                    explanation=parsed.explanation, attempts=asks)
                if on_complete is not None:
                    on_complete(result)
                yield result
