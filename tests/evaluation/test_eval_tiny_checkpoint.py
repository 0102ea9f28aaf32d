"""tools/eval_nextqa.py end to end with a real (tiny, random) checkpoint on a generated NExT-QA-format set."""

from __future__ import annotations

import json

import pytest

from llava_video.cli import eval_nextqa
from llava_video.synthetic.export import ExportConfig, export_dataset
from llava_video.synthetic.world import WorldConfig
from llava_video.testing import tiny_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("nextqa-tiny")
    data = root / "data"
    export_dataset(output=data, config=ExportConfig(seed=3, num_train=0, num_eval=3, num_images=0, num_dpo=0, num_dpo_eval=0, frames=8, world=WorldConfig(size=32)))
    ckpt = root / "ckpt"
    tiny_model(seed=11).save_pretrained(ckpt)
    return data, ckpt, root


@pytest.mark.parametrize("task", ["mc", "oe"])
def test_both_tasks_with_a_tiny_checkpoint(setup, task, capsys):
    data, ckpt, root = setup
    out = root / f"out-{task}"
    code = eval_nextqa.main([
        "--model", str(ckpt), "--annotations", str(data / f"nextqa_{task}.csv"), "--video-root", str(data / "videos"),
        "--task", task, "--frames", "4", "--batch-size", "2", "--num-workers", "0", "--output", str(out),
        "--max-new-tokens", "4", "--no-progress",
    ])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    lines = (out / "predictions.jsonl").read_text().splitlines()
    n_questions = sum(1 for _ in open(data / f"nextqa_{task}.csv")) - 1
    assert len(lines) == n_questions > 0
    keys = [(row["video"], row["qid"]) for row in map(json.loads, lines)]  # NExT-QA qids count per video
    assert len(set(keys)) == len(keys)
    assert metrics["answered"] == n_questions
    overall = metrics["overall"]
    if task == "oe":
        assert 0 <= overall["wups9"] <= overall["wups0"] <= 100
    else:
        assert 0 <= overall["accuracy"] <= 100


def _manual_option_logprob(model, clip_path, prompt: str, option: str) -> float:
    """The option's log-likelihood the slow way: one unpadded sequence, pixels in, log-softmax by hand."""
    import torch

    from llava_video.data.conversation import encode_conversation, template_for
    from llava_video.inference import pipeline as pl

    visual = pl.load_visual(model, video=clip_path, num_frames=4)
    enc = encode_conversation(
        [{"role": "user", "content": "<video>\n" + prompt}, {"role": "assistant", "content": option}],
        tokenizer=model.tokenizer, template=template_for(model.config, model.tokenizer, None), config=model.config,
        video_frames=[visual.num_frames],
    )
    ids, labels = torch.tensor([enc.input_ids]), torch.tensor(enc.labels)
    with torch.no_grad():
        logits = model(ids, pixel_values_videos=[visual.pixel_values_videos]).logits[0].float()  # (L, V)
    logp = torch.log_softmax(logits[:-1], dim=-1)  # (L-1, V): position t predicts token t+1
    target = labels[1:]
    keep = target != model.config.ignore_index
    return float(logp[keep].gather(1, target[keep][:, None]).sum())


def test_likelihood_mc_scoring_picks_the_most_likely_option(setup, capsys):
    from llava_video import LlavaVideo
    from llava_video.evaluation.nextqa import build_prompt, read_questions
    from llava_video.inference import pipeline as pl

    data, ckpt, root = setup
    out = root / "out-mc-likelihood"
    argv = ["--model", str(ckpt), "--annotations", str(data / "nextqa_mc.csv"), "--video-root", str(data / "videos"),
            "--task", "mc", "--frames", "4", "--batch-size", "2", "--num-workers", "0", "--output", str(out),
            "--no-progress", "--mc-scoring", "likelihood"]
    assert eval_nextqa.main(argv) == 0, capsys.readouterr().err
    records = {r["key"]: r for r in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())}
    assert records and all(r["parsed"] for r in records.values())  # the answer is an option's own text
    assert json.loads((out / "run.json").read_text())["mc_scoring"] == "likelihood"

    model = LlavaVideo.from_pretrained(ckpt)
    questions = read_questions(data / "nextqa_mc.csv", task="mc")
    for question in questions[:3]:
        clip = data / "videos" / f"{question.video}.mp4"
        prompt = build_prompt(question, task="mc")
        manual = [_manual_option_logprob(model, clip, prompt, option) for option in question.options]
        request = pl.prepare_request(model, pl.load_visual(model, video=clip, num_frames=4), pl.build_messages(prompt),
                                     max_new_tokens=4)
        batched = pl.score_answers(model, request, question.options)
        assert batched == pytest.approx(manual, abs=1e-4)
        assert records[question.key]["prediction"] == max(range(5), key=manual.__getitem__)

    # Resuming the folder with the other scoring would mix two evaluations.
    generate = [a for a in argv if a not in ("--mc-scoring", "likelihood")]
    assert eval_nextqa.main(generate) == 2
    assert "mc_scoring" in capsys.readouterr().err
    # A folder from before the flag (no mc_scoring in run.json) holds generated answers: it resumes with
    # generation and refuses likelihood scoring.
    old = root / "out-mc-before-the-flag"
    old.mkdir()
    run = json.loads((out / "run.json").read_text())
    del run["mc_scoring"]
    (old / "run.json").write_text(json.dumps(run))
    retarget = lambda args: [str(old) if a == str(out) else a for a in args]  # noqa: E731
    assert eval_nextqa.main(retarget(argv)) == 2
    assert "mc_scoring: 'generate' -> 'likelihood'" in capsys.readouterr().err
    assert eval_nextqa.main(retarget(generate)) == 0, capsys.readouterr().err
    assert "mc_scoring" not in json.loads((old / "run.json").read_text())  # the old record is left as it was


def test_mc_scoring_is_refused_for_open_ended(setup, capsys):
    data, ckpt, root = setup
    code = eval_nextqa.main(["--model", str(ckpt), "--annotations", str(data / "nextqa_oe.csv"), "--video-root",
                             str(data / "videos"), "--task", "oe", "--output", str(root / "x"), "--mc-scoring",
                             "likelihood"])
    assert code == 2
    assert "--mc-scoring only applies to --task mc" in capsys.readouterr().err
