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


def cuda_host_register_functions(maps: str = "/proc/self/maps") -> Optional[Tuple[int, int]]:
    """Addresses of cudaHostRegister and cudaHostUnregister in the libcudart this process loaded
    (torch's), or None when there is none."""
    path = None
    try:
        with open(maps) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and "libcudart" in parts[-1].rsplit("/", 1)[-1]:
                    path = parts[-1]
                    break
    except OSError:
        return None
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path)
        return (ctypes.cast(lib.cudaHostRegister, ctypes.c_void_p).value,
                ctypes.cast(lib.cudaHostUnregister, ctypes.c_void_p).value)
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
        self._record = record or (lambda event, dev: event.record(torch.cuda.current_stream(dev)))
        self._host = []                       # host tensors of the batch being sent
        self._pending = collections.deque()   # (event, host tensors) of sent batches

    def send(self, x: torch.Tensor) -> torch.Tensor:
        self._host.append(x)
        return x.to(self.device, non_blocking=True)

    def sent(self) -> None:
        if self._host:
            event = self._new_event()
            self._record(event, self.device)
            self._pending.append((event, self._host))
            self._host = []
        while self._pending and self._pending[0][0].query():
            self._pending.popleft()
        while len(self._pending) > self.limit:
            self._pending.popleft()[0].synchronize()

    def wait_all(self) -> None:
        """Waits for every pending copy and lets go of its host tensors."""
        self._host = []
        while self._pending:
            self._pending.popleft()[0].synchronize()

    def pending(self) -> int:
        return len(self._pending)
