"""A torch.nn.Module as the selection encoder (SelectionConfig(encoder=module)).

The C++ engine runs the encoder on its scorer and probe threads, without the GIL; so a Python module is
compiled to TorchScript here, once, when the config is converted (torch.jit.script, else torch.jit.trace
on example ids), saved to a file in a per-process temporary directory (removed at exit) and loaded by
the engine like any encoder_path (SelectionConfig.encoder = "torchscript"). The engine never calls back
into Python: encoding costs what the scripted module costs, and the training loop keeps the GIL.
Later changes to the module's weights are not seen (the engine holds its own copy, frozen).

forward(ids) or forward(ids, mask): ids int64 [rows, T], mask int64 [rows, T] (1 = real token);
returns float [rows, D] (normalised by the engine)."""
import atexit
import hashlib
import inspect
import io
import os
import shutil
import tempfile
from typing import Optional

import torch

from .errors import config_error

_directory: Optional[str] = None


def _cache_directory() -> str:
    global _directory
    if _directory is None or not os.path.isdir(_directory):
        _directory = tempfile.mkdtemp(prefix="groupmates-encoders-")
        atexit.register(shutil.rmtree, _directory, True)
    return _directory


def _forward_arity(module: torch.nn.Module) -> int:
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return 2
    return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


def to_torchscript(module, field: str = "SelectionConfig.encoder") -> torch.jit.ScriptModule:
    """`module` as TorchScript: itself if scripted already, else torch.jit.script(module), else (when
    scripting fails, e.g. on unsupported Python) torch.jit.trace on 2 rows of 16 ids."""
    if isinstance(module, torch.jit.ScriptModule):
        return module
    if not isinstance(module, torch.nn.Module):
        raise config_error(field, f"expected \"hashed_ngram\", \"torchscript\" or a torch.nn.Module, got "
                                  f"{type(module).__name__}")
    try:
        return torch.jit.script(module)
    except Exception as script_error:  # noqa: BLE001 (any compiler error: fall back to tracing)
        ids = torch.arange(1, 33, dtype=torch.long).reshape(2, 16)
        example = (ids,) if _forward_arity(module) == 1 else (ids, torch.ones_like(ids))
        try:
            with torch.no_grad():
                return torch.jit.trace(module, example, check_trace=False)
        except Exception as trace_error:  # noqa: BLE001
            raise config_error(field, f"{type(module).__name__} can be neither scripted ({script_error}) nor traced "
                                      f"({trace_error}); export it yourself and set encoder=\"torchscript\", "
                                      "encoder_path=FILE") from None


def encoder_file(module, field: str = "SelectionConfig.encoder") -> str:
    """The TorchScript file of `module` (to_torchscript), written once per content in a per-process
    temporary directory that is removed at exit."""
    buffer = io.BytesIO()
    torch.jit.save(to_torchscript(module, field), buffer)
    data = buffer.getvalue()
    path = os.path.join(_cache_directory(), hashlib.sha256(data).hexdigest()[:32] + ".pt")
    if not os.path.exists(path):
        tmp = f"{path}.tmp.{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    return path
