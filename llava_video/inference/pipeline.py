"""Asking a model about videos and images: the one path the CLI, the chat API, NExT-QA evaluation and
DPO candidate sampling all share.

file -> frames (data.video) -> pixels (data.preprocess) -> visual features (model) -> prompt ids
(data.conversation, budget planned) -> prefill + decode with a KV cache (model.generate) -> text.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from llava_video.data.conversation import IMAGE_MARKER, VIDEO_MARKER, Message, encode_conversation, template_for
from llava_video.errors import InputError
from llava_video.inference.budget import DEFAULT_MAX_ROPE_FACTOR, TokenBudget, plan_budget

__all__ = [
    "DEFAULT_PROMPT",
    "GenerationSettings",
    "VisualInput",
    "PreparedRequest",
    "ChatResult",
    "load_visual",
    "build_messages",
    "prepare_request",
    "auto_frame_count",
    "generate_batch",
    "score_answers",
    "ChatSession",
    "ask",
    "image_processor_for",
    "stop_token_ids",
]

DEFAULT_PROMPT = "Please describe this video in detail."


@dataclass
class GenerationSettings:
    """Decoding settings; ``temperature == 0`` means greedy."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise InputError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise InputError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise InputError(f"top_k must be >= 0, got {self.top_k}")


@dataclass
class VisualInput:
    """One video's (or a set of images') tensors and features, computed once and reused across turns."""

    source: str | None = None
    frame_indices: list[int] = field(default_factory=list)
    timestamps: list[float] = field(default_factory=list)
    pixel_values_videos: torch.Tensor | None = None  # (f, 3, S, S)
    image_tiles: list[torch.Tensor] = field(default_factory=list)  # each (tiles, 3, S, S)
    image_sizes: list[tuple[int, int]] = field(default_factory=list)
    video_features: torch.Tensor | None = None  # (tokens, D), filled by encode()
    image_features: list[torch.Tensor] | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return 0 if self.pixel_values_videos is None else int(self.pixel_values_videos.shape[0])

    def encode(self, model: Any) -> None:
        """Run the vision tower (once): later turns reuse the features."""
        t0 = time.perf_counter()
        with torch.no_grad():
            if self.pixel_values_videos is not None and self.video_features is None:
                self.video_features = model.encode_videos([self.pixel_values_videos])[0]
            if self.image_tiles and self.image_features is None:
                self.image_features = model.encode_images(self.image_tiles, self.image_sizes)
        self.seconds["vision_encode"] = self.seconds.get("vision_encode", 0.0) + time.perf_counter() - t0


@dataclass
class PreparedRequest:
    visual: VisualInput
    messages: list[Message]
    input_ids: list[int]
    budget: TokenBudget
    prompt_text: str


@dataclass
class ChatResult:
    answer: str
    prompt: str
    source: str | None
    frame_indices: list[int]
    timestamps: list[float]
    num_visual_tokens: int
    context_length: int
    rope_scaling_factor: float
    num_new_tokens: int
    seconds: dict[str, float]
    tokens_per_second: float
    token_ids: list[int] = field(default_factory=list, repr=False)

    def as_json(self, model_name: str) -> dict[str, Any]:
        return {
            "model": model_name,
            "video": self.source,
            "frame_indices": self.frame_indices,
            "timestamps": [round(t, 4) for t in self.timestamps],
            "num_visual_tokens": self.num_visual_tokens,
            "context_length": self.context_length,
            "rope_scaling_factor": self.rope_scaling_factor,
            "prompt": self.prompt,
            "answer": self.answer,
            "num_new_tokens": self.num_new_tokens,
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
            "tokens_per_second": round(self.tokens_per_second, 2),
        }


def image_processor_for(model: Any) -> Any:
    """The checkpoint's preprocessing settings, or CLIP defaults at the tower's resolution."""
    from llava_video.data.preprocess import ImageProcessorConfig

    proc = getattr(model, "image_processor", None)
    if isinstance(proc, ImageProcessorConfig):
        return proc
    if isinstance(proc, dict):
        return ImageProcessorConfig.from_hf_dict(proc)
    size = model.config.image_size
    return ImageProcessorConfig(crop_size=size, shortest_edge=size, grid_pinpoints=model.config.anyres.grid_pinpoints)


