import json

import pytest

from llava_video.data.records import (
    BadRecordError,
    BadRecordReport,
    apply_sampling,
    load_records,
    parse_sampling,
    read_mixture,
    read_records,
)
from llava_video.errors import ConfigError


def _conv(q="<image>\nWhat?", a="A square."):
    return [{"from": "human", "value": q}, {"from": "gpt", "value": a}]


@pytest.fixture
def media(tmp_path):
    (tmp_path / "img.png").write_bytes(b"png")
    (tmp_path / "clip.mp4").write_bytes(b"mp4")
    return tmp_path


def test_json_array_records_and_every_bad_kind_reported_with_line(media):
    records = [
        {"id": "ok_image", "image": "img.png", "conversations": _conv()},
        {"id": "ok_multi", "image": ["img.png", "img.png"], "conversations": _conv("<image><image> both?")},
        {"id": "ok_video", "video": "clip.mp4", "conversations": _conv("<video> what?")},
        {"id": "ok_text", "conversations": _conv("hi", "hello")},
        {"id": "missing", "image": "nope.png", "conversations": _conv()},
        {"id": "no_reply", "image": "img.png", "conversations": [{"from": "human", "value": "<image>"}]},
        {"id": "mismatch", "image": "img.png", "conversations": _conv("no marker")},
        {"id": "speaker", "conversations": [{"from": "bot", "value": "x"}]},
    ]
    path = media / "data.json"
    path.write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")
    report = BadRecordReport()
    good = read_records(path, image_root=media, video_root=media, report=report)
    assert [r.record_id for r in good] == ["ok_image", "ok_multi", "ok_video", "ok_text"]
    assert [r.modality for r in good] == ["image", "image", "video", "text"]
    assert good[1].images == (str(media / "img.png"),) * 2
    bad = {b.record_id: b for b in report.items}
    assert set(bad) == {"missing", "no_reply", "mismatch", "speaker"}
    # one record per line after the opening bracket: record i sits on line i + 2
    assert bad["missing"].line == 6 and bad["speaker"].line == 9
    assert bad["missing"].reason.startswith("missing media") and "nope.png" in bad["missing"].reason
    assert bad["no_reply"].reason.startswith("no assistant turn")
    assert bad["mismatch"].reason.startswith("placeholder mismatch")
    assert report.counts() == {"missing media": 1, "no assistant turn": 1, "placeholder mismatch": 1, "malformed record": 1}
    assert str(path) in report.summary() and "bad records: 4" in report.summary()


def test_jsonl_malformed_line_is_reported_and_fail_policy_raises(media):
    path = media / "data.jsonl"
    path.write_text(json.dumps({"id": "a", "conversations": _conv("q", "a")}) + "\n{not json\n"
                    + json.dumps({"id": "b", "conversations": _conv("q", "a")}) + "\n")
    report = BadRecordReport()
    good = read_records(path, image_root=media, video_root=media, report=report)
    assert [r.record_id for r in good] == ["a", "b"]
    assert len(report) == 1 and report.items[0].line == 2 and report.items[0].reason.startswith("malformed JSON")
    with pytest.raises(BadRecordError, match=r"data.jsonl:2"):
        read_records(path, image_root=media, video_root=media, report=BadRecordReport(policy="fail"))


def test_broken_json_array_reports_where_parsing_stopped(media):
    path = media / "broken.json"
    path.write_text('[\n{"id": "a", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},\n{"id": oops}\n]')
    report = BadRecordReport()
    good = read_records(path, image_root=media, video_root=media, report=report)
    assert len(good) == 1 and report.items[0].line == 3 and "malformed JSON" in report.items[0].reason


def test_sampling_strategies():
    assert parse_sampling("all") == ("all", None)
    assert parse_sampling("first:3") == ("first", 3.0)
    assert parse_sampling("random:2") == ("random", 2.0)
    assert parse_sampling("random:50%") == ("random_fraction", 0.5)
    for bad in ("some", "first:", "random:0%", "random:150%"):
        with pytest.raises(ConfigError):
            parse_sampling(bad)
    items = list(range(10))
    assert apply_sampling(items, "first:3", seed=0) == [0, 1, 2]
    picked = apply_sampling(items, "random:40%", seed=1)
    assert len(picked) == 4 and picked == sorted(picked) and picked == apply_sampling(items, "random:40%", seed=1)
    assert len(apply_sampling(items, "random:20", seed=0)) == 10


def test_mixture_paths_relative_to_file_and_unknown_keys(media):
    data = media / "sub"
    data.mkdir()
    (data / "a.jsonl").write_text("".join(json.dumps({"id": f"t{i}", "conversations": _conv("q", "a")}) + "\n" for i in range(6)))
    mix = media / "mix.yaml"
    mix.write_text("datasets:\n  - {path: sub/a.jsonl, sampling: 'first:2'}\n  - {path: sub/a.jsonl, sampling: 'random:50%'}\n")
    entries = read_mixture(mix)
    recs = load_records(entries, image_root=str(media), video_root=str(media), seed=0, report=BadRecordReport())
    assert len(recs) == 2 + 3 and [r.record_id for r in recs[:2]] == ["t0", "t1"]
    (media / "bad.yaml").write_text("sets: []\n")
    with pytest.raises(ConfigError, match="datasets"):
        read_mixture(media / "bad.yaml")
