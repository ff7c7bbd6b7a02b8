"""Reward-model and DPO training as 2 CPU processes (torchrun / accelerate launch, DDP over gloo on 127.0.0.1)
against the same training in one process, checkpoint/resume across a killed child, and the child's errors
as one line.

Equal to float tolerance, not bitwise: the 2-process update is the sum of two half-batch gradients averaged
by the all-reduce, where one process sums the whole batch at once (another summation order), and each
half pads to its own longest row (other matrix shapes). Gradients and losses then agree to ~1e-6 relative.
The weights get a looser absolute bound: Adam moves each weight by about lr × m/√v whatever the gradient's
size, so where a gradient is itself at rounding size (the embedding row of a token seen once or twice) the
two runs' steps may differ by a share of lr; 2% of one step at lr 1e-3 (2e-5) bounds it (seen here: 7e-6
under DDP and 1.0e-5 under FSDP, in 1 of 1.6 M weights). The models have no dropout (each rank draws its
own masks).
"""

from __future__ import annotations

import json
import os
import re
import signal

import numpy as np
import pytest
import torch

from alignment import launch
from alignment.config import DPOConfig, RewardConfig
from alignment.sanity import known_rule_preferences

TOL = dict(rtol=1e-4, atol=1e-6)  # losses, gradient norms (see the module's docstring)
WEIGHT_TOL = dict(rtol=1e-4, atol=2e-5)  # weights trained at lr 1e-3: 2% of one Adam step


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """A 2-layer, 32-wide Llama with random weights (seeded) and the embedded model's tokenizer and chat
    template: a policy and reward backbone that trains in well under a second per step, and has no dropout."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from agents.llm.embedded import prepare_default_model

    folder = tmp_path_factory.mktemp("tiny_llama")
    tok = AutoTokenizer.from_pretrained(prepare_default_model())
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pairs():
    train, held = known_rule_preferences(9, 4, seed=5)
    return train.head(9), held.head(4)


def weights(folder) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def assert_same_weights(a, b) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], **WEIGHT_TOL, msg=lambda m, k=k: f"{k}: {m}")


def step_log(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]


def assert_same_log(a, b) -> None:
    la, lb = step_log(a), step_log(b)
    assert [r["step"] for r in la] == [r["step"] for r in lb] and [r["lr"] for r in la] == [r["lr"] for r in lb]
    assert [r["accuracy"] for r in la] == [r["accuracy"] for r in lb]  # agreement counts, summed over ranks
    np.testing.assert_allclose([r["loss"] for r in la], [r["loss"] for r in lb], **TOL)
    np.testing.assert_allclose([r["grad_norm"] for r in la], [r["grad_norm"] for r in lb], rtol=1e-3)


def reward_cfg(tiny_llama, **kw) -> RewardConfig:
    # 9 pairs in batches of 4: 4, 4, 1 — the last leaves rank 1 no pair (it runs one at weight 0); two batches per step
    base = dict(backbone=str(tiny_llama), epochs=2, batch_size=4, grad_accum=2, lr=1e-3, max_length=96, seed=7, device="cpu",
                save_every=0, warmup_ratio=0.0)
    return RewardConfig(**base | kw)


def test_reward_model_on_two_processes_equals_one(tiny_llama, pairs, tmp_path):
    train, held = pairs
    cfg = reward_cfg(tiny_llama)
    one = launch.train("reward", train, held, cfg, tmp_path / "one", progress=False)
    two = launch.train("reward", train, held, cfg, tmp_path / "two", progress=False, processes=2)
    assert_same_weights(tmp_path / "one", tmp_path / "two")
    assert_same_log(tmp_path / "one", tmp_path / "two")
    assert two["steps"] == one["steps"] == 4 and two["train_pairs"] == 9
    assert two["eval"]["accuracy"] == one["eval"]["accuracy"]
    assert two["eval"]["log_loss"] == pytest.approx(one["eval"]["log_loss"], rel=1e-4)
    assert not launch.job_dir(tmp_path / "two").exists()  # read back, then removed
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())


@pytest.mark.slow  # ~1 min on 2 cores: two launches of 2 processes
def test_dpo_with_lora_on_two_processes_equals_one_under_torchrun_and_accelerate_launch(tiny_llama, pairs, tmp_path):
    train, held = pairs
    cfg = DPOConfig(epochs=1, batch_size=4, grad_accum=1, lr=1e-3, max_length=96, seed=3, device="cpu", save_every=0,
                    lora=True, lora_r=4)
    one = launch.train("dpo", train, held, cfg, tmp_path / "one", tiny_llama, progress=False)
    for name, conf in (("torchrun", ""), ("accelerate", "multi_gpu")):
        two = launch.train("dpo", train, held, cfg, tmp_path / name, tiny_llama, progress=False, processes=2,
                           accelerate_config=conf)
        assert_same_weights(tmp_path / "one", tmp_path / name)  # the merged policy: base + LoRA
        assert_same_log(tmp_path / "one", tmp_path / name)
        assert two["eval_margin_after"] == pytest.approx(one["eval_margin_after"], rel=1e-3, abs=1e-6)
        assert two["eval_margin_before"] == one["eval_margin_before"] == pytest.approx(0.0, abs=1e-6)
    assert any(not torch.equal(v, weights(tiny_llama)[k]) for k, v in weights(tmp_path / "one").items())


@pytest.mark.slow  # ~1 min on 2 cores: three launches of 2 processes
def test_a_killed_two_process_run_resumes_from_its_checkpoint_to_the_same_weights(tiny_llama, pairs, tmp_path, monkeypatch):
    train, held = pairs
    cfg = reward_cfg(tiny_llama, save_every=2, epochs=3)  # 6 steps, checkpoints after steps 2 and 4
    whole = launch.train("reward", train, held, cfg, tmp_path / "whole", progress=False, processes=2)
    monkeypatch.setattr(launch, "CHILD_MODULE", "tests.e2e.killed_rank")
    monkeypatch.setenv("AGORA_TEST_KILL_AT_STEP", "4")  # rank 1 SIGKILLs itself at step 4, after the step-2 checkpoint
    with pytest.raises(launch.TrainingError) as err:
        launch.train("reward", train, held, cfg, tmp_path / "run", progress=False, processes=2)
    assert "\n" not in str(err.value) and "launch.log" in str(err.value)
    assert "failed (exit 1): rank 1 was killed by signal 9 (SIGKILL)" in str(err.value)  # the cause, not rank 0's broken pipe
    assert (tmp_path / "run" / "checkpoint.pt").is_file() and len(step_log(tmp_path / "run")) == 3
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["step"] == 2
    monkeypatch.undo()
    again = launch.train("reward", train, held, cfg, tmp_path / "run", progress=False, processes=2)
    assert again["steps"] == whole["steps"] == 6 and not (tmp_path / "run" / "checkpoint.pt").exists()
    # the same ranks, shards and all-reduces as the run that never stopped: the same bytes
    for k, v in weights(tmp_path / "whole").items():
        assert torch.equal(v, weights(tmp_path / "run")[k]), k
    assert step_log(tmp_path / "run") == step_log(tmp_path / "whole")


def test_a_failing_child_is_one_line_naming_the_rank_and_its_error(pairs, tmp_path):
    train, held = pairs
    cfg = RewardConfig(backbone=str(tmp_path / "no_such_model"), epochs=1, device="cpu")
    with pytest.raises(launch.TrainingError) as err:
        launch.train("reward", train, held, cfg, tmp_path / "rm", progress=False, processes=2)
    msg = str(err.value)
    # both ranks fail loading; whichever wrote its line first (the launcher stops the other)
    assert re.match(r"training the reward model as torchrun, 2 processes failed \(exit 1\): rank [01]: OSError: ", msg)
    assert "\n" not in msg and "no_such_model" in msg
    assert (launch.job_dir(tmp_path / "rm") / "launch.log").is_file()  # kept for the full story


@pytest.mark.slow  # ~1.5 min on 2 cores: four launches of 2 processes
def test_fsdp_ranks_train_save_and_resume_like_one_process(tiny_llama, pairs, tmp_path, monkeypatch):
    """FSDP2 as conf/accelerate/fsdp.yaml sets it, on CPU ranks (see tests/e2e/fsdp_on_cpu.py): the weights
    gathered from the shards equal one process's; a rank killed after a checkpoint resumes to the same bytes."""
    from tests.unit.test_accelerate_configs import launch_env

    train, held = pairs
    for k, v in launch_env("fsdp").items():
        if k.startswith(("FSDP_", "ACCELERATE_")):
            monkeypatch.setenv(k, v)
    with pytest.raises(launch.TrainingError, match="asks for FSDP, which accelerate runs on GPUs only"):
        launch.train("reward", train, held, reward_cfg(tiny_llama), tmp_path / "refused", progress=False, processes=2)
    monkeypatch.setattr(launch, "CHILD_MODULE", "tests.e2e.fsdp_on_cpu")
    cfg = reward_cfg(tiny_llama, save_every=2, epochs=3)
    launch.train("reward", train, held, cfg, tmp_path / "one", progress=False, processes=1)
    launch.train("reward", train, held, cfg, tmp_path / "whole", progress=False, processes=2)
    assert_same_weights(tmp_path / "one", tmp_path / "whole")
    assert_same_log(tmp_path / "one", tmp_path / "whole")
    monkeypatch.setenv("AGORA_TEST_KILL_AT_STEP", "4")
    with pytest.raises(launch.TrainingError, match="rank 1 was killed by signal 9"):
        launch.train("reward", train, held, cfg, tmp_path / "run", progress=False, processes=2)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 2 and state["sharded"] and set(state["params"]) == set(weights(tmp_path / "one"))
    monkeypatch.delenv("AGORA_TEST_KILL_AT_STEP")
    launch.train("reward", train, held, cfg, tmp_path / "run", progress=False, processes=2)
    for k, v in weights(tmp_path / "whole").items():
        assert torch.equal(v, weights(tmp_path / "run")[k]), k
    dpo = DPOConfig(epochs=1, batch_size=4, lr=1e-3, max_length=96, seed=3, device="cpu", save_every=0, lora=True, lora_r=4)
    launch.train("dpo", train, held, dpo, tmp_path / "dpo_one", tiny_llama, progress=False)
    launch.train("dpo", train, held, dpo, tmp_path / "dpo_fsdp", tiny_llama, progress=False, processes=2)
    assert_same_weights(tmp_path / "dpo_one", tmp_path / "dpo_fsdp")