def load_visual(
    model: Any,
    *,
    video: str | Path | Any | None = None,
    images: Sequence[str | Path | Any] = (),
    num_frames: int | None = 32,
    fps: float | None = None,
    max_frames: int | None = None,
    into: VisualInput | None = None,
) -> VisualInput:
    """Decode and preprocess a video (path or VideoClip) and images (paths, PIL images or arrays),
    adding them to ``into`` when given."""
    from llava_video.data.preprocess import preprocess_anyres_image, preprocess_frames
    from llava_video.data.video import VideoClip, load_video

    proc = image_processor_for(model)
    visual = into if into is not None else VisualInput()
    if video is not None:
        t0 = time.perf_counter()
        if isinstance(video, VideoClip):
            clip = video
        else:
            clip = load_video(video, num_frames=num_frames if fps is None else None, fps=fps, max_frames=max_frames)
        t1 = time.perf_counter()
        visual.source = clip.path
        visual.frame_indices, visual.timestamps = list(clip.indices), list(clip.timestamps)
        visual.pixel_values_videos = preprocess_frames(clip.frames, proc)  # (f, 3, S, S)
        visual.seconds.update(decode=t1 - t0, preprocess=time.perf_counter() - t1)
    t0 = time.perf_counter()
    for image in images:
        if isinstance(image, (str, Path)):
            from PIL import Image

            try:
                with Image.open(image) as im:
                    image = im.convert("RGB")
            except (OSError, ValueError) as exc:
                raise InputError(f"{image}: cannot read image ({exc})") from None
        tiles, size = preprocess_anyres_image(image, proc)
        visual.image_tiles.append(tiles)
        visual.image_sizes.append(tuple(size))
    if images:
        visual.seconds["preprocess"] = visual.seconds.get("preprocess", 0.0) + time.perf_counter() - t0
    return visual


def build_messages(prompt: str, history: Sequence[Any] = (), *, num_images: int = 0, has_video: bool = True) -> list[Message]:
    """The conversation so far plus the new question; visual markers go in front of the first question."""
    messages: list[Message] = []
    for turn in history:
        if isinstance(turn, dict):
            messages.append({"role": turn["role"], "content": turn["content"]})
        else:
            user, assistant = turn
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    messages.append({"role": "user", "content": prompt})
    text = "".join(m["content"] for m in messages)
    markers = ""
    if num_images and IMAGE_MARKER not in text:
        markers += (IMAGE_MARKER + "\n") * num_images
    if has_video and VIDEO_MARKER not in text:
        markers += VIDEO_MARKER + "\n"
    first_user = next(i for i, m in enumerate(messages) if m["role"] == "user")
    messages[first_user] = {"role": "user", "content": markers + messages[first_user]["content"]}
    return messages


def prepare_request(
    model: Any,
    visual: VisualInput,
    messages: Sequence[Message],
    *,
    max_new_tokens: int,
    conv_template: str | None = None,
    max_rope_factor: float = DEFAULT_MAX_ROPE_FACTOR,
) -> PreparedRequest:
    """Token ids for the conversation with placeholders expanded, and its budget checked."""
    if model.tokenizer is None:
        raise InputError("the model has no tokenizer attached (checkpoint without tokenizer files)")
    template = template_for(model.config, model.tokenizer, conv_template)
    video_frames = [visual.num_frames] if visual.pixel_values_videos is not None else []
    enc = encode_conversation(
        messages,
        tokenizer=model.tokenizer,
        template=template,
        config=model.config,
        video_frames=video_frames,
        image_sizes=visual.image_sizes,
        add_generation_prompt=True,
    )
    text_tokens = len(enc.input_ids) - enc.num_video_tokens - enc.num_image_tokens
    budget = plan_budget(
        model.config,
        num_frames=visual.num_frames,
        text_tokens=text_tokens,
        max_new_tokens=max_new_tokens,
        image_sizes=visual.image_sizes,
        max_rope_factor=max_rope_factor,
    )
    # Report the question as the user wrote it, without the visual markers placed in front of it.
    prompt_text = messages[-1]["content"]
    while prompt_text.startswith((IMAGE_MARKER + "\n", VIDEO_MARKER + "\n")):
        prompt_text = prompt_text.split("\n", 1)[1]
    return PreparedRequest(visual=visual, messages=list(messages), input_ids=enc.input_ids, budget=budget, prompt_text=prompt_text)


