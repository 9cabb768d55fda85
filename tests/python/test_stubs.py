"""The package is typed (py.typed) and its extensions have stubs (_core.pyi, _engine.pyi) that name
what the modules hold; mypy reads them (a typo in an attribute of the typed stats is an error)."""
import ast
import inspect
import os
import shutil
import subprocess
import sys

import pytest

import groupmates
from groupmates import _core

PACKAGE = os.path.dirname(groupmates.__file__)
PYBIND_ENUM = {"name", "value"}


def stub_names(path):
    """{top-level name: set of member names (classes, with their stub bases' members) or None}."""
    tree = ast.parse(open(path).read())
    classes, out = {}, {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            members = set()
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AnnAssign)):
                    name = item.name if isinstance(item, ast.FunctionDef) else item.target.id
                    members.add(name)
            for base in node.bases:
                if isinstance(base, ast.Name) and base.id in classes:
                    members |= classes[base.id]
            classes[node.name] = members
            out[node.name] = members
        elif isinstance(node, ast.FunctionDef):
            out[node.name] = None
        elif isinstance(node, ast.AnnAssign):
            out[node.target.id] = None
    return out


def runtime_names(module):
    out = {}
    for name, value in vars(module).items():
        if name.startswith("__"):
            continue
        if inspect.isclass(value):
            out[name] = {n for n in dir(value) if not n.startswith("_") or n == "_fields"} - PYBIND_ENUM
        else:
            out[name] = None
    return out


def compare(module, stub):
    # _Stub* classes are the stubs' own helpers (common members of enums and structs)
    want = {k: v for k, v in stub_names(stub).items() if not k.startswith("_Stub")}
    got = runtime_names(module)
    assert set(got) == set(want), f"only in the module: {set(got) - set(want)}; only in the stub: {set(want) - set(got)}"
    for name, members in got.items():
        if members is not None:
            stubbed = {m for m in want[name] if not m.startswith("_") or m == "_fields"} - PYBIND_ENUM
            assert members == stubbed, f"{name}: only in the module {members - stubbed}, only in the stub {stubbed - members}"


def test_package_is_typed():
    assert os.path.exists(os.path.join(PACKAGE, "py.typed"))


def test_core_stub_names_what_the_module_has():
    compare(_core, os.path.join(PACKAGE, "_core.pyi"))


def test_engine_stub_names_what_the_module_has():
    if not groupmates.engine_available():
        pytest.skip(f"groupmates._engine did not import: {groupmates.engine_error()}")
    from groupmates import _engine
    compare(_engine, os.path.join(PACKAGE, "_engine.pyi"))


GOOD = '''
import groupmates
loader = groupmates.GroupMatesLoader(sources=["x.bin"], sequence_length=8, labels=True)
s: groupmates.SelectionStats = loader.selection_stats()
share: float = s.probes.probe_share
per_cluster: list = s.selected_share_per_cluster
metrics: dict = loader.metrics()
core: groupmates._core.LoaderConfig = loader.config.to_core()
n: int = core.sequence_length + groupmates.IGNORE_INDEX
'''


def run_mypy(tmp_path, code):
    if shutil.which("mypy") is None and subprocess.run([sys.executable, "-c", "import mypy"]).returncode != 0:
        pytest.fail("mypy is not installed (scripts/install-deps.sh installs python3-mypy)")
    (tmp_path / "mypy.ini").write_text("[mypy]\nignore_missing_imports = True\n"
                                       "[mypy-torch.*]\nfollow_imports = skip\n[mypy-numpy.*]\nfollow_imports = skip\n")
    (tmp_path / "use.py").write_text(code)
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(tmp_path / "mypy.ini"),
                           "--no-incremental", str(tmp_path / "use.py")],
                          capture_output=True, text=True, timeout=300, cwd=str(tmp_path))


def test_mypy_accepts_typed_use_and_catches_a_wrong_attribute(tmp_path):
    ok = run_mypy(tmp_path, GOOD)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = run_mypy(tmp_path, GOOD + "x = loader.selection_stats().probes.probe_shares\n"
                   "y: str = loader.config.to_core().sequence_length\n")
    assert bad.returncode == 1, bad.stdout
    assert 'has no attribute "probe_shares"' in bad.stdout and "Incompatible types in assignment" in bad.stdout
