"""The Python configs are the C++ structs: same fields, the C++ defaults, converted field by field."""
import dataclasses

import pytest

import groupmates
from groupmates import _core, config

# Fields the Python classes require (no default) although the C++ struct has an empty one.
REQUIRED = {("SourceConfig", "paths")}
# Fields whose Python default is a fresh empty list (the C++ default is an empty vector too).
LISTS = {("LoaderConfig", "sources")}
# Fields whose Python default None stands for the C++ kFromEnvironment (groupmates/ranks.py).
FROM_ENVIRONMENT = {("LoaderConfig", "rank"), ("LoaderConfig", "world_size")}


def cpp_value(value):
    return value.name if hasattr(type(value), "__members__") else value


@pytest.mark.parametrize("py_cls", [groupmates.SourceConfig, groupmates.LoaderConfig, groupmates.SelectionConfig,
                                    groupmates.ProbeConfig])
def test_python_configs_have_the_fields_and_defaults_of_the_cpp_structs(py_cls):
    cpp_cls = config.CPP_STRUCTS[py_cls]
    assert cpp_cls is getattr(_core, py_cls.__name__)
    cpp = cpp_cls()
    names = [name for name, _kind in cpp_cls._fields]
    # every attribute the binding has is in _fields (what the conversion and these checks read)
    bound = {n for n in dir(cpp) if not n.startswith("_") and not callable(getattr(cpp, n))}
    assert bound == set(names), bound ^ set(names)
    py_fields = {f.name: f for f in dataclasses.fields(py_cls)}
    assert set(py_fields) == set(names), set(py_fields) ^ set(names)
    for name in names:
        f = py_fields[name]
        key = (py_cls.__name__, name)
        if key in REQUIRED:
            assert f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        elif key in LISTS:
            assert f.default_factory() == [] and list(getattr(cpp, name)) == []
        elif key in FROM_ENVIRONMENT:
            assert f.default is None and getattr(cpp, name) == _core.FROM_ENVIRONMENT
        elif key == ("LoaderConfig", "shuffle_block"):
            assert f.default == "auto" and getattr(cpp, name) == _core.SHUFFLE_BLOCK_AUTO
        elif key == ("SelectionConfig", "replay_share"):
            assert f.default == "auto" and getattr(cpp, name) == _core.REPLAY_SHARE_AUTO
        else:
            assert f.default == cpp_value(getattr(cpp, name)), key
    # and the defaults convert back to the default C++ struct
    obj = py_cls(paths=["x.bin"]) if py_cls is groupmates.SourceConfig else py_cls()
    converted = obj.to_core()
    assert isinstance(converted, cpp_cls)
    for name in names:
        if (py_cls.__name__, name) not in REQUIRED | LISTS:
            assert getattr(converted, name) == getattr(cpp, name), name


def test_defaults_that_had_drifted_are_the_cpp_ones():
    # SelectionConfig.mode was "group" in Python; the C++ default (and so the Python one) is the plain
    # stream: a selecting loader names its mode.
    assert groupmates.SelectionConfig().mode == "none"
    assert groupmates.SelectionConfig(mode="group").to_core().mode == _core.SelectionMode.group


def test_conversion_checks_each_field_by_its_cpp_kind():
    kinds = dict(_core.LoaderConfig._fields)
    assert kinds["batch_size"] == "uint32" and kinds["seed"] == "uint64" and kinds["eos_id"] == "int64"
    assert kinds["packing"] == "enum" and kinds["shuffle"] == "bool" and kinds["sources"] == "object"
    with pytest.raises(groupmates.ConfigError, match=r"LoaderConfig.seed: -1 is outside \[0, 2\^64\)"):
        groupmates.LoaderConfig(seed=-1).to_core()
    with pytest.raises(groupmates.ConfigError, match=r"LoaderConfig.eos_id: 9223372036854775808 does not fit in int64"):
        groupmates.LoaderConfig(eos_id=1 << 63).to_core()
    with pytest.raises(groupmates.ConfigError, match=r"SelectionConfig.ratio: expected a number"):
        groupmates.SelectionConfig(ratio="half").to_core()
    with pytest.raises(groupmates.ConfigError, match=r"SelectionConfig.refresh_mode: 'later' is not one of"):
        groupmates.SelectionConfig(refresh_mode="later").to_core()
    with pytest.raises(groupmates.ConfigError, match=r"ProbeConfig.interval_steps: expected an integer"):
        groupmates.ProbeConfig(interval_steps=1.5).to_core()
    c = groupmates.LoaderConfig(sources=["a.bin", {"paths": "b.jsonl", "format": "jsonl"}], eos_id=-1).to_core()
    assert [s.paths for s in c.sources] == [["a.bin"], ["b.jsonl"]]
    assert c.sources[1].format == _core.SourceFormat.jsonl and c.eos_id == -1
    assert "batch_size=16" in repr(c)


def test_delivery_keywords_have_the_defaults_of_the_cpp_delivery_options(testhooks):
    # GroupMatesLoader's device= and pin_memory= are DeliveryOptions (include/groupmates/loader.h), applied
    # in Python to the batches of both extensions (device None = the CPU).
    import inspect
    import torch
    cpp = testhooks.delivery_defaults()
    params = inspect.signature(groupmates.GroupMatesLoader.__init__).parameters
    assert params["pin_memory"].default == cpp["pin_memory"]
    assert torch.device(params["device"].default or "cpu") == torch.device(cpp["device"])
