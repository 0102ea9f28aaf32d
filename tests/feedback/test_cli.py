"""tools/judge.py and tools/build_pairs.py chained with the rule judge; bad input exits 2 with one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from llava_video.cli import build_pairs as build_pairs_cli
from llava_video.cli import judge as judge_cli
from llava_video.feedback.judges import reference_overlap_rule

ROOT = Path(__file__).resolve().parents[2]


def _candidates(path: Path) -> None:
    answers = ["The red ball rolls to the left.", "A ball rolls left.", "A dog sleeps.", "The red ball rolls left"]
    rows = [{"id": f"q{item}", "video": f"v{item}.mp4", "question": "What does the ball do?",
             "reference": "The red ball rolls to the left.", "caption": "A red ball rolls left on a table.",
             "candidate_index": i, "answer": answer}
            for item in range(2) for i, answer in enumerate(answers)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_reference_overlap_rule() -> None:
    assert reference_overlap_rule("c", "q", "the red ball rolls", "the red ball rolls") == 5
    assert reference_overlap_rule("c", "q", "the red ball rolls", "a dog sleeps") == 1
    assert reference_overlap_rule("a red ball", "q", None, "a red cube") in (3, 4)


def test_judge_then_pairs_with_rule_backend(tmp_path, capsys) -> None:
    candidates, judged, pairs = tmp_path / "c.jsonl", tmp_path / "j.jsonl", tmp_path / "p.jsonl"
    _candidates(candidates)
    assert judge_cli.main(["--candidates", str(candidates), "--output", str(judged), "--backend", "rule",
                           "--no-progress"]) == 0
    rows = [json.loads(line) for line in judged.read_text().splitlines()]
    assert len(rows) == 8 and all(r["status"] == "scored" for r in rows)
    assert rows[0]["judge"] == f"rule:{judge_cli.DEFAULT_RULE}"
    assert build_pairs_cli.main(["--judged", str(judged), "--output", str(pairs)]) == 0
    out = [json.loads(line) for line in pairs.read_text().splitlines()]
    assert len(out) == 2
    assert out[0]["chosen"] == "The red ball rolls to the left." and out[0]["rejected"] == "A dog sleeps."
    report = json.loads((tmp_path / "p.jsonl.report.json").read_text())
    assert report["pairs_kept"] == 2 and sum(report["score_histogram"].values()) == 8
    assert "2 pairs kept" in capsys.readouterr().out


def test_bad_input_exits_2_with_one_line(tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "video": "v", "question": "q", "caption": "c", "answer": "x"}\n')
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "judge.py"), "--candidates", str(bad),
                             "--output", str(tmp_path / "o.jsonl"), "--backend", "rule"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"judge.py: error: {bad}:1: field 'candidate_index' must be a non-negative integer"]
    assert judge_cli.main(["--candidates", str(bad), "--output", "o", "--backend", "openai"]) == 2
    assert judge_cli.main(["--candidates", str(bad), "--output", "o", "--backend", "rule",
                           "--rule", "no.such.module:f"]) == 2
    garbage = tmp_path / "judged.jsonl"
    garbage.write_text("not json\n")
    assert build_pairs_cli.main(["--judged", str(garbage), "--output", str(tmp_path / "p.jsonl")]) == 2
