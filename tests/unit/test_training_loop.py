"""The optimiser loop shared by the reward model and DPO (alignment/training.py), on a toy scorer:
schedule, clipping, per-step log and progress, checkpoints and resume, determinism."""

from __future__ import annotations

import json
import logging

import numpy as np
import polars as pl
import pytest
import torch

from alignment import training
from alignment.config import RewardConfig
from alignment.losses import LOSSES


def toy_pairs(n: int = 24, seed: int = 0) -> pl.DataFrame:
    """Pairs of 4-feature answers; A is preferred (soft label 0.9) when its first feature is larger."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(n, 4)), rng.normal(size=(n, 4))
    return pl.DataFrame({"a": a.tolist(), "b": b.tolist(), "p_a": np.where(a[:, 0] > b[:, 0], 0.9, 0.1)})


def toy_model() -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(4, 1))  # dropout: the loop's RNG matters


def stepper(model, scale: float = 1.0, fail_at: int | None = None):
    calls = [0]

    def pair_step(run: torch.nn.Module, rows: pl.DataFrame):
        calls[0] += 1
        if fail_at is not None and calls[0] == fail_at:
            raise KeyboardInterrupt  # a run stopped mid-training
        r_a = run(torch.tensor(rows["a"].to_list()))[:, 0]
        r_b = run(torch.tensor(rows["b"].to_list()))[:, 0]
        return scale * LOSSES["bradley_terry"](r_a, r_b, torch.tensor(rows["p_a"].to_list(), dtype=torch.float32)), r_a - r_b

    return pair_step


def cfg(**kw) -> RewardConfig:
    base = dict(epochs=2, batch_size=4, lr=0.05, seed=3, device="cpu", log_every=1000, save_every=0)
    return RewardConfig(**base | kw)


def step_log(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / training.STEP_LOG).read_text().splitlines()]


def test_the_rate_warms_up_then_decays(tmp_path):
    model = toy_model()
    done = training.train_pairs("toy", model, toy_pairs(), cfg(warmup_ratio=0.25), stepper(model), tmp_path, progress=False)
    lrs = [r["lr"] for r in step_log(tmp_path)]
    assert len(lrs) == len(done.losses) == 12  # 24 pairs / 4 per batch × 2 epochs
    # 0.25 × 12 = 3 warmup steps: 0, 1/3, 2/3 of the peak, then the peak, then cosine down to ~0
    assert lrs[:4] == pytest.approx([0.0, 0.05 / 3, 0.1 / 3, 0.05])
    assert all(x > y for x, y in zip(lrs[3:], lrs[4:], strict=False)) and lrs[-1] < 0.05 * 0.05
    flat = training.train_pairs("toy", toy_model(), toy_pairs(), cfg(lr_scheduler="constant", warmup_ratio=0.0),
                                stepper(toy_model()), tmp_path / "flat", progress=False)
    assert {r["lr"] for r in step_log(tmp_path / "flat")} == {0.05} and flat.pairs == 48
    short = toy_model()  # 6 steps at 0.1: warmup rounds down to none, so no step is spent at rate 0
    training.train_pairs("toy", short, toy_pairs(), cfg(epochs=1), stepper(short), tmp_path / "short", progress=False)
    assert step_log(tmp_path / "short")[0]["lr"] == 0.05


class RecordingSGD(torch.optim.SGD):
    """Records the gradient norm the update actually sees."""

    seen: list[float] = []

    def step(self, closure=None):
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        RecordingSGD.seen.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))
        return super().step(closure)


@pytest.mark.parametrize("max_norm", [1.0, 0.0])
def test_gradients_are_clipped_under_a_huge_loss_scale(tmp_path, monkeypatch, max_norm):
    monkeypatch.setattr(torch.optim, "AdamW", RecordingSGD)
    RecordingSGD.seen = []
    model = toy_model()
    training.train_pairs("toy", model, toy_pairs(), cfg(epochs=1, max_grad_norm=max_norm), stepper(model, scale=1e6),
                         tmp_path, progress=False)
    logged = [r["grad_norm"] for r in step_log(tmp_path)]
    assert min(logged) > 1e3  # the log keeps the norm before clipping
    if max_norm:
        assert max(RecordingSGD.seen) == pytest.approx(1.0, rel=1e-4)
    else:  # 0 = measure, never clip
        assert RecordingSGD.seen == pytest.approx(logged, rel=1e-4)


def test_every_step_is_logged_and_shown_on_one_bar(tmp_path, caplog, capsys):
    model = toy_model()
    with caplog.at_level(logging.INFO, logger="alignment.training"):
        training.train_pairs("toy trainer", model, toy_pairs(20), cfg(epochs=1, log_every=2), stepper(model), tmp_path)
    lines = [r.getMessage() for r in caplog.records]
    assert [m.split(" step ")[1].split()[0] for m in lines] == ["2/5", "4/5", "5/5"]  # every 2nd step and the last
    assert all("loss" in m and "accuracy" in m and "lr" in m and "grad norm" in m for m in lines)
    records = step_log(tmp_path)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    assert set(records[0]) == {"step", "epoch", "loss", "accuracy", "lr", "grad_norm"}
    assert all(0 <= r["accuracy"] <= 1 for r in records)
    assert capsys.readouterr().err.count("toy trainer") >= 1
    training.train_pairs("toy trainer", toy_model(), toy_pairs(20), cfg(epochs=1), stepper(toy_model()), tmp_path / "q",
                         progress=False)
    assert "toy trainer" not in capsys.readouterr().err


def test_checkpoints_every_n_steps_and_a_stopped_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    saved: list[int] = []
    real_save = training._save
    monkeypatch.setattr(training, "_save", lambda path, *a: (saved.append(a[4]), real_save(path, *a)))
    c = cfg(save_every=4)
    whole = toy_model()
    training.train_pairs("toy", whole, toy_pairs(), c, stepper(whole), tmp_path / "whole", progress=False)
    assert saved == [4, 8]  # not at the last step (12): the saved model supersedes it
    assert not (tmp_path / "whole" / training.CHECKPOINT).exists()

    saved.clear()
    stopped = toy_model()
    with pytest.raises(KeyboardInterrupt):
        training.train_pairs("toy", stopped, toy_pairs(), c, stepper(stopped, fail_at=7), tmp_path / "run", progress=False)
    assert saved == [4] and (tmp_path / "run" / training.CHECKPOINT).is_file()
    assert len(step_log(tmp_path / "run")) == 6
    again = toy_model()  # a fresh process: weights from the checkpoint, not from memory
    done = training.train_pairs("toy", again, toy_pairs(), c, stepper(again), tmp_path / "run", progress=False)
    assert done.resumed_at == 4 and len(done.losses) == 12 and done.pairs == 48 - 4 * 4
    assert [r["step"] for r in step_log(tmp_path / "run")] == list(range(1, 13))
    assert step_log(tmp_path / "run") == step_log(tmp_path / "whole")
    for p, q in zip(whole.parameters(), again.parameters(), strict=True):
        assert torch.equal(p, q)


def test_a_checkpoint_of_another_config_is_not_resumed(tmp_path):
    stopped = toy_model()
    with pytest.raises(KeyboardInterrupt):
        training.train_pairs("toy", stopped, toy_pairs(), cfg(save_every=2), stepper(stopped, fail_at=4), tmp_path,
                             progress=False)
    done = training.train_pairs("toy", toy_model(), toy_pairs(), cfg(save_every=2, lr=0.01), stepper(toy_model()), tmp_path,
                                progress=False)
    assert done.resumed_at == 0


def test_same_seed_same_weights_other_seed_other_order(tmp_path):
    def weights(seed: int, name: str) -> torch.Tensor:
        model = toy_model()
        training.train_pairs("toy", model, toy_pairs(), cfg(seed=seed), stepper(model), tmp_path / name, progress=False)
        return model[1].weight.detach().clone()

    state = torch.get_rng_state()
    assert torch.equal(weights(1, "a"), weights(1, "b"))
    assert not torch.equal(weights(1, "c"), weights(2, "d"))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone


def test_steps_never_cross_an_epoch_and_accumulate_batches():
    steps = training.plan_steps(10, cfg(epochs=2, grad_accum=2), 3)
    assert [[len(b) for b in s] for s in steps] == [[3, 3], [3, 1]] * 2
    for epoch in (steps[:2], steps[2:]):
        assert sorted(i for s in epoch for b in s for i in b) == list(range(10))


@pytest.mark.parametrize("bad", [dict(lr_scheduler="step"), dict(warmup_ratio=1.0), dict(max_grad_norm=-1.0),
                                 dict(log_every=0), dict(save_every=-1), dict(cuda_batch_size=0)])
def test_bad_loop_settings_fail_in_one_line(bad):
    with pytest.raises(ValueError):
        RewardConfig(**bad)


def test_no_pairs_no_steps(tmp_path):
    done = training.train_pairs("toy", toy_model(), toy_pairs().head(0), cfg(), stepper(toy_model()), tmp_path, progress=False)
    assert done.losses == [] and done.pairs == 0 and step_log(tmp_path) == []


def test_quiet_load_hides_load_chatter_only_while_loading(capsys):
    """A reward model's new head makes transformers print a LOAD REPORT, and peft touches a deprecated
    property: both are expected, so loading hides them; afterwards the library speaks as before."""
    import warnings

    from transformers.utils import logging as hf_logging

    from agents.llm.embedded import quiet_load

    before = hf_logging.get_verbosity()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet_load():
            hf_logging.get_logger("transformers.modeling_utils").warning("LOAD REPORT: classifier.bias MISSING")
            warnings.warn("`is_gradient_checkpointing` is deprecated", FutureWarning, stacklevel=1)
            assert not hf_logging.is_progress_bar_enabled()
        warnings.warn("another deprecation", FutureWarning, stacklevel=1)
    assert "LOAD REPORT" not in capsys.readouterr().err
    assert [str(w.message) for w in seen] == ["another deprecation"]
    assert hf_logging.get_verbosity() == before and hf_logging.is_progress_bar_enabled()
