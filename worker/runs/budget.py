"""How much of a device a run's dataset may take (`GLIDEPATH_DEVICE_DATA_MB`): the engine gets
it in bytes (`worker.engine.data.to_device`) and streams from host memory past it."""

from __future__ import annotations

import os

import torch

from service.config import settings

MB = 2**20


def device_memory(device: torch.device) -> int:
    """Bytes of memory on `device`: a GPU's total memory, or the host's physical RAM."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def data_budget(device: torch.device) -> int:
    """The setting in bytes, or else a quarter of the device's memory."""
    if settings.device_data_mb is not None:
        return settings.device_data_mb * MB
    return device_memory(device) // 4