TORCHRUN_FAILURE = """
============================================================
alignment.launch FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2026-12-07_01:00:02
  host      : node
  rank      : 0 (local_rank: 0)
  exitcode  : 1 (pid: 101)
  error_file: <N/A>
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-07_01:00:01
  host      : node
  rank      : 1 (local_rank: 1)
  exitcode  : {code} (pid: 102) {signal}
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 102
============================================================
"""


def test_the_error_line_names_the_first_failing_rank_and_its_own_error(tmp_path):
    (tmp_path / "launch.log").write_text(TORCHRUN_FAILURE.format(code=-9, signal="(SIGKILL)"))
    (tmp_path / "error-0.txt").write_text("RuntimeError: Connection closed by peer\n")  # a consequence, not the cause
    assert launch._first_error(tmp_path) == "rank 1 was killed by signal 9 (SIGKILL)"
    (tmp_path / "error-1.txt").write_text("OutOfMemoryError: CUDA out of memory\n")
    assert launch._first_error(tmp_path) == "rank 1: OutOfMemoryError: CUDA out of memory"
    (tmp_path / "launch.log").write_text(TORCHRUN_FAILURE.format(code=3, signal=""))
    (tmp_path / "error-1.txt").unlink()
    assert launch._first_error(tmp_path) == "rank 1 exited with code 3"
    (tmp_path / "launch.log").write_text("usage: torchrun ...\ntorchrun: error: unrecognized arguments: --bad\n")
    assert launch._first_error(tmp_path) == "rank 0: RuntimeError: Connection closed by peer"
    (tmp_path / "error-0.txt").unlink()
    assert launch._first_error(tmp_path) == "torchrun: error: unrecognized arguments: --bad"