def auto_frame_count(
    model: Any,
    visual: VisualInput,
    messages: Sequence[Message],
    *,
    max_new_tokens: int,
    conv_template: str | None = None,
    cap: int = 64,
) -> int:
    """``--frames auto``: the most frames whose tokens fit the checkpoint's own context (its stored RoPE
    factor, no extra scaling) beside this prompt, the images already in ``visual`` and the answer."""
    from llava_video.errors import BudgetError
    from llava_video.inference.budget import max_frames_that_fit

    template = template_for(model.config, model.tokenizer, conv_template)
    enc = encode_conversation(
        messages, tokenizer=model.tokenizer, template=template, config=model.config, video_frames=[0],
        image_sizes=visual.image_sizes, add_generation_prompt=True,
    )
    text_tokens = len(enc.input_ids) - enc.num_video_tokens - enc.num_image_tokens
    frames = max_frames_that_fit(
        model.config, text_tokens=text_tokens, max_new_tokens=max_new_tokens, image_tokens=enc.num_image_tokens, cap=cap
    )
    if frames < 1:
        raise BudgetError(
            f"no frame fits: the prompt ({text_tokens} tokens), images ({enc.num_image_tokens}) and answer "
            f"({max_new_tokens}) leave no room in the model's "
            f"{int(model.config.max_position_embeddings * model.config.rope_linear_factor)}-token context"
        )
    return frames


def stop_token_ids(model: Any, conv_template: str | None = None) -> list[int]:
    """EOS plus every stop string of the template that is a single token."""
    tok = model.tokenizer
    ids = {tok.eos_token_id} if tok.eos_token_id is not None else set()
    template = template_for(model.config, tok, conv_template)
    for s in template.stop_strings:
        enc = tok(s, add_special_tokens=False).input_ids
        if len(enc) == 1:
            ids.add(enc[0])
    return sorted(ids)


@dataclass
class _Decoded:
    tokens: list[list[int]]  # per row, answer tokens without the stop token
    raw: torch.Tensor  # (b, n) every generated id, stop tokens and padding included
    stopped: list[bool]
    cache: Any
    prefill: float
    generate: float


def _decode(
    model: Any,
    embeds: torch.Tensor,
    mask: torch.Tensor,
    settings: GenerationSettings,
    *,
    stops: Sequence[int],
    pad_id: int,
    on_text: Callable[[int, str], None] | None,
    past_key_values: Any = None,
) -> _Decoded:
    """Prefill + decode, streaming each row's text as it grows; timings split at the first token."""
    tok = model.tokenizer
    b = embeds.shape[0]
    texts = [""] * b
    tokens: list[list[int]] = [[] for _ in range(b)]
    stopped = [False] * b
    first_token_at: list[float] = []
    generator = None
    if settings.seed is not None:
        generator = torch.Generator(device=model.device).manual_seed(settings.seed)

    def on_token(step: torch.Tensor) -> None:
        if not first_token_at:
            first_token_at.append(time.perf_counter())
        for i, t in enumerate(step.tolist()):
            if stopped[i]:
                continue
            if t in stops:
                stopped[i] = True
                continue
            tokens[i].append(t)
            if on_text is not None:
                new = tok.decode(tokens[i], skip_special_tokens=True)
                # Hold back a partial UTF-8 character until its last byte arrives.
                if len(new) > len(texts[i]) and not new.endswith("\ufffd"):
                    on_text(i, new[len(texts[i]) :])
                    texts[i] = new

    t0 = time.perf_counter()
    with torch.no_grad():
        raw, cache = model.generate(
            None,
            mask.to(model.device),
            inputs_embeds=embeds,
            max_new_tokens=settings.max_new_tokens,
            do_sample=settings.temperature > 0,
            temperature=settings.temperature or 1.0,
            top_p=settings.top_p,
            top_k=settings.top_k,
            eos_token_id=list(stops),
            pad_token_id=pad_id,
            generator=generator,
            on_token=on_token,
            past_key_values=past_key_values,
            return_cache=True,
        )
    t_end = time.perf_counter()
    t_first = first_token_at[0] if first_token_at else t_end
    return _Decoded(tokens, raw.cpu(), stopped, cache, t_first - t0, t_end - t_first)


def _result(model: Any, request: PreparedRequest, decoded: _Decoded, row: int) -> ChatResult:
    tokens = decoded.tokens[row]
    n_new = len(tokens) + (1 if decoded.stopped[row] else 0)
    visual = request.visual
    seconds = {
        "decode": visual.seconds.get("decode", 0.0),
        "preprocess": visual.seconds.get("preprocess", 0.0),
        "vision_encode": visual.seconds.get("vision_encode", 0.0),
        "prefill": decoded.prefill,
        "generate": decoded.generate,
    }
    return ChatResult(
        answer=model.tokenizer.decode(tokens, skip_special_tokens=True).strip(),
        prompt=request.prompt_text,
        source=visual.source,
        frame_indices=visual.frame_indices,
        timestamps=visual.timestamps,
        num_visual_tokens=request.budget.video_tokens + request.budget.image_tokens,
        context_length=model.context_length,
        rope_scaling_factor=model.rope_factor,
        num_new_tokens=n_new,
        seconds=seconds,
        tokens_per_second=(n_new - 1) / decoded.generate if n_new > 1 and decoded.generate > 0 else 0.0,
        token_ids=list(tokens),
    )


