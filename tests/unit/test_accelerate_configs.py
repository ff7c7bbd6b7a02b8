"""The shipped accelerate configs (conf/accelerate/) stay valid: accelerate's own loader reads each, its launch
command turns it into the ranks' environment, and FSDP's plugin built from that environment wraps the policy's
decoder layers. (Only the multi-GPU one runs here, on CPU: tests/e2e/test_training_processes.py.)"""

from __future__ import annotations

import dataclasses

import pytest

from alignment.config import ACCELERATE_CONFIGS, accelerate_config_path

SHIPPED = sorted(p.stem for p in ACCELERATE_CONFIGS.glob("*.yaml"))


def launch_env(name: str) -> dict[str, str]:
    """What ``accelerate launch --config_file NAME --num_processes 4 -m alignment.launch JOB`` gives each rank."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    argv = ["--config_file", str(accelerate_config_path(name)), "--num_processes", "4", "--main_process_port", "0",
            "-m", "alignment.launch", "JOB"]
    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(argv))
    return prepare_multi_gpu_env(args)


def test_both_configs_are_shipped():
    assert SHIPPED == ["fsdp", "multi_gpu"]


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_config_loads_with_accelerates_loader(name):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    cfg = load_config_from_file(str(accelerate_config_path(name)))  # an unknown key would be a TypeError here
    assert isinstance(cfg, ClusterConfig) and cfg.num_machines == 1
    assert cfg.mixed_precision == "no"  # the loop autocasts to bf16 on GPU itself
    assert str(cfg.distributed_type).endswith({"multi_gpu": "MULTI_GPU", "fsdp": "FSDP"}[name])


def test_multi_gpu_launches_plain_ddp_ranks():
    env = launch_env("multi_gpu")
    assert env["ACCELERATE_MIXED_PRECISION"] == "no" and "ACCELERATE_USE_FSDP" not in env
    assert env.get("CUDA_VISIBLE_DEVICES") is None  # gpu_ids: all


def test_fsdp_launches_fsdp2_ranks_that_wrap_each_llama_decoder_layer(monkeypatch):
    from accelerate.utils import FullyShardedDataParallelPlugin
    from transformers import LlamaConfig, LlamaForCausalLM

    env = launch_env("fsdp")
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    assert env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT" and env["FSDP_OFFLOAD_PARAMS"] == "false"
    for k, v in env.items():
        if k.startswith(("FSDP_", "ACCELERATE_")):
            monkeypatch.setenv(k, v)
    plugin = FullyShardedDataParallelPlugin()  # reads and checks the environment, as a rank's Accelerator does
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    tiny = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=1))
    plugin.set_auto_wrap_policy(tiny)  # raises when no module of the named class is in the model
    wrapped = [m for m in tiny.modules() if plugin.auto_wrap_policy(m, recurse=False, nonwrapped_numel=0)]
    assert [type(m).__name__ for m in wrapped] == ["LlamaDecoderLayer"] * 2


def test_a_run_names_a_shipped_config_or_a_file_and_anything_else_fails_before_any_work(tmp_path):
    from sim.config import AlignmentConfig

    assert accelerate_config_path("fsdp") == ACCELERATE_CONFIGS / "fsdp.yaml"
    own = tmp_path / "mine.yaml"
    own.write_text("distributed_type: MULTI_GPU\n")
    assert accelerate_config_path(str(own)) == own
    assert dataclasses.replace(AlignmentConfig(), processes=2, accelerate_config="fsdp").processes == 2
    with pytest.raises(ValueError, match="neither a shipped one"):
        AlignmentConfig(processes=2, accelerate_config="fsdp2")
    with pytest.raises(ValueError, match="processes must be 1 to 64"):
        AlignmentConfig(processes=0)


def test_the_process_count_is_not_part_of_the_run_id():
    from sim.config import AgoraConfig, AlignmentConfig
    from sim.run.lifecycle import run_id_for

    spread = AgoraConfig(alignment=AlignmentConfig(processes=4, accelerate_config="multi_gpu"))
    assert run_id_for(spread) == run_id_for(AgoraConfig())
