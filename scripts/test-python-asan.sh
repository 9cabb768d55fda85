#!/usr/bin/env bash
# The Python suite (tests/python) over extensions built with AddressSanitizer + UndefinedBehaviorSanitizer.
#   scripts/test-python-asan.sh BUILD_DIR CORPUS PYTHON [JOBS [PYTEST_ARGS...]]   (default: the whole suite,
#   e.g. ... 2 test_ranks.py -k launch)
# BUILD_DIR: a configured CMake tree with -DGROUPMATES_SANITIZE=address,undefined (make test-python-asan
# configures $(BUILD)-address). Builds _core, _engine, the test hooks and the SentencePiece shim there,
# lays them out beside the package's Python files in BUILD_DIR/python-asan/groupmates (symlinks: edits
# to python/groupmates show at once), and runs pytest with that package first on the path, in this
# process and in every interpreter the tests start (PYTHONPATH, LD_PRELOAD are inherited).
# The interpreter, numpy and torch are not instrumented: the ASan runtime is preloaded (it must come
# first), with libstdc++ (loaded after ASan by dlopen, its __cxa_throw would not be found by ASan's
# interceptor: every C++ exception would abort). Leak detection is off: the interpreter keeps its
# allocations to exit by design. Any report fails the run:
#  * ASan's (exit code 86), also in an interpreter a test starts and expects to fail or kills: written to
#    BUILD_DIR/python-asan/reports/, and any file there fails the run after pytest (printed);
#  * UBSan's (not recovered): the process exits with 86. GCC's UBSan beside ASan ignores log_path and
#    writes to stderr, so pytest runs with --capture=sys (the C++ side's stderr, with a report from
#    pytest's own process, reaches the terminal); in an interpreter a test starts, exit code 86 fails
#    the tests that check the exit code exactly (all but test_lifetime's Ctrl-C test, which checks != 0);
#    planted overflows were caught both ways.
set -euo pipefail
build=${1:?usage: $0 BUILD_DIR CORPUS PYTHON [JOBS [PYTEST_ARGS...]]}
corpus=${2:?corpus directory}
python=${3:?python interpreter, e.g. .venv/bin/python}
jobs=${4:-2}
shift $(( $# < 4 ? $# : 4 ))
[ $# -gt 0 ] || set -- .
repo=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$build" && pwd)
python=$(cd "$(dirname "$python")" && pwd)/$(basename "$python")

grep -q '^GROUPMATES_SANITIZE:STRING=address' "$build/CMakeCache.txt" ||
  { echo "test-python-asan: $build is not an ASan build (configure it with -DGROUPMATES_SANITIZE=address,undefined)" >&2; exit 2; }
cmake --build "$build" -j"$jobs" --target groupmates_python groupmates_engine groupmates_testhooks groupmates_spm

pkg=$build/python-asan/groupmates
rm -rf "$build/python-asan"
mkdir -p "$pkg"
# The package's own files only (an in-place build's extensions there must not be linked, nor written through).
for f in "$repo"/python/groupmates/*.py "$repo"/python/groupmates/*.pyi "$repo"/python/groupmates/py.typed; do
  [ -e "$f" ] || { echo "test-python-asan: $f not found (python/groupmates changed? update this script)" >&2; exit 2; }
  ln -s "$f" "$pkg/"
done
cp "$build"/python/_core.*.so "$build"/python/_engine.*.so "$build"/loader/libgroupmates_spm.so "$pkg/"

# The runtimes of the compiler that built the tree (GCC's names; a clang tree is refused).
cxx=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt")
[ -n "$cxx" ] || { echo "test-python-asan: no CMAKE_CXX_COMPILER in $build/CMakeCache.txt" >&2; exit 2; }
asan=$("$cxx" -print-file-name=libasan.so)
stdcxx=$("$cxx" -print-file-name=libstdc++.so)
[ -f "$asan" ] && [ -f "$stdcxx" ] ||
  { echo "test-python-asan: $cxx has no libasan.so / libstdc++.so (GCC's runtimes are preloaded; build the tree with g++)" >&2; exit 2; }

# The package must come from here, not from an installed copy.
check="import groupmates._core as c, groupmates._engine as e; assert c.__file__.startswith('$pkg') and e.__file__.startswith('$pkg'), (c.__file__, e.__file__)"
export PYTHONPATH=$build/python-asan${PYTHONPATH:+:$PYTHONPATH}
export LD_PRELOAD="$asan $stdcxx"
reports=$build/python-asan/reports
mkdir -p "$reports"
print_reports() {
  compgen -G "$reports/*" >/dev/null || return 0
  echo "test-python-asan: sanitizer reports (in $reports):" >&2
  for f in "$reports"/*; do echo "--- $f" >&2; head -60 "$f" >&2; done
  return 1
}
trap 'print_reports || true' ERR
unset GROUPMATES_SPM_SHIM  # the shim beside the instrumented _core, not one named by the caller
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:exitcode=86:log_path=$reports/asan
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=86
export GROUPMATES_ENGINE_BUILD_DIR=$build GROUPMATES_CORPUS=$corpus
"$python" -c "$check"
echo "== tests/python with _core, _engine and the test hooks under -fsanitize=address,undefined"
rc=0
# Forking with live threads is deselected here: GCC 12's ASan allocator has no fork handlers (LLVM added them in
# Dec 2023, llvm-project #75290), so a forked DataLoader worker can deadlock on an allocator lock another thread
# held at the fork (seen: a worker blocked in SizeClassAllocator64::GetFromAllocator for 15 minutes). glibc's
# allocator is fork-safe: the plain Python run (make test-python) keeps those tests.
(cd "$repo/tests/python" && "$python" -m pytest -q -p no:cacheprovider --capture=sys -m "not forks_with_threads" "$@") || rc=$?
trap - ERR
print_reports || exit 1
[ $rc -eq 0 ] || { echo "test-python-asan: pytest failed (exit $rc)" >&2; exit $rc; }
echo "test-python-asan: passed, no sanitizer report"
