"""The DPO objective: shared visual prefix == separate encoding; one tiny epoch learns the preference."""

import dataclasses
import json

import pytest
import torch

from llava_video.train.config import load_train_config
from llava_video.train.dpo import evaluate_preferences, pair_logprobs
from llava_video.train.losses import sequence_logprobs
from llava_video.train.trainer import Trainer
from llava_video.testing.tiny_preferences import write_preference_pairs

from tests.train.conftest import REPO


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    train = write_preference_pairs(root, name="train", num_pairs=16, seed=0)
    held_out = write_preference_pairs(root, name="heldout", num_pairs=8, seed=1)
    return root, train, held_out


def _config(root, train, out, *extra):
    overrides = [f"data.train={train}", f"data.video_root={root}", f"checkpoint.output_dir={out}", *extra]
    return load_train_config(REPO / "configs" / "tiny" / "dpo.yaml", overrides)


def test_recipes_validate():
    cfg = load_train_config(REPO / "configs" / "dpo" / "llava_next_video_dpo.yaml")
    assert cfg.objective.name == "dpo" and cfg.objective.options["beta"] == 0.1
    assert cfg.optim.lr == 5e-7 and cfg.schedule.epochs == 3 and cfg.optim.scheduler == "linear"
    assert cfg.optim.warmup_ratio == 0.1
    assert not cfg.parts.vision_tower.train and not cfg.parts.projector.train and cfg.parts.language_model.train
    assert cfg.distributed.deepspeed.endswith("zero2.json")


@pytest.mark.parametrize("packing", [True, False])
def test_shared_visual_prefix_equals_separate_encoding(pair_files, tmp_path, packing):
    root, train, _ = pair_files
    trainer = Trainer(_config(root, train, tmp_path / "run", f"batching.packing={str(packing).lower()}"))
    trainer.setup()
    try:
        model = trainer.model.eval()
        batch = trainer.objective.collate([trainer.dataset[i] for i in range(3)])
        with torch.no_grad():
            shared, _ = pair_logprobs(model, batch, device=torch.device("cpu"))
            separate = []
            for kind in ("chosen", "rejected"):
                for i in range(3):
                    sample = trainer.dataset[i]
                    ids, labels = getattr(sample, f"{kind}_ids")[None], getattr(sample, f"{kind}_labels")[None]
                    logits = model(ids, pixel_values_videos=[sample.video]).logits  # video encoded for this sequence alone
                    separate.append(sequence_logprobs(logits=logits, labels=labels).sums)
        torch.testing.assert_close(shared.sums, torch.cat(separate), atol=1e-4, rtol=1e-5)
        assert (shared.counts > 0).all()
    finally:
        trainer.cleanup()


def test_one_epoch_raises_reward_accuracy_and_held_out_margin(pair_files, tmp_path):
    root, train, held_out = pair_files
    cfg = _config(root, train, tmp_path / "run")
    trainer = Trainer(cfg)
    trainer.setup()
    try:
        held_cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, train=str(held_out)))
        held_ds = trainer.objective.build_dataset(config=held_cfg, model=trainer.model)
        cpu = torch.device("cpu")
        reference = trainer.objective.reference

        def measure(dataset):
            return evaluate_preferences(trainer.model, reference, dataset, device=cpu).metrics()

        train_before, held_before = measure(trainer.dataset), measure(held_ds)
        trainer.train()
        train_after, held_after = measure(trainer.dataset), measure(held_ds)
    finally:
        trainer.cleanup()
    print(f"train before {train_before}\ntrain after {train_after}\nheld-out before {held_before}\nheld-out after {held_after}")
    # Policy == reference at the start: every reward margin is exactly 0 (chance; no pair is preferred).
    assert train_before["rewards/ties"] == 1.0 and train_before["rewards/accuracies"] == 0.0
    assert train_after["rewards/accuracies"] >= 0.9
    assert held_after["logps/margin"] > held_before["logps/margin"]
    assert held_after["rewards/margins"] > 0
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"} <= set(logged[-1])
    assert trainer.state.step == 4  # one epoch of 16 pairs in batches of 4
