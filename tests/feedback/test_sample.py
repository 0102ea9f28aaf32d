"""Candidate sampling (step 1): schema the judge reads, K per prompt, reproducible, resumable; CLI errors."""

import json

import pytest

from llava_video.cli.sample_candidates import main as sample_main
from llava_video.feedback.records import read_candidates
from llava_video.feedback.sample import SamplingConfig, read_prompts, sample_candidates
from llava_video.testing.tiny import tiny_model
from llava_video.testing.tiny_data import write_tiny_dataset


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("prompts")
    write_tiny_dataset(root, num_videos=2, num_images=0, num_text=0, frames=4)
    rows = [
        {"id": "a", "video": "videos/clip_0.mp4", "question": "What happens?", "caption": "A red square moves right.",
         "reference": "A red square moves right.", "kind": "caption"},
        {"id": "b", "video": "videos/clip_1.mp4", "question": "What colour is the square?"},  # generic: no caption
    ]
    path = root / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


CONFIG = SamplingConfig(num_samples=3, max_new_tokens=6, num_frames=4, batch_size=2, seed=7)


def _answers(path):
    return {(c.id, c.candidate_index): c.answer for c in read_candidates(path)}


def test_samples_k_per_prompt_in_the_judge_schema_and_resumes_identically(prompts_file, tmp_path):
    model = tiny_model()
    prompts = read_prompts(prompts_file)
    full = tmp_path / "full.jsonl"
    summary = sample_candidates(model, prompts, output=full, config=CONFIG, video_root=prompts_file.parent, progress=False)
    assert summary.candidates_written == 6
    candidates = read_candidates(full)  # the judge's reader accepts the file
    assert sorted(c.key for c in candidates) == [(i, k) for i in "ab" for k in range(3)]
    first = candidates[0]
    assert first.caption == "A red square moves right." and first.extra["kind"] == "caption"
    assert first.extra["sampling"]["temperature"] == 1.0 and first.extra["sampling"]["top_p"] == 0.95
    assert next(c for c in candidates if c.id == "b").caption == "" and len({c.answer for c in candidates}) > 1

    # An interrupted run: item a done, b's first candidate written, then a torn line.
    lines = full.read_text().splitlines(keepends=True)
    partial = tmp_path / "partial.jsonl"
    partial.write_text("".join(lines[:4]) + lines[4][:10])
    resumed = sample_candidates(model, prompts, output=partial, config=CONFIG, video_root=prompts_file.parent, progress=False)
    assert resumed.items_done_before == 1 and resumed.candidates_written == 2
    assert _answers(partial) == _answers(full)  # same seeds per chunk: the same answers
    again = sample_candidates(model, prompts, output=partial, config=CONFIG, video_root=prompts_file.parent, progress=False)
    assert again.candidates_written == 0 and again.items_done_before == 2


def test_cli_bad_input_exits_2_with_one_line(prompts_file, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "video": "v.mp4"}\n')
    code = sample_main(["--model", str(tmp_path / "none"), "--prompts", str(bad), "--output", str(tmp_path / "o.jsonl")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "bad.jsonl:1" in err and "question" in err
    code = sample_main(["--model", "m", "--prompts", str(prompts_file), "--output", "o", "--top-p", "0"])
    assert code == 2 and "top_p" in capsys.readouterr().err