def test_the_ranks_rendezvous_on_loopback(tmp_path):
    argv = launch.launch_command(tmp_path, 2)
    assert argv[argv.index("--master-addr") + 1] == "127.0.0.1"
    argv = launch.launch_command(tmp_path, 2, "fsdp")
    assert argv[argv.index("--main_process_ip") + 1] == "127.0.0.1"
    env = launch.child_env(2)
    assert env[launch.PARENT_ENV] == str(os.getpid()) and env["GLOO_SOCKET_IFNAME"] in ("lo", os.environ.get("GLOO_SOCKET_IFNAME"))


def test_ranks_end_when_the_run_that_started_them_is_killed(tmp_path):
    """A killed parent must not leave ranks training into the folder a resumed run will use."""
    import subprocess
    import sys
    import time

    code = ("import os, subprocess, sys, time; "
            "env = {**os.environ, 'AGORA_TRAINING_PARENT': str(os.getpid())}; "
            "c = subprocess.Popen([sys.executable, '-c', 'from alignment.launch import _watch_parent; import time; "
            "_watch_parent(); time.sleep(60)'], env=env); print(c.pid, flush=True); time.sleep(60)")
    from tests.helpers import child_env

    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=child_env())
    rank = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(rank, 0)
        except ProcessLookupError:
            break
        if open(f"/proc/{rank}/stat").read().rsplit(")", 1)[-1].split()[0] == "Z":
            break
        time.sleep(0.1)
    else:
        os.kill(rank, signal.SIGKILL)
        pytest.fail("the rank outlived its parent by 10 s")


