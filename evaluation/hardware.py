"""What hardware ran a measurement: named in every speed report (benchmarks, evaluation, the speed table)."""
from __future__ import annotations

import platform
from pathlib import Path
from typing import Union

import torch


def cpu_name() -> str:
    """Processor model from /proc/cpuinfo (platform.processor() is often empty on Linux), else the
    platform's processor or machine name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware_name(device: Union[str, torch.device] = "cpu") -> str:
    """What runs the work on `device`: the CUDA device name on a GPU, else the CPU model."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()