def _pad_id(model: Any) -> int:
    tok = model.tokenizer
    return tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)


def generate_batch(
    model: Any,
    requests: Sequence[PreparedRequest],
    settings: GenerationSettings,
    *,
    conv_template: str | None = None,
    on_text: Callable[[int, str], None] | None = None,
) -> list[ChatResult]:
    """Answer several prepared requests in one left-padded batch, streaming text deltas per row."""
    if not requests:
        return []
    factor = max(r.budget.rope_factor for r in requests)
    if factor != model.rope_factor:
        model.set_rope_factor(factor)
    for r in requests:
        r.visual.encode(model)
    pad_id = _pad_id(model)
    longest = max(len(r.input_ids) for r in requests)
    ids = torch.full((len(requests), longest), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(requests):
        ids[i, longest - len(r.input_ids) :] = torch.tensor(r.input_ids)
        mask[i, longest - len(r.input_ids) :] = 1
    video_feats = [r.visual.video_features for r in requests if r.visual.video_features is not None]
    image_feats = [f for r in requests for f in (r.visual.image_features or [])]
    with torch.no_grad():
        embeds = model.embed_inputs(ids.to(model.device), image_features=image_feats or None, video_features=video_feats or None)
    decoded = _decode(
        model, embeds, mask, settings, stops=stop_token_ids(model, conv_template), pad_id=pad_id, on_text=on_text
    )
    return [_result(model, r, decoded, i) for i, r in enumerate(requests)]


def _last_turn_labels(labels: list[int], ignore_index: int) -> list[int]:
    """Keep only the last labelled span (the candidate answer): earlier assistant turns are history."""
    end = len(labels)
    while end > 0 and labels[end - 1] == ignore_index:
        end -= 1
    start = end
    while start > 0 and labels[start - 1] != ignore_index:
        start -= 1
    return [ignore_index] * start + labels[start:end] + [ignore_index] * (len(labels) - end)


def score_answers(
    model: Any,
    request: PreparedRequest,
    answers: Sequence[str],
    *,
    conv_template: str | None = None,
) -> list[float]:
    """Log-likelihood of each candidate answer as the assistant's reply to ``request``.

    Each candidate is rendered as the template renders a finished assistant turn (so its end-of-turn
    token is scored too: a candidate that is a prefix of a longer one does not win by being short), and
    its answer tokens' log-probabilities are summed. One forward over all candidates, sharing the visual
    features. Used for likelihood-scored multiple choice (``eval_nextqa.py --mc-scoring likelihood``).
    """
    from llava_video.data.batching import Sample, collate
    from llava_video.train.losses import sequence_logprobs

    if not answers:
        return []
    if request.budget.rope_factor != model.rope_factor:
        model.set_rope_factor(request.budget.rope_factor)
    visual = request.visual
    visual.encode(model)
    template = template_for(model.config, model.tokenizer, conv_template)
    video_frames = [visual.num_frames] if visual.pixel_values_videos is not None else []
    ignore = model.config.ignore_index
    rows = []
    for i, answer in enumerate(answers):
        enc = encode_conversation(
            [*request.messages, {"role": "assistant", "content": answer}],
            tokenizer=model.tokenizer,
            template=template,
            config=model.config,
            video_frames=video_frames,
            image_sizes=visual.image_sizes,
        )
        labels = _last_turn_labels(list(enc.labels), ignore)
        rows.append(Sample(index=i, input_ids=torch.tensor(enc.input_ids), labels=torch.tensor(labels)))
    # The trainer's padded collate: (n, L) ids, labels and mask, right-padded.
    batch = collate(rows, packing=False, pad_token_id=_pad_id(model), ignore_index=ignore)
    n = len(rows)
    with torch.no_grad():
        embeds = model.embed_inputs(
            batch.input_ids.to(model.device),
            image_features=[f for _ in range(n) for f in (visual.image_features or [])] or None,
            video_features=[visual.video_features] * n if visual.video_features is not None else None,
        )  # (n, L, d)
        logits = model(inputs_embeds=embeds, attention_mask=batch.attention_mask.to(model.device)).logits  # (n, L, V)
        scores = sequence_logprobs(logits=logits, labels=batch.labels.to(logits.device), ignore_index=ignore)
    return scores.sums.tolist()


class ChatSession:
    """A multi-turn conversation about one video (and/or images).

    Visual features are computed once. The KV cache of everything said so far is kept, and a new turn
    feeds only the tokens that follow the cached prefix; if the re-rendered conversation does not start
    with the cached tokens (or the RoPE factor must change), the prefix is prefilled again from the
    cached features.
    """

    def __init__(
        self,
        model: Any,
        visual: VisualInput,
        *,
        settings: GenerationSettings | None = None,
        conv_template: str | None = None,
        max_rope_factor: float = DEFAULT_MAX_ROPE_FACTOR,
    ) -> None:
        self.model = model
        self.visual = visual
        self.settings = settings or GenerationSettings()
        self.conv_template = conv_template
        self.max_rope_factor = max_rope_factor
        self.history: list[Message] = []
        self.prefill_reused = 0  # turns that continued the cache (for tests and curiosity)
        self.reset()

    def reset(self) -> None:
        """Forget the conversation (the visual features stay)."""
        self.history = []
        self._cache: Any = None
        self._cached_ids: list[int] = []
        self._cached_factor = 0.0

    def ask(self, prompt: str, *, on_text: Callable[[str], None] | None = None) -> ChatResult:
        model = self.model
        messages = build_messages(
            prompt, self.history, num_images=len(self.visual.image_sizes), has_video=self.visual.pixel_values_videos is not None
        )
        request = prepare_request(
            model, self.visual, messages, max_new_tokens=self.settings.max_new_tokens,
            conv_template=self.conv_template, max_rope_factor=self.max_rope_factor,
        )
        factor = max(request.budget.rope_factor, model.rope_factor if self._cache is not None else 0.0)
        if factor != model.rope_factor:
            model.set_rope_factor(factor)
        self.visual.encode(model)
        ids = request.input_ids
        n_cached = len(self._cached_ids)
        reuse = (
            self._cache is not None
            and factor == self._cached_factor
            and n_cached < len(ids)
            and ids[:n_cached] == self._cached_ids
        )
        with torch.no_grad():
            if reuse:
                new = torch.tensor([ids[n_cached:]], device=model.device)
                embeds = model.language_model.get_input_embeddings()(new)  # text only: visuals are cached
                past = self._cache
                self.prefill_reused += 1
            else:
                feats = [self.visual.video_features] if self.visual.video_features is not None else None
                embeds = model.embed_inputs(
                    torch.tensor([ids], device=model.device), image_features=self.visual.image_features, video_features=feats
                )
                past = None
        mask = torch.ones(1, len(ids), dtype=torch.long)
        decoded = _decode(
            model, embeds, mask, self.settings, stops=stop_token_ids(model, self.conv_template), pad_id=_pad_id(model),
            on_text=(lambda _row, delta: on_text(delta)) if on_text is not None else None, past_key_values=past,
        )
        raw = decoded.raw[0].tolist()
        # The cache holds the prompt and every generated token but the last.
        self._cache, self._cached_ids, self._cached_factor = decoded.cache, ids + raw[:-1], factor
        result = _result(model, request, decoded, 0)
        self.history = messages + [{"role": "assistant", "content": result.answer}]
        return result


def ask(
    model: Any,
    *,
    video: str | Path | Any | None = None,
    prompt: str = DEFAULT_PROMPT,
    history: Sequence[Any] = (),
    images: Sequence[Any] = (),
    frames: int | str | None = 32,
    fps: float | None = None,
    conv_template: str | None = None,
    max_rope_factor: float = DEFAULT_MAX_ROPE_FACTOR,
    on_text: Callable[[str], None] | None = None,
    **generation: Any,
) -> ChatResult:
    """One question about a video and/or images; ``frames="auto"`` picks the most that fit."""
    settings = GenerationSettings(**generation)
    visual = load_visual(model, images=images)
    messages = build_messages(prompt, history, num_images=len(visual.image_sizes), has_video=video is not None)
    if video is not None:
        if frames == "auto":
            frames = auto_frame_count(model, visual, messages, max_new_tokens=settings.max_new_tokens, conv_template=conv_template)
        elif frames is not None and (not isinstance(frames, int) or isinstance(frames, bool) or frames < 1):
            raise InputError(f"frames must be a positive integer or 'auto', got {frames!r}")
        load_visual(model, video=video, num_frames=frames, fps=fps, into=visual)
    request = prepare_request(
        model, visual, messages, max_new_tokens=settings.max_new_tokens, conv_template=conv_template,
        max_rope_factor=max_rope_factor,
    )
    return generate_batch(
        model, [request], settings, conv_template=conv_template,
        on_text=(lambda _row, delta: on_text(delta)) if on_text is not None else None,
    )[0]
