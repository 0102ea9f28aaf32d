"""The DPO loss and the log-prob helper: golden values, and equality with trl 1.16's sigmoid DPO (loss and grads)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from llava_video.errors import ConfigError, InputError
from llava_video.train.losses import DPOLoss, DPOLossConfig, dpo_loss, sequence_logprobs


def _logps(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_dpo_loss_golden_values() -> None:
    # h = (-1 - -2) - (-3 - -2.5) = 1.5 ; beta*h = 0.15 ; loss = log(1 + e^-0.15)
    out = dpo_loss(
        policy_chosen_logps=_logps(-1.0, -4.0),
        policy_rejected_logps=_logps(-3.0, -2.0),
        reference_chosen_logps=_logps(-2.0, -3.0),
        reference_rejected_logps=_logps(-2.5, -2.0),
    )
    # pair 2: h = (-4 - -3) - (-2 - -2) = -1 ; beta*h = -0.1
    expected = (math.log1p(math.exp(-0.15)) + math.log1p(math.exp(0.1))) / 2
    assert out.loss.item() == pytest.approx(expected, rel=1e-12)
    assert out.chosen_rewards.tolist() == pytest.approx([0.1, -0.1])
    assert out.rejected_rewards.tolist() == pytest.approx([-0.05, 0.0])
    metrics = out.metrics()
    assert metrics["rewards/accuracies"] == 0.5
    assert metrics["rewards/margins"] == pytest.approx((0.15 - 0.1) / 2)
    assert metrics["losses/sft"] == 0.0


def test_label_smoothing_and_sft_term_golden() -> None:
    config = DPOLossConfig(beta=0.5, label_smoothing=0.2, dpo_alpha=2.0, gamma=0.5)
    out = dpo_loss(
        policy_chosen_logps=_logps(-6.0),
        policy_rejected_logps=_logps(-5.0),
        reference_chosen_logps=_logps(-7.0),
        reference_rejected_logps=_logps(-4.0),
        chosen_token_counts=torch.tensor([3]),
        config=config,
    )
    z = 0.5 * ((-6.0 + 7.0) - (-5.0 + 4.0))  # 1.0
    dpo = -0.8 * math.log(1 / (1 + math.exp(-z))) - 0.2 * math.log(1 / (1 + math.exp(z)))
    sft = 6.0 / 3
    assert out.dpo_loss.item() == pytest.approx(dpo, rel=1e-12)
    assert out.sft_loss.item() == pytest.approx(sft, rel=1e-12)
    assert out.loss.item() == pytest.approx(2.0 * dpo + 0.5 * sft, rel=1e-12)


def test_reference_gets_no_gradient_and_module_matches_function() -> None:
    pc = _logps(-1.0, -2.0).requires_grad_()
    ref_c = _logps(-1.5, -2.5).requires_grad_()
    args = dict(policy_chosen_logps=pc, policy_rejected_logps=_logps(-2.0, -1.0),
                reference_chosen_logps=ref_c, reference_rejected_logps=_logps(-2.0, -1.0))
    out = DPOLoss(DPOLossConfig(beta=0.3))(**args)
    out.loss.backward()
    assert ref_c.grad is None
    # d/dpc of mean(-logsigmoid(beta*h)) = -beta * sigmoid(-beta*h) / n
    h = torch.tensor([0.5, 0.5], dtype=torch.float64)
    assert torch.allclose(pc.grad, -0.3 * torch.sigmoid(-0.3 * h) / 2)


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ConfigError, match="beta"):
        DPOLossConfig(beta=0.0)
    with pytest.raises(ConfigError, match="label_smoothing"):
        DPOLossConfig(label_smoothing=0.5)
    with pytest.raises(InputError, match="1-D"):
        dpo_loss(policy_chosen_logps=_logps(1.0), policy_rejected_logps=_logps(1.0, 2.0),
                 reference_chosen_logps=_logps(1.0), reference_rejected_logps=_logps(1.0))
    with pytest.raises(InputError, match="chosen_token_counts"):
        dpo_loss(policy_chosen_logps=_logps(1.0), policy_rejected_logps=_logps(1.0),
                 reference_chosen_logps=_logps(1.0), reference_rejected_logps=_logps(1.0),
                 config=DPOLossConfig(gamma=1.0))


def test_sequence_logprobs_matches_cross_entropy() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[-100, -100, 3, 4, 1], [-100, 2, 6, -100, -100]])
    out = sequence_logprobs(logits=logits, labels=labels)
    assert out.counts.tolist() == [3, 2]
    for row in range(2):
        ce = F.cross_entropy(logits[row, :-1], labels[row, 1:], ignore_index=-100, reduction="sum")
        assert out.sums[row].item() == pytest.approx(-ce.item(), rel=1e-5)
    # A bf16 input is scored in float32.
    assert sequence_logprobs(logits=logits.bfloat16(), labels=labels).sums.dtype == torch.float32


def test_sequence_logprobs_packed_equals_unpacked() -> None:
    torch.manual_seed(1)
    vocab = 9
    a_logits, b_logits = torch.randn(1, 4, vocab), torch.randn(1, 5, vocab)
    a_labels = torch.tensor([[-100, 2, 3, 4]])
    b_labels = torch.tensor([[-100, -100, 5, 6, 7]])
    packed = sequence_logprobs(
        logits=torch.cat([a_logits, b_logits], dim=1),
        labels=torch.cat([a_labels, b_labels], dim=1),
        segment_ids=torch.tensor([[0] * 4 + [1] * 5]),
    )
    a = sequence_logprobs(logits=a_logits, labels=a_labels)
    b = sequence_logprobs(logits=b_logits, labels=b_labels)
    assert packed.counts.tolist() == [3, 3]
    assert torch.allclose(packed.sums, torch.cat([a.sums, b.sums]), atol=1e-6)
    with pytest.raises(InputError, match="labels shape"):
        sequence_logprobs(logits=a_logits, labels=b_labels)


# ---------------------------------------------------------------------------------------------------------------------
# Against trl 1.16: its DPOTrainer computes the loss inline in compute_loss, so a minimal trainer is built offline with
# a tiny random Llama policy, an explicit (different) reference model and a tokenizer trained in-process.


def _tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    corpus = ["what is the red ball doing", "it rolls left", "it jumps up high", "a cat sits", "the dog runs"] * 4
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=80, special_tokens=["<unk>", "<pad>", "</s>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="</s>")


def _tiny_llama(vocab_size: int, seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def test_loss_and_gradients_equal_trl_sigmoid_dpo(tmp_path) -> None:
    datasets = pytest.importorskip("datasets")
    from trl import DPOConfig, DPOTrainer

    tokenizer = _tiny_tokenizer()
    policy = _tiny_llama(len(tokenizer), seed=0)
    reference = _tiny_llama(len(tokenizer), seed=1)
    data = datasets.Dataset.from_dict({
        "prompt": ["what is the red ball doing", "a cat sits", "the dog runs"],
        "chosen": [" it rolls left", " it jumps up high", " it rolls"],
        "rejected": [" a cat sits", " the dog", " what is the red ball doing"],
    })
    args = DPOConfig(output_dir=str(tmp_path), beta=0.1, loss_type=["sigmoid"], report_to=[], use_cpu=True,
                     per_device_train_batch_size=3, dataset_num_proc=None, disable_dropout=True)
    trainer = DPOTrainer(model=policy, ref_model=reference, args=args, train_dataset=data,
                         processing_class=tokenizer)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    batch = {k: v for k, v in batch.items()}

    trl_loss = trainer.compute_loss(policy, batch)
    trl_loss.backward()
    trl_grads = {n: p.grad.clone() for n, p in policy.named_parameters()}
    policy.zero_grad()

    # Ours: plain forwards (no fused head), labels = completion tokens only, our helper and our loss.
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    forward = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    policy_lp = sequence_logprobs(logits=policy(**forward).logits, labels=labels)
    with torch.no_grad():
        reference_lp = sequence_logprobs(logits=reference(**forward).logits, labels=labels)
    chosen, rejected = policy_lp.sums.chunk(2)  # trl's batch is [chosen..., rejected...]
    ref_chosen, ref_rejected = reference_lp.sums.chunk(2)
    ours = dpo_loss(policy_chosen_logps=chosen, policy_rejected_logps=rejected,
                    reference_chosen_logps=ref_chosen, reference_rejected_logps=ref_rejected,
                    config=DPOLossConfig(beta=0.1))
    ours.loss.backward()

    assert ours.loss.item() == pytest.approx(trl_loss.item(), rel=1e-5, abs=1e-6)
    assert abs(ours.loss.item() - math.log(2)) > 1e-4  # policy != reference, so the comparison is not trivial
    for name, param in policy.named_parameters():
        assert torch.allclose(param.grad, trl_grads[name], rtol=1e-4, atol=1e-7), name
    # The metrics trl logged for that step match ours.
    mode = "train" if policy.training else "eval"  # trl files metrics under the model's mode
    logged = {k: v[-1] for k, v in trainer._metrics[mode].items()}
    mine = ours.metrics()
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        assert mine[key] == pytest.approx(logged[key], rel=1e-4, abs=1e-7), key
