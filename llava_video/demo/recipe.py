"""The demo recipe end to end, through the toolkit's own entry points (each stage is the command a user
would type; see docs/demo.md):

    data     tools/make_synthetic.py          the synthetic world: clips, stills, stage-1/2 records, CSVs, prompts
    init     write_initial_model              a random model with a tokenizer trained on the world's text
    stage1   tools/train.py configs/demo/stage1.yaml   captions, every part trains (nothing is pretrained)
    stage2_open   tools/train.py configs/demo/stage2_open.yaml   mixed image + video QA, open questions only
    stage2   tools/train.py configs/demo/stage2.yaml   the same, with multiple-choice turns mixed in
    eval_stage2   tools/eval_nextqa.py --task mc       held-out multiple choice
    sample   tools/sample_candidates.py       K answers per DPO prompt
    judge    tools/judge.py --backend rule    the synthetic rule judge with the ground-truth caption
    pairs    tools/build_pairs.py             best vs worst per prompt
    dpo      tools/train.py configs/demo/dpo.yaml
    drop_media_cache   delete the training stages' decoded clips (unless keep_media_cache=True)
    eval_dpo tools/eval_nextqa.py --task mc
    judge_scores  greedy answers to held-out DPO prompts, judged, before vs after DPO
    install  copy the final model into llava_video/assets/demo (only with install=True)

Every stage's wall time goes into ``<output>/report.json`` (rewritten atomically after each stage); a
rerun skips the stages the report already lists as done.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal

import yaml

from llava_video.atomic import write_json_atomic
from llava_video.errors import ConfigError, LlavaVideoError

if TYPE_CHECKING:
    from llava_video.synthetic.world import WorldConfig

__all__ = ["DemoRecipe", "DemoData", "DemoDPO", "DemoEval", "load_demo_recipe", "run_demo_recipe", "install_model", "run_command", "tool_command", "remove_media_cache", "REPO_ROOT", "DEMO_ASSET_DIR"]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_ASSET_DIR = REPO_ROOT / "llava_video" / "assets" / "demo"
# Files of a model folder that ship (the llava-hf layout plus our typed config).
_MODEL_FILES = ("config.json", "llava_video_config.json", "model.safetensors", "preprocessor_config.json",
                "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


@dataclass(frozen=True)
class DemoData:
    """``data:`` of recipe.yaml: the world and ``tools/make_synthetic.py``'s sizes and mixes (flags of the same
    names). Every key is required: recipe.yaml is the one place the demo's data is defined. Read, like the other
    sections, by the training recipes' ``build_config`` (unknown, missing and mistyped keys are errors)."""

    size: int
    background: tuple[int, ...]
    shapes: tuple[str, ...]
    min_objects: int
    max_objects: int
    train_count_weights: tuple[float, ...]
    num_train: int
    num_images: int
    num_eval: int
    num_dpo: int
    num_dpo_eval: int
    num_dpo_clips: int
    turns: int
    caption_share: float
    brief_caption_share: float
    mc_share: float
    mc_answer: Literal["letter", "text"]
    kind_weights: dict[str, float]
    long_frames: int
    long_share: float


@dataclass(frozen=True)
class DemoDPO:
    """``dpo:`` of recipe.yaml: candidate sampling and pair building (the DPO training run is dpo.yaml)."""

    num_samples: int
    temperature: float
    caption_share: float
    max_new_tokens: int
    min_margin: int


@dataclass(frozen=True)
class DemoEval:
    """``eval:`` of recipe.yaml."""

    batch_size: int


