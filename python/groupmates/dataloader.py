"""groupmates.DataLoader: torch's DataLoader over a GroupMatesLoader, with worker processes that
split the rank's stream and a state_dict() that stays exact."""
from typing import Any, Dict, Iterator, Union

import torch

from .errors import config_error
from .loader import WORKER_STATE_KEY, GroupMatesLoader


class DataLoader(torch.utils.data.DataLoader):
    """torch.utils.data.DataLoader(loader, batch_size=None, ...) that knows where the stream is.

        dl = groupmates.DataLoader(loader, num_workers=2)
        for batch in dl:
            ...
        torch.save({"data": dl.state_dict()}, path)   # == loader.state_dict()
        for batch in dl:                               # resumes after the last batch delivered
            ...

    Worker w of k reads only the batches start+w, start+w+k, ... of the rank (the DataLoader
    takes one batch from each worker in turn), so the batches arrive in the order of
    num_workers=0, and each carries the worker's state after it; this class takes it off the batch
    and hands it to the loader, whose state_dict() is then the position after the last batch this
    DataLoader delivered. persistent_workers is refused (a kept worker would go on from where it
    had read ahead, past what was delivered). Other arguments are torch's.
    """

    def __init__(self, dataset: GroupMatesLoader, num_workers: int = 0, **kwargs):
        if not isinstance(dataset, GroupMatesLoader):
            raise config_error("DataLoader.dataset", f"expected a groupmates.GroupMatesLoader, got {type(dataset).__name__}")
        if kwargs.get("batch_size") is not None:
            raise config_error("DataLoader.batch_size", "the loader yields whole [B, T] batches: leave batch_size=None "
                               "(LoaderConfig.batch_size sets B)")
        if kwargs.get("persistent_workers"):
            raise config_error("DataLoader.persistent_workers", "a kept worker would resume from where it read ahead, "
                               "not from the last batch delivered: leave persistent_workers=False")
        kwargs["batch_size"] = None
        super().__init__(dataset, num_workers=num_workers, **kwargs)

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        loader = self.dataset
        report = self.num_workers > 0
        loader._report_state = report  # read by the workers, forked or pickled when iteration starts
        try:
            for batch in super().__iter__():
                if report:
                    loader._delivered(batch.pop(WORKER_STATE_KEY))
                yield batch
        finally:
            loader._report_state = False

    def state_dict(self) -> Dict[str, Any]:
        """The loader's state_dict(): the position after the last batch delivered."""
        return self.dataset.state_dict()

    def load_state_dict(self, state: Union[Dict[str, Any], str]) -> None:
        self.dataset.load_state_dict(state)
