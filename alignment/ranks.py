"""This process among the training processes: one plain process, or one rank of several started by
``torchrun`` / ``accelerate launch`` (``WORLD_SIZE`` > 1 in the environment).

Why ``accelerate`` rather than ``torch.distributed`` by hand: one ``prepare`` call gives DDP (gloo on CPU,
NCCL on GPU) or FSDP, as the launch's accelerate config says (``conf/accelerate/``), and puts each rank on
its own device. In one plain process none of it is used: the loop runs exactly as it always did.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


def launched_processes() -> int:
    """How many processes the launcher started (``torchrun`` and ``accelerate launch`` set ``WORLD_SIZE``)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0, or the only process: the one that logs, checkpoints and saves."""
    return int(os.environ.get("RANK", "0")) == 0


def start_accelerator(device: torch.device) -> Any:
    """The launch's ``Accelerator`` (state shared by every call in the process), refusing the silent
    one-process case: on a machine without a GPU, accelerate treats a rank that does not ask for the CPU
    as a lone process, so ``cpu=`` follows the training device."""
    from accelerate import Accelerator

    acc = Accelerator(cpu=device.type == "cpu")
    if acc.num_processes != launched_processes():
        raise RuntimeError(f"launched as {launched_processes()} processes, but accelerate sees {acc.num_processes} "
                           f"({acc.distributed_type}); on CPU launch with torchrun or `accelerate launch --multi_gpu`")
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" and not str(acc.distributed_type).endswith("FSDP"):
        # accelerate would go on with plain DDP: every rank holding the whole model the config meant to shard
        raise RuntimeError(f"the accelerate config asks for FSDP, which accelerate runs on GPUs only; this rank trains on "
                           f"{acc.device} ({acc.distributed_type})")
    return acc


@dataclass
class Ranks:
    """The loop's view of the processes. ``accelerator`` is None in one plain process.

    Attributes:
        accelerator: ``accelerate.Accelerator`` of a multi-process launch, else None.
    """

    accelerator: Any = None

    @classmethod
    def start(cls, device: torch.device) -> Ranks:
        return cls(start_accelerator(device)) if launched_processes() > 1 else cls()

    @property
    def rank(self) -> int:
        return self.accelerator.process_index if self.accelerator else 0

    @property
    def world(self) -> int:
        return self.accelerator.num_processes if self.accelerator else 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        """FSDP: each rank holds a shard of the parameters, so their full values are gathered to be saved."""
        return bool(self.accelerator) and str(self.accelerator.distributed_type).endswith("FSDP")

    def seed(self, seed: int) -> int:
        """The torch seed of this rank's dropout: the config's own on rank 0 (one process draws as it always
        did), a child of it on the others (their masks fall on other pairs, so they must not repeat rank 0's)."""
        return seed if self.rank == 0 else int(np.random.SeedSequence([seed, self.rank]).generate_state(1)[0])

    def shard(self, idx: Sequence[int]) -> list[int]:
        """This rank's rows of a global batch (every ``world``-th, from its rank on)."""
        return list(idx[self.rank::self.world])

    def prepare(self, model: torch.nn.Module, opt: torch.optim.Optimizer) -> tuple[torch.nn.Module, Any]:
        """The model to run (DDP/FSDP wrapper) and the optimizer to step; themselves in one process. The schedule is
        not prepared: accelerate would step it once per process at every update."""
        if not self.accelerator:
            return model, opt
        return self.accelerator.prepare(model, opt)

    def sync(self, model: torch.nn.Module, last: bool) -> Any:
        """Gradients are all-reduced at the last batch of an optimiser step only (accumulated locally before it)."""
        return nullcontext() if last or not self.accelerator else self.accelerator.no_sync(model)

    def backward(self, loss: torch.Tensor) -> None:
        (self.accelerator.backward if self.accelerator else torch.Tensor.backward)(loss)

    def clip(self, model: torch.nn.Module, params: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
        """The global gradient norm before clipping (0 = measure only: the norm is clipped to infinity)."""
        max_norm = max_norm if max_norm > 0 else math.inf
        if not self.accelerator:
            return torch.nn.utils.clip_grad_norm_(params, max_norm)
        return self.accelerator.clip_grad_norm_(model.parameters(), max_norm)  # FSDP matches them to its model

    def sum(self, values: list[float]) -> list[float]:
        """Each value summed over the ranks (one all-reduce); unchanged in one process."""
        if not self.accelerator:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.accelerator.device)
        return self.accelerator.reduce(t, "sum").tolist()

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.accelerator:
            return [obj]
        from accelerate.utils import gather_object

        return gather_object([obj])

    # -- FSDP: whole tensors from shards (collectives: every rank calls them) ---------------------------------------
    def trained_state(self, run: torch.nn.Module, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The trained tensors (a LoRA run's adapter, not the frozen base), whole and on the CPU; under FSDP
        gathered to rank 0 (the others get {})."""
        names = [k for k, v in model.named_parameters() if v.requires_grad]
        if not self.sharded:
            params = dict(model.named_parameters())
            return {k: params[k].detach().cpu() for k in names}
        full = self.full_state(run)
        return {k: full[k] for k in names if k in full}

    def full_state(self, run: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The whole model's state dict on rank 0's CPU, gathered from the FSDP shards (the others get {})."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(run, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def optimizer_state(self, run: torch.nn.Module, opt: Any) -> dict[str, Any]:
        """The optimizer's state dict: its own (by parameter index) or, under FSDP, whole and by parameter name."""
        if not self.sharded:
            return opt.state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(run, _inner(opt), options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def load_optimizer_state(self, run: torch.nn.Module, opt: Any, state: dict[str, Any]) -> None:
        """Load :meth:`optimizer_state`'s FSDP form into the sharded optimizer (each rank read the whole file)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(run, _inner(opt), state, options=StateDictOptions(full_state_dict=True))


def _inner(opt: Any) -> torch.optim.Optimizer:
    """The torch optimizer inside accelerate's wrapper."""
    return getattr(opt, "optimizer", opt)
