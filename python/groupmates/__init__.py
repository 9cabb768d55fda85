"""groupmates: a streaming data loader for LLM pretraining (C++ core) for PyTorch training loops.

    import groupmates
    loader = groupmates.GroupMatesLoader(sources=["train.bin"], sequence_length=1024, batch_size=16,
                                         labels=True)
    for batch in loader:
        batch["input_ids"]    # LongTensor [16, 1024], zero-copy from the C++ buffers
        batch["labels"]       # LongTensor [16, 1024]: the next tokens, -100 where there is no target

    # Group-MATES selection with oracle probes of the live model (needs groupmates._engine):
    loader = groupmates.GroupMatesLoader(sources=[...], sequence_length=1024, batch_size=16, labels=True,
                                         selection=groupmates.SelectionConfig(mode="group"),
                                         probes=groupmates.ProbeConfig(interval_steps=100))
    for step, batch in enumerate(loader):
        ...; optimizer.step()
        loader.on_step(step, model, optimizer, reference_batches=held_out_rows)  # [R, T + 1]

See GroupMatesLoader, LoaderConfig, SourceConfig, SelectionConfig, ProbeConfig, and the errors
module for the exceptions.
"""
import os as _os

_here = _os.path.dirname(_os.path.abspath(__file__))
# The SentencePiece shim (dlopen()ed by the core for JSONL sources) is installed next to the
# extension; point the core at it unless the user chose another one.
if not _os.environ.get("GROUPMATES_SPM_SHIM") and _os.path.exists(_os.path.join(_here, "libgroupmates_spm.so")):
    _os.environ["GROUPMATES_SPM_SHIM"] = _os.path.join(_here, "libgroupmates_spm.so")

import torch as _torch  # noqa: E402,F401  (load torch's libraries before the core, like a trainer would)

from . import _core, _extensions  # noqa: E402
from .config import LoaderConfig, ProbeConfig, SelectionConfig, SourceConfig  # noqa: E402
from .errors import (BY_CODE as _BY_CODE, ConfigError, DataError, EngineUnavailableError,  # noqa: E402
                     DistributedError, FileError, GroupMatesError, InternalError, OutOfVocabError,
                     SelectionError, StateError)
from .loader import GroupMatesLoader  # noqa: E402
from .dataloader import DataLoader  # noqa: E402
from .ranks import resolve_ranks  # noqa: E402
from .probe import next_token_loss  # noqa: E402
from .stats import LoaderStats, ProbeStats, SelectionCost, SelectionStats, VersionSwitch  # noqa: E402

_core._register_errors(dict(_BY_CODE))
if _extensions.engine is not None:
    _extensions.engine._register_errors(dict(_BY_CODE))


def engine_available():
    """Whether groupmates._engine (selection modes, probes of a Python model) imported; if not,
    engine_error() says why."""
    return _extensions.engine is not None


def engine_error():
    return _extensions.ENGINE_ERROR


__version__ = "0.1.0"

#: The label of a position without a target (torch.nn.functional.cross_entropy's ignore_index).
IGNORE_INDEX = _core.IGNORE_INDEX


class Tokenizer:
    """The tokenizer the core uses for JSONL sources: a SentencePiece .model (through its dlopen()ed
    shim) or a Hugging Face tokenizer.json (a path ending in ".json"; byte-level BPE, read by the core)."""

    def __init__(self, model_path):
        self._tok = _core.Tokenizer.load(_os.fspath(model_path))

    def encode(self, text):
        return self._tok.encode(text)

    def decode(self, ids):
        return self._tok.decode([int(i) for i in ids])

    @property
    def vocab_size(self):
        return self._tok.vocab_size

    @property
    def eos_id(self):
        return self._tok.eos_id


__all__ = ["GroupMatesLoader", "DataLoader", "resolve_ranks", "LoaderConfig", "SourceConfig", "SelectionConfig",
           "ProbeConfig", "Tokenizer", "SelectionStats", "ProbeStats", "SelectionCost", "VersionSwitch", "LoaderStats",
           "IGNORE_INDEX",
           "next_token_loss", "engine_available", "engine_error", "GroupMatesError", "ConfigError", "FileError",
           "DataError", "OutOfVocabError", "StateError", "InternalError", "DistributedError", "SelectionError",
           "EngineUnavailableError"]
