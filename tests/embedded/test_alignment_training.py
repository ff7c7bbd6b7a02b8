"""Tiny-real-model training tests: steps change the weights and lower the loss; saved folders reload."""


import numpy as np
import pytest
import torch

from alignment.config import DPOConfig, RewardConfig
from alignment.dpo import load_policy, sequence_logprobs, train_dpo
from alignment.reward import load_reward_model, score_texts, train_reward_model
from alignment.sanity import known_rule_preferences, run_sanity


@pytest.fixture(scope="module")
def rule_pairs():
    return known_rule_preferences(16, 8, seed=3)


def test_known_rule_pairs_are_split_by_dilemma_and_phrasing(rule_pairs):
    train, held = rule_pairs
    assert not set(train["dilemma_id"]) & set(held["dilemma_id"])
    closing = lambda df: {r.split(". ")[-1] for r in df["response_a"].to_list() + df["response_b"].to_list()}  # noqa: E731
    assert not closing(train) & closing(held)
    assert set(train["p_a"].round(2).to_list()) == {0.95, 0.05}


def test_reward_model_step_changes_weights_lowers_loss_and_reloads(rule_pairs, tmp_path):
    train, held = rule_pairs
    model, _ = load_reward_model(__import__("alignment.reward", fromlist=["x"]).backbone_path("minilm"), seed=0)
    before = model.classifier.weight.detach().clone()
    report = train_reward_model(train, held, RewardConfig(epochs=4, batch_size=8, lr=1e-4), tmp_path / "rm")
    assert report["train_loss_last"] < report["train_loss_first"]
    assert report["train"]["accuracy"] >= 0.75
    reloaded, tok = load_reward_model(tmp_path / "rm", seed=123)  # head comes from the folder, not the seed
    assert not torch.equal(reloaded.classifier.weight.detach().cpu(), before)
    prompts, responses = held["prompt"].to_list()[:4], held["response_a"].to_list()[:4]
    again, _ = load_reward_model(tmp_path / "rm", seed=7)
    assert np.allclose(score_texts(reloaded, tok, prompts, responses, 256), score_texts(again, tok, prompts, responses, 256),
                       atol=1e-5)


def test_reward_model_on_the_embedded_policy_backbone(rule_pairs, tmp_path):
    train, held = rule_pairs
    tiny = train[:4]
    report = train_reward_model(tiny, held[:4], RewardConfig(backbone="policy", epochs=3, batch_size=4, lr=1e-4),
                                tmp_path / "rm_policy")
    assert report["train_loss_last"] < report["train_loss_first"]  # three steps on the same batch
    from transformers import AutoModelForSequenceClassification

    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm_policy")
    assert reloaded.config.num_labels == 1 and reloaded.config.model_type == "llama"


def test_dpo_step_changes_weights_and_raises_margin_on_training_pairs(rule_pairs, tmp_path):
    train, held = rule_pairs
    cfg = DPOConfig(batch_size=8, lr=5e-4, max_length=256, epochs=2)
    report = train_dpo(train, held, cfg, tmp_path / "policy")
    assert report["eval_margin_before"] == pytest.approx(0.0, abs=1e-6)  # policy == reference at the start
    assert report["train_margin_after"] > 0 and report["train_loss_last"] < report["train_loss_first"]
    base, tok = load_policy(None, DPOConfig(lora=False))
    tuned, _ = load_policy(tmp_path / "policy", DPOConfig(lora=False))
    assert any(not torch.equal(a, b) for a, b in zip(base.state_dict().values(), tuned.state_dict().values(), strict=True))
    with torch.no_grad():
        lp1 = sequence_logprobs(tuned, tok, held["prompt"].to_list()[:2], held["response_a"].to_list()[:2], 256)
        again, _ = load_policy(tmp_path / "policy", DPOConfig(lora=False))
        lp2 = sequence_logprobs(again, tok, held["prompt"].to_list()[:2], held["response_a"].to_list()[:2], 256)
    assert torch.allclose(lp1, lp2, atol=1e-4)


@pytest.mark.slow  # ~4.5 min on 2 cores; `make test-slow` (and CI) run it
def test_sanity_experiment_learns_the_planted_rule(tmp_path):
    """The sanity figures of docs/loop.md, at test size: RM well above chance on unseen dilemmas and phrasings;
    one DPO epoch raises the held-out implicit reward margin."""
    report = run_sanity(tmp_path, n_train=32, n_eval=16, seed=0,
                        reward=RewardConfig(epochs=3, batch_size=16, lr=1e-4),
                        dpo=DPOConfig(epochs=1, batch_size=8, lr=1e-3, max_length=256))
    assert report["reward_model"]["eval"]["accuracy"] >= 0.75
    assert report["dpo"]["eval_margin_after"] > report["dpo"]["eval_margin_before"] + 0.05
