"""groupmates: a streaming data loader for LLM pretraining (C++ core) for PyTorch training loops.

    import groupmates
    loader = groupmates.GroupMatesLoader(sources=["train.bin"], sequence_length=1024, batch_size=16)
    for batch in loader:
        batch["input_ids"]    # LongTensor [16, 1024], zero-copy from the C++ buffers

See GroupMatesLoader, LoaderConfig, SourceConfig, and the errors module for the exceptions.
"""
import os as _os

_here = _os.path.dirname(_os.path.abspath(__file__))
# The SentencePiece shim (dlopen()ed by the core for JSONL sources) is installed next to the
# extension; point the core at it unless the user chose another one.
if not _os.environ.get("GROUPMATES_SPM_SHIM") and _os.path.exists(_os.path.join(_here, "libgroupmates_spm.so")):
    _os.environ["GROUPMATES_SPM_SHIM"] = _os.path.join(_here, "libgroupmates_spm.so")

import torch as _torch  # noqa: E402,F401  (load torch's libraries before the core, like a trainer would)

from . import _core  # noqa: E402
from .config import LoaderConfig, SourceConfig  # noqa: E402
from .errors import (BY_CODE as _BY_CODE, ConfigError, DataError, FileError, GroupMatesError,  # noqa: E402
                     InternalError, OutOfVocabError, StateError)
from .loader import GroupMatesLoader  # noqa: E402

_core._register_errors(dict(_BY_CODE))

__version__ = "0.1.0"


class Tokenizer:
    """The SentencePiece tokenizer the core uses for JSONL sources (through its dlopen()ed shim)."""

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


__all__ = ["GroupMatesLoader", "LoaderConfig", "SourceConfig", "Tokenizer", "GroupMatesError", "ConfigError",
           "FileError", "DataError", "OutOfVocabError", "StateError", "InternalError"]
