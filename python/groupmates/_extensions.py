"""The C++ extensions: groupmates._core (the LibTorch-free streaming core, always there) and
groupmates._engine (the selecting loader and probes of a Python model; LibTorch), which is optional:
plain streaming only needs _core, and selection features call require_engine(), which raises
EngineUnavailableError (an ImportError) naming the cause."""
from . import _core  # noqa: F401  (first: _engine uses the config and stats classes _core registers)
from .errors import EngineUnavailableError

try:
    from . import _engine as engine
    ENGINE_ERROR = None
except Exception as _e:  # ImportError, or OSError from a libtorch_python that does not match
    engine = None
    ENGINE_ERROR = f"{type(_e).__name__}: {_e}"
    try:
        import importlib.util
        if importlib.util.find_spec(__package__ + "._engine") is None:
            ENGINE_ERROR = ("it is not installed: the install skipped it (GROUPMATES_ENGINE=0) or its build failed "
                            "(GROUPMATES_ENGINE=auto only warns)")
    except Exception:
        pass


def require_engine(what):
    """groupmates._engine, or EngineUnavailableError saying that `what` needs it and why it is missing."""
    if engine is None:
        raise EngineUnavailableError(
            f"groupmates: {what} needs the extension groupmates._engine (LibTorch + libtorch_python of the "
            f"installed torch), which could not be imported ({ENGINE_ERROR}). Plain streaming "
            f"(no selection=) works without it; rebuild the package against this torch, e.g. "
            f"`pip install --no-build-isolation ./python` with GROUPMATES_ENGINE=1 to see the build error.")
    return engine