@dataclass(frozen=True)
class DemoRecipe:
    """``configs/demo/recipe.yaml``: the settings the stage recipes do not hold."""

    seed: int
    frames: int
    data: DemoData
    dpo: DemoDPO
    eval: DemoEval
    config_dir: Path

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ConfigError(f"recipe frames must be >= 1, got {self.frames}")
        for name in ("stage1.yaml", "stage2_open.yaml", "stage2.yaml", "dpo.yaml", "model.yaml"):
            if not (self.config_dir / name).is_file():
                raise ConfigError(f"{self.config_dir / name}: missing")
        self.world()  # validates the world's keys now, not at the data stage
        if self.data.train_count_weights:
            from llava_video.synthetic.world import check_count_weights

            check_count_weights(self.data.train_count_weights, min_objects=self.data.min_objects,
                                max_objects=self.data.max_objects, name="data.train_count_weights")
        from llava_video.synthetic.export import check_kind_weights

        check_kind_weights(self.data.kind_weights.items(), name="data.kind_weights")

    @property
    def sft_frames(self) -> int:
        """``data.num_frames`` of the SFT stages: enough for the long clips, which then yield all their frames
        while the others yield their ``frames`` (short clips are never padded). Sampling, DPO and evaluation
        use ``frames``."""
        return max(self.frames, self.data.long_frames) if self.data.long_share > 0 else self.frames

    def world(self) -> "WorldConfig":
        """The synthetic world of this recipe's data (also what ``examples/clip.mp4`` and the tests render)."""
        from llava_video.synthetic.world import WorldConfig

        d = self.data
        return WorldConfig(size=d.size, min_objects=d.min_objects, max_objects=d.max_objects, shapes=d.shapes,
                           background=d.background)

    def world_arguments(self) -> list[str]:
        """:meth:`world` as ``tools/make_synthetic.py`` flags."""
        world = self.world()
        return ["--size", str(world.size), "--min-objects", str(world.min_objects), "--max-objects", str(world.max_objects),
                "--shapes", ",".join(world.shapes), "--background", ",".join(str(v) for v in world.background)]

    def data_arguments(self) -> list[str]:
        """The whole ``data:`` section (and the DPO prompts' caption share) as ``tools/make_synthetic.py`` flags."""
        d = self.data
        sizes = {"--num-train": d.num_train, "--num-images": d.num_images, "--num-eval": d.num_eval, "--num-dpo": d.num_dpo,
                 "--num-dpo-eval": d.num_dpo_eval, "--num-dpo-clips": d.num_dpo_clips, "--turns": d.turns, "--caption-share": d.caption_share,
                 "--brief-caption-share": d.brief_caption_share, "--mc-share": d.mc_share, "--mc-answer": d.mc_answer, "--long-frames": d.long_frames,
                 "--long-share": d.long_share, "--dpo-caption-share": self.dpo.caption_share,
                 "--kind-weights": ",".join(f"{kind}={weight}" for kind, weight in d.kind_weights.items())}
        if d.train_count_weights:
            sizes["--train-count-weights"] = ",".join(str(w) for w in d.train_count_weights)
        return [part for flag, value in sizes.items() for part in (flag, str(value))] + self.world_arguments()


def load_demo_recipe(config_dir: str | Path) -> DemoRecipe:
    config_dir = Path(config_dir)
    path = config_dir / "recipe.yaml"
    if not path.is_file():
        raise ConfigError(f"{path}: missing")
    raw = yaml.safe_load(path.read_text()) or {}
    known = {"seed", "frames", "data", "dpo", "eval"}
    if not isinstance(raw, dict) or set(raw) != known:
        keys = set(raw) if isinstance(raw, dict) else set()
        raise ConfigError(f"{path}: needs exactly the keys {', '.join(sorted(known))}"
                          + (f"; unknown: {', '.join(sorted(keys - known))}" if keys - known else "")
                          + (f"; missing: {', '.join(sorted(known - keys))}" if known - keys else ""))
    for key in ("seed", "frames"):
        if not isinstance(raw[key], int) or isinstance(raw[key], bool):
            raise ConfigError(f"{path}: {key} must be an integer, got {raw[key]!r}")
    from llava_video.config_builder import build_config

    try:
        sections = {name: build_config(cls, raw[name], prefix=name)
                    for name, cls in (("data", DemoData), ("dpo", DemoDPO), ("eval", DemoEval))}
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return DemoRecipe(seed=raw["seed"], frames=raw["frames"], config_dir=config_dir, **sections)


def tool_command(name: str, *args: str) -> list[str]:
    return [sys.executable, str(REPO_ROOT / "tools" / name), *args]


