"""Python exceptions for groupmates::Error. Every C++ error arrives as the subclass for its
ErrorCode, with the C++ message unchanged (``str(e)``) and two attributes: ``code`` (e.g.
``"out_of_vocab"``) and ``where`` (``"path"``, ``"path:offset"``, ``"path:line N"`` or ``""``).

    GroupMatesError                      base of everything below
    +-- ConfigError (also ValueError)    invalid_config: a config field is out of range or inconsistent
    +-- FileError (also OSError)         io: a file is missing, unreadable or cannot be mapped
    +-- DataError                        corrupt_data: malformed content (bad header, JSON, UTF-8)
    |   +-- OutOfVocabError              out_of_vocab: a token id outside [0, vocab_size)
    +-- StateError (also ValueError)     invalid_state: a saved state does not fit this config
    +-- InternalError                    internal: a bug in groupmates, please report it
    +-- DistributedError                 distributed: a collective across ranks failed or timed out
    +-- SelectionError                   selection_failed: probes or refreshes kept failing
                                         (ProbeConfig.max_consecutive_failures)
"""


class GroupMatesError(Exception):
    """Base class of the errors groupmates raises."""

    code = ""
    where = ""


class ConfigError(GroupMatesError, ValueError):
    """A config field is out of range or inconsistent (the message names the field)."""


class FileError(GroupMatesError, OSError):
    """A file is missing, unreadable or cannot be mapped."""


class DataError(GroupMatesError):
    """A file's content is malformed."""


class OutOfVocabError(DataError):
    """A token id is outside [0, vocab_size)."""


class StateError(GroupMatesError, ValueError):
    """A saved state cannot be restored with this config."""


class InternalError(GroupMatesError):
    """A bug in groupmates."""


class DistributedError(GroupMatesError, RuntimeError):
    """A collective across ranks failed or timed out (a rank died, hung or disagreed)."""


class SelectionError(GroupMatesError, RuntimeError):
    """Online selection's probes or refreshes failed ProbeConfig.max_consecutive_failures times in a row
    (the message has the last errors and the fix)."""


BY_CODE = {
    "invalid_config": ConfigError,
    "io": FileError,
    "corrupt_data": DataError,
    "out_of_vocab": OutOfVocabError,
    "invalid_state": StateError,
    "internal": InternalError,
    "distributed": DistributedError,
    "selection_failed": SelectionError,
}


def config_error(field, message):
    """A ConfigError raised by the Python layer, worded like the C++ ones."""
    e = ConfigError(f"groupmates [invalid_config] {field}: {message}")
    e.code, e.where = "invalid_config", field
    return e


class EngineUnavailableError(GroupMatesError, ImportError):
    """Selection modes and probes need the extension groupmates._engine (LibTorch), which did not
    import (or was not built); plain streaming works without it. The message says why."""

    code = "engine_unavailable"
