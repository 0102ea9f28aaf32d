"""MC parsing of varied answer styles, prompts, file reading and the official aggregation."""

import json

import pytest

from llava_video.evaluation.nextqa import (
    AnnotationError,
    NextQAQuestion,
    aggregate,
    build_prompt,
    official_mc_predictions,
    official_oe_predictions,
    parse_mc_answer,
    read_extra_references,
    read_questions,
    read_video_map,
    video_path,
)

OPTIONS = ("pick up the ball", "run away", "sit on the sofa", "throw the ball", "cry")


@pytest.mark.parametrize("response, expected", [
    ("B", 1), ("b", 1), ("(C)", 2), ("D.", 3), ("E)", 4), (" A ", 0),
    ("C. sit on the sofa", 2), ("(B) run away", 1), ("B: run away", 1),
    ("The answer is D.", 3), ("Answer: (E)", 4), ("I think the correct option is C", 2),
    ("Best choice: A", 0), ("It is (D) because he wants to play.", 3),
    ("sit on the sofa", 2), ("Sit on the sofa.", 2), ("The boy decided to throw the ball.", 3),
    ("He will cry", 4),
])
def test_parse_mc_answer_styles(response, expected):
    assert parse_mc_answer(response, OPTIONS) == expected


@pytest.mark.parametrize("response", [
    "", "I don't know", "A or B", "the ball",  # "the ball" is in two options, neither fully
    "A man is sitting",  # "A" starting a sentence is an article, not a letter
    "F",
])
def test_parse_mc_answer_unparseable(response):
    assert parse_mc_answer(response, OPTIONS) is None


def test_longest_contained_option_wins():
    assert parse_mc_answer("he throws it: throw the ball", ("ball", "throw the ball", "x", "y", "z")) == 1


def test_prompts():
    q = NextQAQuestion(video="1", qid="0", question="why did the boy cry", qtype="CW", answer="4", options=OPTIONS)
    assert build_prompt(q, task="mc") == (
        "why did the boy cry\nA. pick up the ball\nB. run away\nC. sit on the sofa\nD. throw the ball\nE. cry\n"
        "Answer with the option's letter from the given choices directly.")
    assert build_prompt(q, task="oe") == "why did the boy cry\nAnswer a question using a short phrase or sentence."


def test_aggregate_pools_types_and_groups():
    scores = [("CW", (1.0,)), ("CW", (0.0,)), ("CH", (1.0,)), ("TN", (1.0,)), ("TP", (0.0,)), ("TC", (1.0,)),
              ("DC", (0.0,)), ("DL", (1.0,)), ("DO", (1.0,)), ("DO", (1.0,))]
    result = aggregate(scores, task="mc", metric_names=("accuracy",))
    assert result["per_type"]["CW"] == {"count": 2, "accuracy": 50.0}
    assert result["per_type"]["TN"] == {"count": 2, "accuracy": 50.0}  # TP folded into TN
    assert "TP" not in result["per_type"]
    assert result["per_group"]["causal"] == {"count": 3, "accuracy": pytest.approx(200 / 3)}
    assert result["per_group"]["temporal"] == {"count": 3, "accuracy": pytest.approx(200 / 3)}
    assert result["per_group"]["descriptive"] == {"count": 4, "accuracy": 75.0}  # pooled, not a mean of types
    assert result["overall"] == {"count": 10, "accuracy": 70.0}


def test_aggregate_oe_two_metrics_and_db():
    result = aggregate([("DB", (1.0, 1.0)), ("CW", (0.5, 0.05))], task="oe", metric_names=("wups0", "wups9"))
    assert result["per_group"]["descriptive"] == {"count": 1, "wups0": 100.0, "wups9": 100.0}
    assert result["overall"] == {"count": 2, "wups0": 75.0, "wups9": pytest.approx(52.5)}
    with pytest.raises(ValueError, match="DB"):
        aggregate([("DB", (1.0,))], task="mc", metric_names=("accuracy",))


def _write(path, text):
    path.write_text(text)
    return path


def test_read_files(tmp_path):
    mc = _write(tmp_path / "mc.csv", "video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4\n"
                "4010069381,100,640,480,why did he cry,2,7,CW,a,b,c,d,e\n")
    [q] = read_questions(mc, task="mc")
    assert (q.key, q.answer_index, q.options) == ("4010069381_7", 2, ("a", "b", "c", "d", "e"))
    oe = _write(tmp_path / "oe.csv", "video,frame_count,width,height,question,answer,qid,type\n"
                "11,1,2,2,what is he holding,ball,3,DO\n12,1,2,2,how many dogs,two,1,DC\n")
    refs = _write(tmp_path / "add.json", json.dumps({"11": {"3": "toy"}}))
    questions = read_questions(oe, task="oe", extra_references=read_extra_references(refs))
    assert [q.references for q in questions] == [("ball", "toy"), ("two",)]
    vmap = _write(tmp_path / "map.json", json.dumps({"11": "1001/11"}))
    assert video_path("11", video_root=tmp_path, video_map=read_video_map(vmap)) == tmp_path / "1001/11.mp4"
    assert video_path("11", video_root=tmp_path, video_map=None) == tmp_path / "11.mp4"


@pytest.mark.parametrize("text, message", [
    ("video,question\n1,q\n", "missing column"),
    ("video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4\n1,1,1,1,q,7,0,CW,a,b,c,d,e\n", "0-4"),
    ("video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4\n1,1,1,1,q,1,0,XX,a,b,c,d,e\n", "unknown question type"),
    ("video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4\n", "no questions"),
])
def test_bad_annotations(tmp_path, text, message):
    with pytest.raises(AnnotationError, match=message):
        read_questions(_write(tmp_path / "bad.csv", text), task="mc")


def test_official_prediction_files():
    records = [{"key": "1_0", "video": "1", "qid": "0", "answer": 2, "prediction": -1}]
    assert official_mc_predictions(records) == {"1_0": {"answer": 2, "prediction": -1}}
    assert official_oe_predictions([{"video": "1", "qid": "0", "prediction": "a dog"}]) == {"1": {"0": "a dog"}}