def run_command(command: list[str], *, log: Path) -> None:
    """Run one stage's command from the repository root, its output appended to ``log``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    with log.open("a") as handle:
        handle.write("$ " + " ".join(command) + "\n")
        handle.flush()
        code = subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise LlavaVideoError(f"stage command failed with exit code {code} (see {log}): {' '.join(command)}")


def _model_dir(run_dir: Path) -> Path:
    from llava_video.train.trainer import resolve_model_path

    return resolve_model_path(run_dir)


def _mc_metrics(eval_dir: Path) -> dict[str, Any]:
    return json.loads((eval_dir / "metrics.json").read_text())


def run_demo_recipe(*, output: str | Path, config_dir: str | Path = REPO_ROOT / "configs" / "demo", install: bool = False,
                    keep_media_cache: bool = False, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every stage into ``output``; returns the report (stage times, accuracies, judge scores).

    The training stages' decoded-clip cache (``output/media_cache``, ~4.4 GB) is deleted once the last of them
    (DPO) is done, unless ``keep_media_cache``: nothing after them reads it, and a few kept runs fill a disk."""
    recipe = load_demo_recipe(config_dir)
    out = Path(output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "commands.log"
    report_path = out / "report.json"
    report: dict[str, Any] = json.loads(report_path.read_text(encoding="utf-8")) if report_path.is_file() else {"stages": {}}
    data, frames, seed = out / "data", str(recipe.frames), str(recipe.seed)
    cfg = recipe.config_dir
    # Decoded clips are kept on disk for the later SFT stages (and a rerun of them): each reads every clip, and
    # decoding them again costs about half a minute a stage. Stage drop_media_cache deletes them after DPO.
    common = [f"data.image_root={data}", f"data.video_root={data}", f"runtime.seed={recipe.seed}",
              f"data.media_cache_dir={out / 'media_cache'}"]

    def train(config: str, *, init: Path, records: Path, output: Path, num_frames: int) -> None:
        """One training stage: ``tools/train.py`` on a stage recipe, from ``init``'s latest model."""
        run_command(tool_command(
            "train.py", "--config", str(cfg / config), f"model.path={init}", f"data.train={records}",
            f"data.num_frames={num_frames}", f"checkpoint.output_dir={output}", "logging.progress=false", *common), log=log)

    def eval_mc(model_run: Path, name: str) -> list[str]:
        return tool_command("eval_nextqa.py", "--model", str(_model_dir(model_run)), "--annotations", str(data / "nextqa_mc.csv"),
                     "--video-root", str(data / "videos"), "--task", "mc", "--frames", frames,
                     "--batch-size", str(recipe.eval.batch_size), "--num-workers", "0", "--no-progress",
                     "--output", str(out / name))

    stages: list[tuple[str, Callable[[], dict[str, Any] | None]]] = [
        ("data", lambda: run_command(tool_command(
            "make_synthetic.py", "--output", str(data), "--seed", seed, "--frames", frames, *recipe.data_arguments()), log=log)),
        ("init", lambda: _init(cfg=cfg, data=data, out=out, seed=recipe.seed)),
        ("stage1", lambda: train("stage1.yaml", init=out / "init", records=data / "stage1.json", output=out / "stage1",
                                   num_frames=recipe.sft_frames)),
        ("stage2_open", lambda: train("stage2_open.yaml", init=out / "stage1", records=data / "stage2_open.json",
                                      output=out / "stage2_open", num_frames=recipe.sft_frames)),
        ("stage2", lambda: train("stage2.yaml", init=out / "stage2_open", records=data / "stage2.json", output=out / "stage2",
                                 num_frames=recipe.sft_frames)),
        ("eval_stage2", lambda: (run_command(eval_mc(out / "stage2", "eval_stage2"), log=log), _mc_metrics(out / "eval_stage2"))[1]),
        ("sample", lambda: run_command(tool_command(
            "sample_candidates.py", "--model", str(_model_dir(out / "stage2")), "--prompts", str(data / "dpo_prompts.jsonl"),
            "--output", str(out / "dpo" / "candidates.jsonl"), "--num-samples", str(recipe.dpo.num_samples),
            "--temperature", str(recipe.dpo.temperature), "--max-new-tokens", str(recipe.dpo.max_new_tokens),
            "--frames", frames, "--batch-size", str(recipe.dpo.num_samples), "--seed", seed, "--no-progress"), log=log)),
        ("judge", lambda: run_command(tool_command(
            "judge.py", "--candidates", str(out / "dpo" / "candidates.jsonl"), "--output", str(out / "dpo" / "judged.jsonl"),
            "--backend", "rule", "--rule", "llava_video.synthetic.rule_judge:judge_rule", "--no-cache", "--no-progress"), log=log)),
        ("pairs", lambda: (run_command(tool_command(
            "build_pairs.py", "--judged", str(out / "dpo" / "judged.jsonl"), "--output", str(out / "dpo" / "pairs.jsonl"),
            "--min-margin", str(recipe.dpo.min_margin)), log=log),
            json.loads((out / "dpo" / "pairs.jsonl.report.json").read_text()))[1]),
        ("dpo", lambda: train("dpo.yaml", init=out / "stage2", records=out / "dpo" / "pairs.jsonl", output=out / "dpo" / "train",
                              num_frames=recipe.frames)),
        *([] if keep_media_cache else [("drop_media_cache", lambda: remove_media_cache(out / "media_cache"))]),
        ("eval_dpo", lambda: (run_command(eval_mc(out / "dpo" / "train", "eval_dpo"), log=log), _mc_metrics(out / "eval_dpo"))[1]),
        ("judge_scores", lambda: _judge_scores(out=out, data=data, frames=recipe.frames,
                                               max_new_tokens=recipe.dpo.max_new_tokens,
                                               batch_size=recipe.eval.batch_size)),
    ]
    if install:
        stages.append(("install", lambda: {"installed": str(install_model(_model_dir(out / "dpo" / "train")))}))
    for name, stage in stages:
        if report["stages"].get(name, {}).get("done"):
            echo(f"[demo] {name}: done before, skipped")
            continue
        echo(f"[demo] {name} ...")
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        result = stage()
        seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
        report["stages"][name] = {"done": True, "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
                                  **({"result": result} if result else {})}
        report["total_seconds"] = round(sum(s["seconds"] for s in report["stages"].values()), 1)
        write_json_atomic(report_path, report)
        echo(f"[demo] {name}: {seconds:.1f} s")
    return report


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished children: the work a stage did, which on
    a shared machine says more about its cost on 2 free cores than its wall time does."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _init(*, cfg: Path, data: Path, out: Path, seed: int) -> dict[str, Any]:
    from llava_video.demo.initial import write_initial_model
    from llava_video.train.config import load_train_config

    # The tokenizer gets the markers of the template stage 1 trains with (the later stages inherit it).
    template = load_train_config(cfg / "stage1.yaml").model.conv_template
    path = write_initial_model(model_config=cfg / "model.yaml", data_dir=data, output=out / "init", seed=seed,
                               template=template)
    return {"model": str(path)}


def _judge_scores(*, out: Path, data: Path, frames: int, max_new_tokens: int, batch_size: int) -> dict[str, Any]:
    from llava_video.demo.judge_eval import greedy_judge_scores, paired_score_difference

    prompts = data / "dpo_eval_prompts.jsonl"
    result: dict[str, Any] = {
        name: greedy_judge_scores(model_dir=_model_dir(run), prompts=prompts, frames=frames, max_new_tokens=max_new_tokens,
                                  batch_size=batch_size, output=out / f"greedy_{name}.jsonl")
        for name, run in (("stage2", out / "stage2"), ("dpo", out / "dpo" / "train"))
    }
    rows = {name: [json.loads(line) for line in (out / f"greedy_{name}.jsonl").read_text().splitlines()]
            for name in ("stage2", "dpo")}
    result["dpo_minus_stage2"] = paired_score_difference(rows["stage2"], rows["dpo"])
    return result


def remove_media_cache(path: str | Path) -> dict[str, Any]:
    """Delete a decoded-clip cache folder; returns what it held (``files``, ``bytes``; zeros when absent)."""
    path = Path(path)
    if not path.is_dir():
        return {"path": str(path), "files": 0, "bytes": 0}
    files = [f for f in path.rglob("*") if f.is_file()]
    freed = sum(f.stat().st_size for f in files)
    shutil.rmtree(path)
    return {"path": str(path), "files": len(files), "bytes": freed}


def install_model(model_dir: str | Path, *, target: Path = DEMO_ASSET_DIR) -> Path:
    """Copy a trained model folder's shipped files into ``target`` (replacing what is there)."""
    model_dir = Path(model_dir)
    if not (model_dir / "model.safetensors").is_file():
        raise LlavaVideoError(f"{model_dir}: no model.safetensors to install")
    staging = target.with_name(target.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in _MODEL_FILES:
        if (model_dir / name).is_file():
            shutil.copyfile(model_dir / name, staging / name)
    shutil.rmtree(target, ignore_errors=True)
    staging.replace(target)
    return target
