"""The training dataset puts the loss on assistant tokens only, for every conversation template."""

import pytest

from llava_video.data.batching import ConversationDataset, MediaLoader
from llava_video.data.conversation import TEMPLATES, get_template
from llava_video.data.records import Record
from llava_video.testing.tiny import tiny_config, tiny_tokenizer

REPLIES = ["A red square moves left.", "yes"]


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_labels_cover_exactly_the_replies(name):
    tok = tiny_tokenizer()
    config = tiny_config()
    template = get_template(name)
    record = Record("mem.json", 1, "t", (
        {"from": "human", "value": "What happens first?"}, {"from": "gpt", "value": REPLIES[0]},
        {"from": "human", "value": "Is it red?"}, {"from": "gpt", "value": REPLIES[1]},
    ))
    ds = ConversationDataset([record], tokenizer=tok, config=config, template=template,
                             media=MediaLoader(processor=None), max_length=4096)
    sample = ds[0]
    ids, labels = sample.input_ids.tolist(), sample.labels.tolist()
    trained = [t for t, lab in zip(ids, labels) if lab != -100]
    assert [lab for lab in labels if lab != -100] == trained
    expected = "".join(template.reply_prefix + r + template.assistant_end for r in REPLIES)
    assert tok.decode(trained) == expected
    prompt = tok.decode([t for t, lab in zip(ids, labels) if lab == -100])
    assert "What happens first?" in prompt and REPLIES[0] not in prompt