# -- the generations loop's training stages as 2 processes --------------------------------------------------------
def generations_config(tiny_llama, *extra: str):
    """Two scripted generations whose reward model and policy are the tiny Llama (each stage a few seconds)."""
    from tests.helpers import compose

    return compose("experiment=tiny_evolve", "calibration.enabled=false", f"llm.model_path={tiny_llama}",
                   f"alignment.reward.backbone={tiny_llama}", "alignment.reward.epochs=3", "alignment.reward.batch_size=2",
                   "alignment.reward.save_every=1", "alignment.reward.max_length=96", "alignment.dpo.max_length=96",
                   "alignment.dpo.batch_size=2", *extra)


@pytest.mark.slow  # ~2 min on 2 cores: a generations run in one process, then one whose first child is killed and resumed
def test_generations_train_as_two_processes_and_resume_after_a_killed_child(tiny_llama, tmp_path, monkeypatch):
    import dataclasses

    from agents.llm.scripted import ScriptedBackend
    from sim.experiments import runner_for

    one = generations_config(tiny_llama)
    ref = runner_for(one)(one, tmp_path / "one", ScriptedBackend())
    two = generations_config(tiny_llama, "alignment.processes=2")
    monkeypatch.setattr(launch, "CHILD_MODULE", "tests.e2e.killed_rank")
    monkeypatch.setenv("AGORA_TEST_KILL_AT_STEP", "3")  # generation 0's reward model: rank 1 dies after the step-2 checkpoint
    out = tmp_path / "two"
    with pytest.raises(launch.TrainingError):
        runner_for(two)(two, out, ScriptedBackend())
    rm = out / "generation_0" / "reward_model"
    assert torch.load(rm / "checkpoint.pt", weights_only=True)["step"] == 2 and not (rm / "model.safetensors").exists()
    monkeypatch.undo()
    summary = runner_for(two)(dataclasses.replace(two, resume=str(out)), out, ScriptedBackend())
    assert summary["run_id"] == ref["run_id"]  # how many processes train is not what the run is
    assert not list(out.rglob("*.job")) and not list(out.rglob("checkpoint.pt"))
    assert_same_weights(tmp_path / "one" / "generation_0" / "reward_model", rm)
    assert_same_weights(tmp_path / "one" / "generation_0" / "policy", out / "generation_0" / "policy")
    g0, r0 = summary["generations"][0], ref["generations"][0]
    assert g0["rm_eval_accuracy"] == r0["rm_eval_accuracy"]
    assert g0["dpo_eval_margin_after"] == pytest.approx(r0["dpo_eval_margin_after"], rel=1e-3, abs=1e-6)
    assert len(summary["generations"]) == 2 and summary["generations"][1]["policy_model"] == "policy-g1"
