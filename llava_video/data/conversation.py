"""Conversation templates, placeholder expansion and loss masks.

A conversation is a list of ``{"role": "system"|"user"|"assistant", "content": str}`` messages whose text
holds ``<image>``/``<video>`` markers. Rendering produces the prompt text and the character spans of the
assistant replies; tokenising with offsets turns those spans into labels, so the loss mask is exact
for any tokenizer (no per-template length arithmetic). Each marker then becomes as many placeholder
ids as its visual input has tokens (the config says how many).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llava_video.config import LlavaVideoConfig
from llava_video.errors import ConfigError, InputError

__all__ = [
    "Message",
    "ConversationTemplate",
    "TEMPLATES",
    "get_template",
    "template_for",
    "RenderedConversation",
    "EncodedConversation",
    "render",
    "encode_conversation",
    "llava_record_to_messages",
    "IMAGE_MARKER",
    "VIDEO_MARKER",
]

IMAGE_MARKER = "<image>"
VIDEO_MARKER = "<video>"
Message = dict[str, str]

_VICUNA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)


@dataclass(frozen=True)
class ConversationTemplate:
    """A prompt format: how system, user and assistant turns are written around their text.

    ``assistant_end`` closes every reply and is trained on (the model must learn to stop).
    ``stop_strings`` end generation. ``bos`` is prepended as a token when the template wants one.
    """

    name: str
    system: str = ""
    system_format: str = "{system}"
    user_format: str = "{content}"
    assistant_prefix: str = ""
    # Written before each reply and trained with it (e.g. the space after "ASSISTANT:").
    reply_prefix: str = ""
    assistant_end: str = ""
    add_bos: bool = True
    stop_strings: tuple[str, ...] = ()

    def render(self, messages: Sequence[Message], *, add_generation_prompt: bool) -> "RenderedConversation":
        parts: list[str] = []
        spans: list[tuple[int, int]] = []
        system = self.system
        body = list(messages)
        if body and body[0]["role"] == "system":
            system, body = body[0]["content"], body[1:]
        if system or "{system}" not in self.system_format:
            parts.append(self.system_format.format(system=system))
        for msg in body:
            role = msg["role"]
            if role == "user":
                parts.append(self.user_format.format(content=msg["content"]) + self.assistant_prefix)
            elif role == "assistant":
                start = sum(map(len, parts))
                parts.append(self.reply_prefix + msg["content"] + self.assistant_end)
                spans.append((start, start + len(parts[-1])))
            else:
                raise InputError(f"message role {role!r} is not system, user or assistant (or out of order)")
        text = "".join(parts)
        if add_generation_prompt and body and body[-1]["role"] == "assistant":
            raise InputError("add_generation_prompt needs the last message to be from the user")
        if not add_generation_prompt and body and body[-1]["role"] == "user":
            # A prompt without the generation cue: drop the dangling assistant prefix.
            text = text[: len(text) - len(self.assistant_prefix)] if self.assistant_prefix else text
        return RenderedConversation(text=text, assistant_spans=spans, template=self)


# Vicuna v1 (LLaVA-NeXT-Video-7B): "<system> USER: <q> ASSISTANT: <a></s>USER: ...". The generation
# prompt ends with "ASSISTANT:" (no trailing space), as llava-hf's chat template renders it.
TEMPLATES: dict[str, ConversationTemplate] = {
    "vicuna_v1": ConversationTemplate(
        name="vicuna_v1",
        system=_VICUNA_SYSTEM,
        system_format="{system} ",
        user_format="USER: {content} ",
        assistant_prefix="ASSISTANT:",
        reply_prefix=" ",
        assistant_end="</s>",
        stop_strings=("</s>",),
    ),
    "chatml": ConversationTemplate(
        name="chatml",
        system="You are a helpful assistant.",
        system_format="<|im_start|>system\n{system}<|im_end|>\n",
        user_format="<|im_start|>user\n{content}<|im_end|>\n",
        assistant_prefix="<|im_start|>assistant\n",
        assistant_end="<|im_end|>\n",
        add_bos=False,
        stop_strings=("<|im_end|>",),
    ),
    "llama3": ConversationTemplate(
        name="llama3",
        system="You are a helpful language and vision assistant.",
        system_format="<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>",
        user_format="<|start_header_id|>user<|end_header_id|>\n\n{content}<|eot_id|>",
        assistant_prefix="<|start_header_id|>assistant<|end_header_id|>\n\n",
        assistant_end="<|eot_id|>",
        add_bos=False,
        stop_strings=("<|eot_id|>",),
    ),
    "mistral": ConversationTemplate(
        name="mistral",
        system_format="",
        user_format="[INST] {content} [/INST]",
        reply_prefix=" ",
        assistant_end="</s>",
        stop_strings=("</s>",),
    ),
}


def get_template(name: str) -> ConversationTemplate:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ConfigError(f"unknown conversation template {name!r}; known: {', '.join(sorted(TEMPLATES))}, chat_template") from None


def template_for(config: LlavaVideoConfig, tokenizer: Any, override: str | None = None) -> "ConversationTemplate | HFChatTemplate":
    """The template a checkpoint asks for: an explicit override, its recorded name, its stored
    chat template, else vicuna_v1 (the LLaVA-NeXT-Video-7B format)."""
    name = override or config.conv_template
    if name == "chat_template" or (name is None and getattr(tokenizer, "chat_template", None)):
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError("conversation template 'chat_template' requested but the tokenizer stores none")
        return HFChatTemplate(tokenizer)
    return get_template(name or "vicuna_v1")


@dataclass
class HFChatTemplate:
    """The Jinja chat template stored with a checkpoint's tokenizer.

    Assistant spans come from rendering growing prefixes: the text a reply adds to the conversation
    is exactly what the model must learn to produce.
    """

    tokenizer: Any
    name: str = "chat_template"
    add_bos: bool = False
    stop_strings: tuple[str, ...] = field(default_factory=tuple)

    def _apply(self, messages: Sequence[Message], add_generation_prompt: bool) -> str:
        msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
        return self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=add_generation_prompt)

    def render(self, messages: Sequence[Message], *, add_generation_prompt: bool) -> "RenderedConversation":
        spans = []
        for i, msg in enumerate(messages):
            if msg["role"] != "assistant":
                continue
            before = self._apply(messages[:i], True)
            after = self._apply(messages[: i + 1], False)
            if not after.startswith(before):
                raise ConfigError("the stored chat template does not render conversations prefix by prefix; pick --conv-template")
            spans.append((len(before), len(after)))
        return RenderedConversation(text=self._apply(messages, add_generation_prompt), assistant_spans=spans, template=self)


@dataclass
class RenderedConversation:
    text: str
    assistant_spans: list[tuple[int, int]]
    template: Any


@dataclass
class EncodedConversation:
    input_ids: list[int]
    labels: list[int]
    num_image_tokens: int = 0
    num_video_tokens: int = 0


def render(messages: Sequence[Message], template: Any, *, add_generation_prompt: bool = False) -> RenderedConversation:
    return template.render(messages, add_generation_prompt=add_generation_prompt)


def _placeholder_id(tokenizer: Any, marker: str) -> int:
    tid = tokenizer.convert_tokens_to_ids(marker)
    if tid is None or tid == tokenizer.unk_token_id:
        raise ConfigError(f"the tokenizer has no {marker} token; add it as a special token")
    return int(tid)


def encode_conversation(
    messages: Sequence[Message],
    *,
    tokenizer: Any,
    template: Any,
    config: LlavaVideoConfig,
    video_frames: Sequence[int] = (),
    image_sizes: Sequence[tuple[int, int]] = (),
    add_generation_prompt: bool = False,
) -> EncodedConversation:
    """Token ids with every marker expanded, and labels that are ``ignore_index`` except on replies.

    ``video_frames[i]`` is the frame count of the i-th ``<video>`` marker, ``image_sizes[i]`` the
    (height, width) of the i-th ``<image>``, in reading order.
    """
    rendered = render(messages, template, add_generation_prompt=add_generation_prompt)
    text = rendered.text
    n_img, n_vid = text.count(IMAGE_MARKER), text.count(VIDEO_MARKER)
    if n_img != len(image_sizes):
        raise InputError(f"conversation has {n_img} {IMAGE_MARKER} markers but {len(image_sizes)} images")
    if n_vid != len(video_frames):
        raise InputError(f"conversation has {n_vid} {VIDEO_MARKER} markers but {len(video_frames)} videos")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    offsets: list[tuple[int, int]] = list(enc["offset_mapping"])
    trained = [False] * len(ids)
    for start, end in rendered.assistant_spans:
        for i, (a, b) in enumerate(offsets):
            # A token belongs to a reply when it starts inside it (BPE may glue a leading space on).
            if b > a and start <= a < end:
                trained[i] = True
    if template.add_bos and tokenizer.bos_token_id is not None:
        ids, trained = [tokenizer.bos_token_id] + ids, [False] + trained
    tok_image, tok_video = _placeholder_id(tokenizer, IMAGE_MARKER), _placeholder_id(tokenizer, VIDEO_MARKER)
    out_ids: list[int] = []
    out_labels: list[int] = []
    images, videos = iter(image_sizes), iter(video_frames)
    n_image_tokens = n_video_tokens = 0
    ignore = config.ignore_index
    for tid, is_trained in zip(ids, trained):
        if tid == tok_image:
            n = config.image_token_count(tuple(next(images)))
            out_ids += [config.image_token_id] * n
            out_labels += [ignore] * n
            n_image_tokens += n
        elif tid == tok_video:
            n = config.video_token_count(int(next(videos)))
            out_ids += [config.video_token_id] * n
            out_labels += [ignore] * n
            n_video_tokens += n
        else:
            out_ids.append(tid)
            out_labels.append(tid if is_trained else ignore)
    return EncodedConversation(out_ids, out_labels, n_image_tokens, n_video_tokens)


_ROLE_OF = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def llava_record_to_messages(conversations: Sequence[dict[str, Any]]) -> list[Message]:
    """LLaVA JSON ``conversations`` (``from: human|gpt``) -> role/content messages."""
    out = []
    for turn in conversations:
        role = _ROLE_OF.get(str(turn.get("from", turn.get("role", ""))))
        if role is None:
            raise InputError(f"conversation turn has unknown speaker {turn.get('from')!r}")
        out.append({"role": role, "content": str(turn.get("value", turn.get("content", "")))})
    return out
