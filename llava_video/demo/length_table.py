"""Length generalisation in miniature: held-out multiple-choice accuracy at 8, 16 and 32 frames of a model
trained at fewer frames, with and without linear RoPE scaling.

The same held-out scenes are rendered at each frame count (``tools/make_synthetic.py --frames T`` with one
seed) and evaluated with ``tools/eval_nextqa.py``. Each setting is a copy of the checkpoint whose stored
RoPE factor is fixed and whose position limit is raised, so that the pipeline's budget never picks a
factor of its own:

- ``factor 1``: positions as in training (frame tokens of a longer clip get positions never seen);
- ``factor T/train``: linear scaling, position p becomes p * train / T, so the longer clip's positions span
  the range seen in training (LLaVA-NeXT-Video's recipe for more frames);
- ``auto``: the unmodified checkpoint, i.e. what ``tools/infer_video.py`` does: the smallest integer
  factor whose context holds the request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from llava_video.demo.recipe import run_command, tool_command

__all__ = ["rope_variant", "run_length_table", "format_length_table"]


def rope_variant(*, model_dir: str | Path, output: str | Path, factor: float, max_positions: int = 8192) -> Path:
    """A copy of ``model_dir`` with linear RoPE factor ``factor`` stored and ``max_positions`` positions."""
    from llava_video import LlavaVideo

    model = LlavaVideo.from_pretrained(str(model_dir), device="cpu", dtype="float32")
    model.config.text["max_position_embeddings"] = max_positions
    model.language_model.config.max_position_embeddings = max_positions
    model.set_rope_factor(factor)
    return model.save_pretrained(output)


def run_length_table(*, model_dir: str | Path, output: str | Path, train_frames: int, frames: Sequence[int] = (8, 16, 32),
                     num_eval: int = 100, seed: int = 0, world_arguments: Sequence[str] = ()) -> dict[str, Any]:
    """Accuracy per (frames, setting); written to ``output/length_table.json``. ``world_arguments`` are
    ``tools/make_synthetic.py`` flags of the world the model was trained in (``DemoRecipe.world_arguments``)."""
    out = Path(output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "commands.log"
    results: dict[str, Any] = {"train_frames": train_frames, "num_eval_clips": num_eval, "rows": []}
    variants: dict[float, Path] = {}
    for count in frames:
        data = out / f"eval_{count}"
        if not (data / "nextqa_mc.csv").is_file():
            run_command(tool_command("make_synthetic.py", "--output", str(data), "--seed", str(seed), "--frames", str(count),
                       "--num-train", "0", "--num-images", "0", "--num-dpo", "0", "--num-dpo-eval", "0",
                       "--num-eval", str(num_eval), *world_arguments), log=log)
        settings = {"auto": Path(model_dir), "factor 1": 1.0}
        if count > train_frames:
            settings[f"factor {count / train_frames:g}"] = count / train_frames
        for name, setting in settings.items():
            if isinstance(setting, float):
                if setting not in variants:
                    variants[setting] = rope_variant(model_dir=model_dir, output=out / f"rope_{setting:g}", factor=setting)
                setting = variants[setting]
            run_dir = out / f"T{count}_{name.replace(' ', '')}"
            if not (run_dir / "metrics.json").is_file():
                run_command(tool_command("eval_nextqa.py", "--model", str(setting), "--annotations", str(data / "nextqa_mc.csv"),
                           "--video-root", str(data / "videos"), "--task", "mc", "--frames", str(count), "--batch-size", "8",
                           "--num-workers", "0", "--no-progress", "--output", str(run_dir)), log=log)
            metrics = json.loads((run_dir / "metrics.json").read_text())
            results["rows"].append({"frames": count, "setting": name, "accuracy": metrics["overall"]["accuracy"],
                                    "per_type": {k: v["accuracy"] for k, v in metrics["per_type"].items()}})
    (out / "length_table.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def format_length_table(results: dict[str, Any]) -> str:
    """A Markdown table: one row per frame count, one column per setting."""
    settings = sorted({r["setting"] for r in results["rows"]}, key=lambda s: (s != "auto", s))
    lines = ["| frames | " + " | ".join(settings) + " |", "|---" * (len(settings) + 1) + "|"]
    for count in sorted({r["frames"] for r in results["rows"]}):
        cells = {r["setting"]: f"{r['accuracy']:.1f}" for r in results["rows"] if r["frames"] == count}
        lines.append(f"| {count} | " + " | ".join(cells.get(s, "-") for s in settings) + " |")
    return "\n".join(lines)
