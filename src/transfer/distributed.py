"""torchrun support: one process per device, DDP over gloo (CPU) or nccl (GPU); a no-op when run plainly."""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

SHUTDOWN_WAIT_S = 120.0  # the longest wait at exit for the others (rank 0 writes config.json after the last collective)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and prints progress."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when there is more than one process."""
        return self.world > 1


def init_distributed(use_cuda: bool) -> DistInfo:
    """Join the process group torchrun describes in the environment (WORLD_SIZE, RANK, LOCAL_RANK)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, False)
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local_rank, True)


def shutdown(info: DistInfo, finished: bool = False) -> None:
    """Leave the process group if this module joined it; after a run that finished normally, first wait (bounded)
    for every process: one that tore gloo down while the other still wrote its files made that one abort at exit
    (SIGABRT, "terminate called without an active exception"). After a failure nobody waits: the others may
    never arrive."""
    if not (info.initialized_here and dist.is_initialized()):
        return
    if finished and info.enabled:
        wait_for_all()
    dist.destroy_process_group()


def wait_for_all(timeout_s: float = SHUTDOWN_WAIT_S) -> None:
    """A barrier that cannot hang: gloo's monitored barrier gives up after timeout_s (nccl's barrier is bounded by
    the process group's own timeout); a process that never arrives is torchrun's to report, not this one's."""
    try:
        if dist.get_backend() == dist.Backend.GLOO:
            dist.monitored_barrier(timeout=timedelta(seconds=timeout_s), wait_all_ranks=True)
        else:
            dist.barrier()
    except RuntimeError:  # a peer died or timed out: leave anyway, this process's own work is done
        pass


def mean_across(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of a scalar tensor over all processes (itself when alone)."""
    if not info.enabled:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / info.world


def broadcast_flag(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """Rank 0's boolean, seen by every process (so all stop together)."""
    if not info.enabled:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(tensor, src=0)
    return bool(tensor.item() > 0.5)


def any_across(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every process when the flag is true on any of them."""
    if not info.enabled:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0.5)


def gather_strings(text: str, info: DistInfo) -> list[str]:
    """Every process's string, in rank order (a list of one when alone)."""
    if not info.enabled:
        return [text]
    out: list[str] = [""] * info.world
    dist.all_gather_object(out, text)
    return out


def barrier(info: DistInfo) -> None:
    """Wait for every process."""
    if info.enabled:
        dist.barrier()


def broadcast_buffers(model: torch.nn.Module, info: DistInfo) -> None:
    """Give every process rank 0's buffers (batch-norm running statistics, which each process updates from its
    own share of the batch on CPU, where SyncBatchNorm does not run); parameters already agree through DDP."""
    if info.enabled:
        with torch.no_grad():
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)
