"""A training child whose ranks run accelerate's FSDP2 on CPU over gloo: accelerate allows FSDP with GPUs only,
so the launch's state is set to FSDP here, with the FSDP plugin read from the environment the test gives the
ranks (conf/accelerate/fsdp.yaml's, as `accelerate launch` would set it). It runs the loop's FSDP code —
sharded training, the checkpoint and the trained model gathered from the shards, the optimizer's state by name —
short of NCCL and GPUs. ``AGORA_TEST_KILL_AT_STEP`` kills rank 1 as ``killed_rank`` does."""

import os
import sys

from alignment import launch, ranks, training


def fsdp_accelerator(device):
    from accelerate import Accelerator
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    acc = Accelerator(cpu=True)
    acc.state.fsdp_plugin = FullyShardedDataParallelPlugin()
    acc.state.distributed_type = PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    return acc


ranks.start_accelerator = training.start_accelerator = fsdp_accelerator
if "AGORA_TEST_KILL_AT_STEP" in os.environ:
    import tests.e2e.killed_rank  # noqa: F401  (patches the loop's step)

if __name__ == "__main__":
    sys.exit(launch.main())
