"""torch.distributed under torchrun: who am I, and reductions that are no-ops in one process.

tools/train.py runs unchanged under ``torchrun --nproc_per_node N [--nnodes M --rdzv-endpoint ...]``:
torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; NCCL is used on GPUs, gloo on CPUs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun prepared (if any); returns this process's info and device."""
    if not launched_by_torchrun():
        return DistInfo(), device
    info = DistInfo(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ["WORLD_SIZE"]))
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info, device


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    """Sum over processes (a copy); the tensor comes back on its own device."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    home = value.device
    if dist.get_backend() == "nccl":
        value = value.to(torch.device("cuda", torch.cuda.current_device()))
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value.to(home)


def wrap_model(model: torch.nn.Module, device: torch.device, info: DistInfo, compile: bool = False) -> torch.nn.Module:
    """The module the training loop calls: DistributedDataParallel under several processes (BatchNorm synced
    across GPUs), then ``torch.compile`` with ``compile``. The weights stay those of ``model``."""
    net = model
    if info.enabled:
        if device.type == "cuda":
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if compile:
        net = torch.compile(net)
    return net


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
