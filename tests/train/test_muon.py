"""Muon for weight matrices, AdamW for the rest (llava_video.train.muon), and the trainer's use of it."""

import json
import math

import pytest
import torch

from llava_video.errors import ConfigError
from llava_video.train.config import load_train_config
from llava_video.train.muon import MuonWithAdamW, orthogonalize
from llava_video.train.trainer import Trainer, run_training

from tests.train.conftest import REPO, data_overrides


def test_orthogonalize_maps_singular_values_near_one_and_keeps_the_singular_vectors():
    torch.manual_seed(0)
    m = torch.randn(16, 48) @ torch.diag(torch.logspace(-2, 1, 48))  # badly conditioned on purpose
    out = orthogonalize(m)
    s = torch.linalg.svdvals(out)
    assert s.min() > 0.5 and s.max() < 1.3, s  # the quintic iteration lands singular values in ~[0.7, 1.2]
    u, _, vh = torch.linalg.svd(m, full_matrices=False)
    polar = u @ vh  # the exact nearest semi-orthogonal matrix
    cosine = (out * polar).sum() / (out.norm() * polar.norm())
    assert cosine > 0.9, cosine
    # Tall and wide matrices are the same computation, transposed.
    assert torch.allclose(orthogonalize(m.T), out.T, atol=1e-6)


def test_adamw_groups_step_exactly_as_torch_adamw():
    torch.manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(3))]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    opt = MuonWithAdamW([{"params": ours, "weight_decay": 0.1}], lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    ref_opt = torch.optim.AdamW([{"params": ref, "weight_decay": 0.1}], lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    for step in range(4):
        grads = [torch.randn_like(p) for p in ours]
        for p, q, g in zip(ours, ref, grads):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        ref_opt.step()
        for p, q in zip(ours, ref):
            assert torch.allclose(p, q, atol=1e-6), step


def test_muon_step_has_adamw_like_rms_and_decoupled_decay():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(16, 48))
    before = w.detach().clone()
    opt = MuonWithAdamW([{"params": [w], "muon": True, "weight_decay": 0.0}], lr=1e-3)
    w.grad = torch.randn(16, 48)
    opt.step()
    rms = (w.detach() - before).pow(2).mean().sqrt().item()
    # An orthogonalised 16 x 48 update has RMS 1/sqrt(48); scaled by 0.2 * sqrt(48) it is ~0.2 * lr.
    assert rms == pytest.approx(0.2e-3, rel=0.3), rms

    v = torch.nn.Parameter(torch.ones(4, 4))
    decay = MuonWithAdamW([{"params": [v], "muon": True, "weight_decay": 0.5}], lr=0.1)
    v.grad = torch.zeros(4, 4)  # no gradient signal: only the decay moves it
    decay.step()
    assert torch.allclose(v.detach(), torch.full((4, 4), 1 - 0.1 * 0.5), atol=1e-6)


def test_muon_groups_take_matrices_only():
    with pytest.raises(ValueError, match="2-D"):
        MuonWithAdamW([{"params": [torch.nn.Parameter(torch.zeros(3))], "muon": True}], lr=1e-3)


def test_config_checks_the_optimizer_name_and_muon_with_deepspeed(tiny_data, tmp_path):
    base = [*data_overrides(tiny_data), f"checkpoint.output_dir={tmp_path}"]
    with pytest.raises(ConfigError, match="optim.name"):
        load_train_config(REPO / "configs/tiny/stage1.yaml", [*base, "optim.name=sgd"])
    with pytest.raises(ConfigError, match="muon_lr_scale"):
        load_train_config(REPO / "configs/tiny/stage1.yaml", [*base, "optim.muon_lr_scale=0"])
    ds = tmp_path / "ds.json"
    ds.write_text(json.dumps({"zero_optimization": {"stage": 2}}))
    with pytest.raises(ConfigError, match="deepspeed"):
        load_train_config(REPO / "configs/tiny/stage1.yaml", [*base, "optim.name=muon", f"distributed.deepspeed={ds}"])


def _losses(run_dir):
    return {r["step"]: r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())}


@pytest.mark.slow
def test_trainer_puts_linear_weights_under_muon_and_resumes_exactly(tiny_data, tmp_path, tiny_recipe):
    extra = ["optim.name=muon", "optim.lr=1e-3", "optim.muon_lr_scale=2.0", "parts.language_model.train=true", "parts.vision_tower.train=true",
             "schedule.max_steps=6", "batching.batch_size=3", "checkpoint.save_every=3", "checkpoint.keep_last=2"]
    trainer = Trainer(tiny_recipe("stage1", tiny_data, tmp_path / "groups", *extra))
    trainer.setup()
    trainer.cleanup()
    kinds = {g["name"]: g.get("muon", False) for g in trainer.optimizer.param_groups}
    assert kinds["language_model_muon"] and kinds["projector_muon"] and kinds["vision_tower_muon"]
    assert not kinds["language_model"] and not kinds["language_model_no_decay"]
    base_lrs = {g["name"]: g["initial_lr"] for g in trainer.optimizer.param_groups}  # before the schedule's factor
    assert base_lrs["language_model_muon"] == pytest.approx(2e-3) and base_lrs["language_model"] == pytest.approx(1e-3)
    muon_ids = {id(p) for g in trainer.optimizer.param_groups if g.get("muon") for p in g["params"]}
    lm = trainer.model.language_model
    # Embeddings and the LM head stay with AdamW; attention and MLP matrices go to Muon.
    assert id(lm.get_input_embeddings().weight) not in muon_ids
    assert id(lm.get_output_embeddings().weight) not in muon_ids
    assert all(p.ndim == 2 for g in trainer.optimizer.param_groups if g.get("muon") for p in g["params"])
    assert sum(p.numel() for p in trainer.model.parameters() if id(p) in muon_ids) > 0

    whole = run_training(tiny_recipe("stage1", tiny_data, tmp_path / "whole", *extra))
    expected = _losses(tmp_path / "whole")
    assert whole.steps == 6 and all(math.isfinite(v) for v in expected.values())
    assert sum(list(expected.values())[-2:]) < sum(list(expected.values())[:2])  # it learns

    # A new run resumed from checkpoint 3 (optimizer state included) gives the same losses to the last step.
    resumed_dir = tmp_path / "resumed"
    run_training(tiny_recipe("stage1", tiny_data, resumed_dir, *extra, f"checkpoint.resume={_ckpt(tmp_path / 'whole', 3)}"))
    got = _losses(resumed_dir)
    for step in (4, 5, 6):
        assert got[step] == pytest.approx(expected[step], abs=1e-6), (step, got[step], expected[step])


def _ckpt(run_dir, step):
    return run_dir / f"checkpoint-{step:08d}"
