"""tools/infer_video.py end to end on tiny checkpoints saved in the llava-hf layout."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import LlavaNextVideoForConditionalGeneration

from llava_video import LlavaVideo
from llava_video.cli import infer_video
from llava_video.data.encode import write_video
from llava_video.inference import pipeline as pl
from llava_video.testing import tiny_config, tiny_model

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "infer_video.py"


def _clip(path: Path, frames: int, size: tuple[int, int] = (48, 64)) -> Path:
    rng = np.random.default_rng(frames)
    video = rng.integers(0, 255, (frames, *size, 3), dtype=np.uint8)
    return write_video(path, video, fps=8, options={"crf": "10"})


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny-ckpt")
    tiny_model(seed=7).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return _clip(tmp_path_factory.mktemp("clips") / "clip.mp4", 12)


def _run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=240)


def test_json_fields_and_agreement_with_python_api_and_transformers(ckpt, clip, capsys):
    code = infer_video.main(["--model", str(ckpt), "--frames", "4", "--max-new-tokens", "8", "--json", str(clip)])
    assert code == 0
    record = json.loads(capsys.readouterr().out.strip())
    for key in ("model", "video", "frame_indices", "timestamps", "num_visual_tokens", "context_length",
                "rope_scaling_factor", "prompt", "answer", "seconds", "tokens_per_second"):
        assert key in record, key
    assert set(record["seconds"]) == {"decode", "preprocess", "vision_encode", "prefill", "generate"}
    assert record["frame_indices"] == [0, 3, 7, 11]  # np.linspace(0, 11, 4, dtype=int), as LLaVA-NeXT-Video samples
    model = LlavaVideo.from_pretrained(ckpt)
    assert record["num_visual_tokens"] == model.config.video_token_count(4)
    assert record["prompt"] == pl.DEFAULT_PROMPT

    # The Python API gives the same answer ...
    api = model.chat(video=str(clip), frames=4, max_new_tokens=8)
    assert api.answer == record["answer"] and api.frame_indices == record["frame_indices"]

    # ... and so does transformers' generate on the same frames and prompt ids.
    visual = pl.load_visual(model, video=str(clip), num_frames=4)
    request = pl.prepare_request(model, visual, pl.build_messages(pl.DEFAULT_PROMPT), max_new_tokens=8)
    hf = LlavaNextVideoForConditionalGeneration.from_pretrained(ckpt).eval()
    ids = torch.tensor([request.input_ids])
    out = hf.generate(
        input_ids=ids, pixel_values_videos=visual.pixel_values_videos[None], max_new_tokens=8, do_sample=False,
        eos_token_id=pl.stop_token_ids(model), pad_token_id=model.tokenizer.pad_token_id,
    )[0, ids.shape[1]:].tolist()
    stops = set(pl.stop_token_ids(model))
    hf_tokens = [t for t in out if t not in stops]
    assert hf_tokens == api.token_ids
    assert model.tokenizer.decode(hf_tokens, skip_special_tokens=True).strip() == record["answer"]


def test_batched_videos_match_one_by_one(ckpt, tmp_path):
    model = LlavaVideo.from_pretrained(ckpt)
    clips = [_clip(tmp_path / f"c{i}.mp4", n) for i, n in enumerate((6, 9, 12))]
    settings = pl.GenerationSettings(max_new_tokens=6)
    single = [model.chat(video=str(c), frames=3 + i, max_new_tokens=6).answer for i, c in enumerate(clips)]
    requests = []
    for i, c in enumerate(clips):
        visual = pl.load_visual(model, video=str(c), num_frames=3 + i)
        requests.append(pl.prepare_request(model, visual, pl.build_messages(pl.DEFAULT_PROMPT), max_new_tokens=6))
    batched = [r.answer for r in pl.generate_batch(model, requests, settings)]
    assert batched == single


def test_32_frames_on_a_4096_position_model_pick_factor_2(tmp_path, capsys):
    cfg = tiny_config(image_size=336, patch_size=14, vision_hidden=16, text_hidden=32, text_layers=1, max_position_embeddings=4096)
    path = tmp_path / "ckpt336"
    tiny_model(cfg, seed=8).save_pretrained(path)
    clip = _clip(tmp_path / "long.mp4", 40, size=(32, 48))
    assert infer_video.main(["--model", str(path), "--frames", "32", "--max-new-tokens", "4", "--json", str(clip)]) == 0
    record = json.loads(capsys.readouterr().out.strip())
    assert record["num_visual_tokens"] == 32 * 144 == 4608
    assert record["rope_scaling_factor"] == 2.0 and record["context_length"] == 8192
    # --frames auto: the most frames that fit 4096 positions beside this prompt and 4 answer tokens.
    assert infer_video.main(["--model", str(path), "--frames", "auto", "--max-new-tokens", "4", "--json", str(clip)]) == 0
    record = json.loads(capsys.readouterr().out.strip())
    model = LlavaVideo.from_pretrained(path)
    one_frame = pl.VisualInput(pixel_values_videos=torch.zeros(1, 3, 336, 336))
    request = pl.prepare_request(model, one_frame, pl.build_messages(pl.DEFAULT_PROMPT), max_new_tokens=4)
    text_tokens = len(request.input_ids) - 144
    assert len(record["frame_indices"]) == (4096 - 4 - text_tokens) // 144
    assert record["rope_scaling_factor"] == 1.0
    # An impossible request: exit 2 and one line naming the numbers.
    code = infer_video.main(["--model", str(path), "--frames", "32", "--max-rope-factor", "1", "--max-new-tokens", "4", str(clip)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "tokens" in err and "RoPE" in err


def test_chat_two_turns_run_the_vision_tower_once(ckpt, clip, monkeypatch, capsys):
    model = LlavaVideo.from_pretrained(ckpt)
    calls = []
    model.vision_tower.register_forward_hook(lambda *a: calls.append(1))
    monkeypatch.setattr(infer_video, "_load_model", lambda args: model)
    answers = []
    ask = pl.ChatSession.ask
    monkeypatch.setattr(pl.ChatSession, "ask", lambda self, q, **kw: answers.append(ask(self, q, **kw)) or answers[-1])
    monkeypatch.setattr(sys, "stdin", io.StringIO("What moves?\n/reset\nAnd then?\nAgain?\n/quit\nnever asked\n"))
    assert infer_video.main(["--chat", "--frames", "4", "--max-new-tokens", "6", str(clip)]) == 0
    out = capsys.readouterr().out
    assert len(answers) == 3 and all(a.answer in out for a in answers)  # each answer was streamed
    assert [a.prompt for a in answers] == ["What moves?", "And then?", "Again?"]
    assert len(calls) == 1  # the vision tower ran once for all turns


def test_chat_session_reuses_the_prefix_cache(ckpt, clip):
    model = LlavaVideo.from_pretrained(ckpt)
    visual = pl.load_visual(model, video=str(clip), num_frames=4)
    settings = pl.GenerationSettings(max_new_tokens=6)
    session = pl.ChatSession(model, visual, settings=settings)
    first = session.ask("What moves?")
    second = session.ask("And then?")
    # The second answer equals a fresh, cache-free run over the same conversation.
    fresh = model.chat(video=str(clip), frames=4, prompt="And then?", history=[("What moves?", first.answer)], max_new_tokens=6)
    assert second.answer == fresh.answer
    session.reset()
    assert session.ask("What moves?").answer == first.answer


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--model", "{ckpt}", "{missing}"], "no such file"),
        (["--model", "{ckpt}", "{corrupt}"], "corrupt.mp4"),
        (["--model", "{nowhere}", "{clip}"], "no such checkpoint directory"),
        (["--model", "{ckpt}", "--frames", "zero", "{clip}"], "--frames"),
        (["--model", "{ckpt}", "--top-p", "2", "{clip}"], "--top-p"),
    ],
)
def test_bad_input_exits_2_with_one_line(ckpt, clip, tmp_path, args, needle):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    values = {"ckpt": ckpt, "clip": clip, "missing": tmp_path / "missing.mp4", "corrupt": corrupt, "nowhere": tmp_path / "no" / "model"}
    result = _run_tool(*[a.format(**values) for a in args])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.stderr
