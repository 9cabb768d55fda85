"""Host-to-device copies out of pinned loader buffers (GroupMatesLoader(pin_memory=True) with CUDA).

The plain core page-locks its pooled batch buffers with the CUDA runtime's cudaHostRegister
(python/src/core.cpp), so a batch is a view of pinned memory and goes to the device with one
asynchronous copy and no host copy (torch's pin_memory() copies every batch into its own pinned
block first). torch records no event for memory it did not allocate, so PinnedTransfers keeps each
batch's host tensors alive until an event recorded after its copies has completed: only then may
the buffer go back to the pool and be refilled. Nothing here runs without CUDA but the tests, which
give a fake event and device.
"""
import collections
import ctypes
from typing import Callable, Optional, Tuple

import torch


def cudart_path(maps_lines) -> Optional[str]:
    """The CUDA runtime library among a process's mapped files (lines of /proc/PID/maps): one in torch's
    or NVIDIA's wheel directories first (torch's own), else the first one; None when none is mapped."""
    found = []
    for line in maps_lines:
        parts = line.rstrip("\n").split(None, 5)
        if len(parts) < 6:
            continue
        path = parts[5]
        if path.endswith(" (deleted)"):
            path = path[: -len(" (deleted)")]
        name = path.rsplit("/", 1)[-1]
        if name.startswith("libcudart") and ".so" in name and path not in found:
            found.append(path)
    preferred = [p for p in found if "/torch/" in p or "/nvidia/" in p]
    return (preferred or found or [None])[0]


def cuda_host_register_functions(maps: str = "/proc/self/maps") -> Optional[Tuple[int, int, int, int]]:
    """Addresses of cudaHostRegister, cudaHostUnregister, cudaSetDevice and cudaGetDevice in the CUDA
    runtime this process loaded (torch's), or None when there is none."""
    try:
        with open(maps) as f:
            path = cudart_path(f)
    except OSError:
        return None
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path)
        return tuple(ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
                     for name in ("cudaHostRegister", "cudaHostUnregister", "cudaSetDevice", "cudaGetDevice"))
    except (OSError, AttributeError):
        return None


class PinnedTransfers:
    """send() copies host tensors to `device` without blocking; sent() closes a batch: an event is
    recorded on the device's current stream and the batch's host tensors are kept until it has
    completed. At most `limit` batches stay pending (beyond that the oldest is waited for), so the
    pool grows by at most that many buffers."""

    def __init__(self, device: torch.device, limit: int,
                 new_event: Optional[Callable[[], object]] = None,
                 record: Optional[Callable[[object, torch.device], None]] = None):
        self.device = device
        self.limit = max(1, int(limit))
        self._new_event = new_event or torch.cuda.Event
        self._record = record or _record_on_current_stream
        self._host = []                       # host tensors of the batch being sent
        self._pending = collections.deque()   # (event, host tensors) of sent batches

    def send(self, x: torch.Tensor) -> torch.Tensor:
        self._host.append(x)
        return x.to(self.device, non_blocking=True)

    def sent(self) -> None:
        self._close_batch()
        while self._pending and self._pending[0][0].query():
            self._pending.popleft()
        while len(self._pending) > self.limit:
            self._pending.popleft()[0].synchronize()

    def wait_all(self) -> None:
        """Waits for every pending copy (also of a batch whose sending stopped half way, e.g. on an
        exception) and lets go of its host tensors."""
        self._close_batch()
        while self._pending:
            self._pending.popleft()[0].synchronize()

    def pending(self) -> int:
        return len(self._pending)

    def _close_batch(self) -> None:
        # The host tensors sent since the last batch become pending behind an event recorded now.
        if self._host:
            event = self._new_event()
            self._record(event, self.device)
            self._pending.append((event, self._host))
            self._host = []


def _record_on_current_stream(event, device):
    # The stream .to(device, non_blocking=True) enqueued the copies on.
    event.record(torch.cuda.current_stream(device))
