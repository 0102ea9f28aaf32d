"""Templates, loss masks on assistant tokens only, and placeholder expansion."""

from __future__ import annotations

import pytest

from llava_video.data.conversation import (
    TEMPLATES,
    encode_conversation,
    get_template,
    llava_record_to_messages,
    render,
    template_for,
)
from llava_video.errors import ConfigError, InputError
from llava_video.testing import tiny_config, tiny_tokenizer
from llava_video.testing.tiny import IMAGE_ID, VIDEO_ID

MESSAGES = [
    {"role": "user", "content": "<video>\nWhat moves?"},
    {"role": "assistant", "content": "A red square."},
    {"role": "user", "content": "<image>\nThen?"},
    {"role": "assistant", "content": "It stops."},
]


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_loss_only_on_assistant_tokens(tok, name):
    cfg = tiny_config()
    template = get_template(name)
    enc = encode_conversation(MESSAGES, tokenizer=tok, template=template, config=cfg, video_frames=[3], image_sizes=[(40, 90)])
    trained = [t for t, l in zip(enc.input_ids, enc.labels) if l != -100]
    end = template.assistant_end
    assert tok.decode(trained) == f"{template.reply_prefix}A red square.{end}{template.reply_prefix}It stops.{end}"
    # Every label equals its input id where set; visual placeholders are never trained.
    assert all(l in (-100, i) for i, l in zip(enc.input_ids, enc.labels))
    assert enc.input_ids.count(VIDEO_ID) == cfg.video_token_count(3) == enc.num_video_tokens
    assert enc.input_ids.count(IMAGE_ID) == cfg.image_token_count((40, 90)) == enc.num_image_tokens
    assert (enc.input_ids[0] == tok.bos_token_id) == template.add_bos


def test_vicuna_generation_prompt_matches_the_published_format():
    text = render(MESSAGES[:1], get_template("vicuna_v1"), add_generation_prompt=True).text
    assert text.endswith("USER: <video>\nWhat moves? ASSISTANT:")
    assert text.startswith("A chat between a curious human and an artificial intelligence assistant.")


def test_stored_chat_template_is_used_and_masked(tok):
    tok = tiny_tokenizer()
    tok.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    cfg = tiny_config()
    template = template_for(cfg, tok)
    assert template.name == "chat_template"
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes"}]
    enc = encode_conversation(msgs, tokenizer=tok, template=template, config=cfg)
    assert tok.decode([t for t, l in zip(enc.input_ids, enc.labels) if l != -100]) == " yes\n"
    assert template_for(cfg, tok, override="chatml").name == "chatml"


def test_template_choice_and_errors(tok):
    cfg = tiny_config()
    assert template_for(cfg, tok).name == "vicuna_v1"
    assert template_for(tiny_config(conv_template="llama3"), tok).name == "llama3"
    with pytest.raises(ConfigError, match="unknown conversation template 'vicuna'"):
        get_template("vicuna")
    with pytest.raises(InputError, match="1 <video> markers but 0 videos"):
        encode_conversation(MESSAGES[:2], tokenizer=tok, template=get_template("vicuna_v1"), config=cfg)
    with pytest.raises(InputError, match="unknown speaker"):
        llava_record_to_messages([{"from": "robot", "value": "x"}])


def test_llava_records_convert():
    msgs = llava_record_to_messages([{"from": "human", "value": "<video>\nq"}, {"from": "gpt", "value": "a"}])
    assert msgs == [{"role": "user", "content": "<video>\nq"}, {"role": "assistant", "content": "a"}]
