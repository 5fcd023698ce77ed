"""Split a dataset's arrays into train/val/test parts, each on the device once for the whole run
or, past the device budget, streamed from host memory batch by batch. Where the arrays come from
(a built-in, or an upload found through the catalogue) is `worker/runs/datasets.py`.

Both kinds of part answer the loop's two questions the same way: `batches(order, size)` (a
training epoch's shuffled batches, in exactly that order) and `chunks(size)` (the part in row
order, for evaluation). So the loop does not care where the data lives, and a streamed run sees
the same rows in the same order as an on-device one: its losses are the same."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from service.training.datasets import Arrays, DatasetInfo
from service.training.spec import ExperimentSpec
from service.training.split import split_indices

Batch = tuple[torch.Tensor, torch.Tensor]  # (x, y) on the part's device, x flat (rows, features)


class Part:
    """One split part. `device`: where its batches land; `index_device`: where a batch's row
    positions (`batch(idx)`, the `order` of `batches`) live."""

    device: torch.device
    index_device: torch.device

    def __len__(self) -> int:
        raise NotImplementedError

    def batch(self, idx: torch.Tensor) -> Batch:
        """The rows at positions `idx` (in that order)."""
        raise NotImplementedError

    def rows(self, start: int, stop: int) -> Batch:
        """Rows start..stop-1, in the part's order."""
        raise NotImplementedError

    def batches(self, order: torch.Tensor, batch_size: int) -> Iterator[Batch]:
        """`order` cut into batches of `batch_size` (the last one possibly smaller): every
        batch's index view made by one `split`, not a slice per step (~1 % of an epoch of
        small batches on a CPU, py-spy)."""
        return map(self.batch, order.split(batch_size))

    def chunks(self, size: int) -> Iterator[Batch]:
        for start in range(0, len(self), size):
            yield self.rows(start, start + size)


class DevicePart(Part):
    """On the device for the whole run: a batch is gathered there by index (no host work)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y
        self.device = self.index_device = x.device

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def batch(self, idx: torch.Tensor) -> Batch:
        return self.x[idx], self.y[idx]

    def rows(self, start: int, stop: int) -> Batch:
        return self.x[start:stop], self.y[start:stop]


class HostPart(Part):
    """Left in host memory: the dataset's own arrays (an np.memmap is read in place, only the
    rows a batch needs) and the part's row numbers in them. A batch is gathered on the host in
    the batch's order and copied to the device; on CUDA through pinned memory on a side stream,
    one batch ahead, so the copy of batch i+1 overlaps the step on batch i."""

    def __init__(
        self, x: np.ndarray, y: np.ndarray, rows: np.ndarray, device: torch.device
    ) -> None:
        self.x = x  # (N, *features) of the whole dataset: never copied whole
        self.y = np.ascontiguousarray(y[rows])  # one label/target per row: small
        self.rows_of = np.asarray(rows, dtype=np.int64)
        self.device = device
        self.index_device = torch.device("cpu")
        self.cuda = device.type == "cuda"

    def __len__(self) -> int:
        return len(self.rows_of)

    def _host(self, pos: np.ndarray | slice) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.x[self.rows_of[pos]]  # fancy indexing: reads just these rows, in this order
        xt = torch.from_numpy(np.ascontiguousarray(x.reshape(len(x), -1)))
        yt = torch.from_numpy(np.ascontiguousarray(self.y[pos]))
        if self.cuda:
            xt, yt = xt.pin_memory(), yt.pin_memory()
        return xt, yt

    def _to_device(self, host: tuple[torch.Tensor, torch.Tensor]) -> Batch:
        if not self.cuda:
            return host
        x, y = host
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def batch(self, idx: torch.Tensor) -> Batch:
        return self._to_device(self._host(idx.cpu().numpy()))

    def rows(self, start: int, stop: int) -> Batch:
        return self._to_device(self._host(slice(start, stop)))

    def batches(self, order: torch.Tensor, batch_size: int) -> Iterator[Batch]:
        pos = order.cpu().numpy()
        return self._ahead([pos[s : s + batch_size] for s in range(0, len(self), batch_size)])

    def chunks(self, size: int) -> Iterator[Batch]:
        return self._ahead([slice(s, s + size) for s in range(0, len(self), size)])

    def _ahead(self, picks: list[np.ndarray] | list[slice]) -> Iterator[Batch]:
        """The batches at `picks` (positions in the part), in turn; on CUDA each one's copy is
        started while the previous one is in use."""
        if not self.cuda:
            for pick in picks:
                yield self._host(pick)
            return
        compute = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)

        def start(pick: np.ndarray | slice) -> Batch:
            host = self._host(pick)
            with torch.cuda.stream(side):
                return self._to_device(host)

        pending = start(picks[0]) if picks else None
        for k in range(len(picks)):
            assert pending is not None
            current = pending
            compute.wait_stream(side)  # the step on `current` waits for its copy only
            for t in current:
                t.record_stream(compute)  # allocated on `side`, used (and freed) on `compute`
            pending = start(picks[k + 1]) if k + 1 < len(picks) else None
            yield current


@dataclass
class DeviceData:
    train: Part
    val: Part
    test: Part | None
    info: DatasetInfo
    streamed: bool = False  # the parts stay in host memory (they exceed the device budget)


def to_device(
    spec: ExperimentSpec,
    arrays: Arrays,
    info: DatasetInfo,
    device: torch.device,
    budget_bytes: int | None = None,
) -> DeviceData:
    """Split, then put the parts on `device` when their x + y bytes fit `budget_bytes` (None: no
    limit); else keep them in host memory and stream their batches."""
    labels = arrays.y if info.task == "classification" else None
    idx = split_indices(
        labels,
        len(arrays.x),
        spec.split.train,
        spec.split.val,
        spec.split.test,
        spec.split.seed,
        spec.split.stratify,
    )
    n_rows = sum(len(i) for i in idx.values())
    row_bytes = int(np.prod(arrays.x.shape[1:], dtype=np.int64)) * arrays.x.itemsize
    needed = n_rows * (row_bytes + arrays.y.itemsize)
    streamed = budget_bytes is not None and needed > budget_bytes

    def part(i: np.ndarray) -> Part:
        if streamed:
            return HostPart(arrays.x, arrays.y, i, device)
        # Samples go to the device flat, (n, features), as the built-ins are: the models flatten
        # anyway, and `cnn` restores (C, H, W) from info.image_shape.
        x = arrays.x[i]
        x = torch.from_numpy(np.ascontiguousarray(x.reshape(len(x), -1))).to(device)
        y = torch.from_numpy(np.ascontiguousarray(arrays.y[i])).to(device)
        return DevicePart(x, y)

    return DeviceData(
        train=part(idx["train"]),
        val=part(idx["val"]),
        test=part(idx["test"]) if len(idx["test"]) else None,
        info=info,
        streamed=streamed,
    )
