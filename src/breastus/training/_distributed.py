"""Process-group helpers for training with several processes under ``torchrun``.

``torchrun --nproc_per_node=N`` starts N copies of a script and tells each its
place through environment variables (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``, ``MASTER_PORT``). :func:`init_distributed` reads them and joins
the process group (``gloo`` on the CPU, ``nccl`` on CUDA); without them it
returns a single-process context and changes nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from breastus._errors import ConfigError


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a distributed run.

    Attributes
    ----------
    rank : int
        This process's index, 0 … ``world_size`` - 1.
    world_size : int
        Number of processes (1: not distributed).
    local_rank : int
        Index on this machine; picks the GPU ``cuda:<local_rank>``.
    owns_group : bool
        Whether :func:`init_distributed` created the process group (and so
        :func:`shutdown_distributed` destroys it).

    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        """Whether more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the process that writes files and logs."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ConfigError(
            f"Environment variable {name} must be an integer (torchrun sets it). Got {value!r} instead."
        ) from exc


def process_rank() -> int:
    """Rank of this process: from the process group if one is up, else ``$RANK`` (0 when unset)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return _env_int("RANK", 0)


def is_main_process() -> bool:
    """Whether this process is rank 0 (always true outside ``torchrun``)."""
    return process_rank() == 0


def init_distributed(device: torch.device) -> tuple[DistributedContext, torch.device]:
    """Join the process group that ``torchrun`` describes, if any.

    Parameters
    ----------
    device : torch.device
        The device the run asked for. On CUDA each process uses
        ``cuda:<LOCAL_RANK>`` and the ``nccl`` backend; on the CPU, ``gloo``.

    Returns
    -------
    context : DistributedContext
        ``world_size == 1`` when not launched by ``torchrun`` (or with one process).
    device : torch.device
        The device this process should use.

    Raises
    ------
    ConfigError
        If a distributed run is asked for on a device other than CPU or CUDA,
        or on more local processes than there are GPUs.

    """
    if dist.is_available() and dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
        context = DistributedContext(rank, world_size, _env_int("LOCAL_RANK", rank), owns_group=False)
    else:
        world_size = _env_int("WORLD_SIZE", 1)
        if world_size <= 1:
            return DistributedContext(), device
        if not dist.is_available():
            raise ConfigError(
                "WORLD_SIZE > 1 asks for a distributed run, but this torch build lacks torch.distributed."
            )
        rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
        context = DistributedContext(rank, world_size, local_rank, owns_group=True)
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(
            f"Distributed training runs on the CPU (gloo) or CUDA (nccl); device {str(device)!r} is not supported. "
            "Pass device='cpu' or 'cuda'."
        )
    if device.type == "cuda":
        if context.local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK={context.local_rank} but only {torch.cuda.device_count()} GPU(s) are visible; "
                "start at most that many processes per node (torchrun --nproc_per_node)."
            )
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
    if context.owns_group:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return context, device


def shutdown_distributed(context: DistributedContext) -> None:
    """Wait for every process, then destroy the process group if :func:`init_distributed` created it."""
    if not context.enabled:
        return
    dist.barrier()
    if context.owns_group:
        dist.destroy_process_group()


def all_gather_objects(value: Any, context: DistributedContext) -> list[Any]:
    """``value`` of every rank, in rank order (``[value]`` when not distributed)."""
    if not context.enabled:
        return [value]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def all_reduce_sums(values: list[float], context: DistributedContext, device: torch.device) -> list[float]:
    """Sum each number over all ranks (unchanged when not distributed)."""
    if not context.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return [float(v) for v in tensor.cpu()]


def average_buffers(module: nn.Module, context: DistributedContext) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over ranks; copy the others from rank 0.

    DistributedDataParallel keeps parameters equal on every rank but lets each
    rank update its BatchNorm statistics from its own last batch; after this call
    every rank holds the same buffers, and so the same ``state_dict``.
    """
    if not context.enabled:
        return
    for buffer in module.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            buffer.div_(context.world_size)
        else:
            dist.broadcast(buffer, src=0)
