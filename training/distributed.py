"""Multi-process training setup: one command for 1..N GPUs, torchrun, or N gloo processes on CPU.

`launch(worker, args, ...)` picks the mode:
  * torchrun (RANK / WORLD_SIZE / LOCAL_RANK set): run `worker` in this process with that rank;
  * `cpu_processes` > 1: spawn that many CPU processes talking over gloo (tests, CPU clusters);
  * several visible CUDA devices: spawn one process per device, nccl;
  * otherwise: run `worker` directly without a process group (world size 1).
`worker(ctx, *args)` receives a `DistContext` (rank, world size, device, backend). The rendezvous
port is MASTER_PORT when set (validated), else a free port chosen by the OS (VITS hard-coded one).
A parent that spawned workers forwards SIGINT / SIGTERM to them and waits, so each worker can save
and exit cleanly. CPU processes split the cores between them (torch threads = cores // processes).
"""
from __future__ import annotations

import os
import signal
import socket
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Optional, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


@dataclass(frozen=True)
class DistContext:
    """Where this process runs. `world_size == 1` means no process group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: Optional[str] = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (the OS picks it from the ephemeral range)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def master_port_from_env() -> Optional[int]:
    """MASTER_PORT as an int, None when unset; a clear error when it is not a valid port."""
    raw = os.environ.get("MASTER_PORT")
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise ValueError(f"MASTER_PORT={raw!r} is not a valid TCP port (1..65535); unset it to let "
                         f"training pick a free port")
    return int(raw)


def torchrun_env() -> Optional[tuple]:
    """(rank, world_size, local_rank) when started by torchrun / a cluster launcher, else None."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        rank = int(os.environ["RANK"])
        world = int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
        return rank, world, local
    return None


def select_device(local_rank: int, device: str = "auto") -> torch.device:
    """The device for a process: `device` is 'auto' (CUDA if present), 'cpu' or 'cuda'."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but no CUDA device is visible; use --device cpu")
    index = local_rank % torch.cuda.device_count()
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def init_process(rank: int, world_size: int, local_rank: int, device: str = "auto",
                 master_addr: Optional[str] = None, master_port: Optional[int] = None,
                 timeout_minutes: float = 30.0) -> DistContext:
    """Pick the device and, for world_size > 1, join the process group (nccl on CUDA, gloo on CPU)."""
    dev = select_device(local_rank, device)
    if world_size <= 1:
        return DistContext(0, 1, 0, dev, None)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if master_addr is not None:
        os.environ["MASTER_ADDR"] = master_addr
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if master_port is not None:
        os.environ["MASTER_PORT"] = str(master_port)
    if master_port_from_env() is None:
        raise RuntimeError("MASTER_PORT must be set for multi-process training")
    kwargs = dict(backend=backend, init_method="env://", rank=rank, world_size=world_size,
                  timeout=timedelta(minutes=timeout_minutes))
    if dev.type == "cuda":
        kwargs["device_id"] = dev
    dist.init_process_group(**kwargs)
    return DistContext(rank, world_size, local_rank, dev, backend)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _spawned(index: int, worker: Callable, args: Sequence[Any], world_size: int, device: str,
             port: int, threads: Optional[int]) -> None:
    if threads:
        torch.set_num_threads(threads)
    ctx = init_process(index, world_size, index, device, "127.0.0.1", port)
    try:
        worker(ctx, *args)
    finally:
        cleanup()


def will_spawn(cpu_processes: Optional[int] = None, device: str = "auto") -> bool:
    """True when `launch` would start several worker processes itself (not under torchrun)."""
    if torchrun_env() is not None:
        return False
    if cpu_processes:
        return cpu_processes > 1
    return device != "cpu" and torch.cuda.is_available() and torch.cuda.device_count() > 1


def launch(worker: Callable, args: Sequence[Any] = (), cpu_processes: Optional[int] = None,
           device: str = "auto") -> Any:
    """Run `worker(ctx, *args)` in every training process (see the module docstring for the modes).

    Returns the worker's return value when it ran in this process; when workers were spawned, returns
    the number of the stop signal (SIGINT / SIGTERM) this parent received and forwarded, or None.
    """
    if cpu_processes is not None and cpu_processes < 1:
        raise ValueError(f"--cpu-processes must be >= 1, got {cpu_processes}")
    env = torchrun_env()
    if env is not None:
        rank, world, local = env
        ctx = init_process(rank, world, local, "cpu" if cpu_processes else device)
        try:
            return worker(ctx, *args)
        finally:
            cleanup()
    if not will_spawn(cpu_processes, device):
        return worker(init_process(0, 1, 0, "cpu" if cpu_processes else device), *args)
    nprocs, device = (cpu_processes, "cpu") if cpu_processes else (torch.cuda.device_count(), device)
    port = master_port_from_env() or find_free_port()
    # Split the CPU cores between CPU processes so they do not oversubscribe each other.
    threads = max(1, (os.cpu_count() or 1) // nprocs) if device == "cpu" else None
    context = mp.start_processes(_spawned, args=(worker, tuple(args), nprocs, device, port, threads),
                                 nprocs=nprocs, join=False, start_method="spawn")
    received = []

    def forward(signum, frame):
        # Workers handle the stop themselves (save, exit); the parent passes the signal on and waits.
        received.append(signum)
        for proc in context.processes:
            if proc.is_alive():
                os.kill(proc.pid, signum)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not context.join():
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return received[0] if received else None


def all_reduce_sum(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum a tensor over all processes (identity with one process); returns the tensor."""
    if ctx.distributed:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def any_true(flag: bool, ctx: DistContext) -> bool:
    """True if `flag` is true on any process (every process gets the same answer)."""
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    return bool(all_reduce_sum(t, ctx).item() > 0)


@torch.no_grad()
def parameter_max_difference(module: torch.nn.Module, ctx: DistContext) -> float:
    """Largest absolute difference of any parameter between this process and rank 0 (0 with one process).

    Every process gets the same value; use it to check that replicas stayed in sync.
    """
    if not ctx.distributed:
        return 0.0
    flat = torch.cat([p.detach().float().reshape(-1) for p in module.parameters()])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    diff = (flat - reference).abs().max().reshape(1)
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff.item())
