#!/usr/bin/env bash
# The Python suite (tests/python) over extensions built with AddressSanitizer + UndefinedBehaviorSanitizer.
#   scripts/test-python-asan.sh BUILD_DIR CORPUS PYTHON [JOBS]
# BUILD_DIR: a configured CMake tree with -DGROUPMATES_SANITIZE=address,undefined (make test-python-asan
# configures $(BUILD)-address). Builds _core, _engine, the test hooks and the SentencePiece shim there,
# lays them out beside the package's Python files in BUILD_DIR/python-asan/groupmates (symlinks: edits
# to python/groupmates show at once), and runs pytest with that package first on the path, in this
# process and in every interpreter the tests start (PYTHONPATH, LD_PRELOAD are inherited).
# The interpreter, numpy and torch are not instrumented: the ASan runtime is preloaded (it must come
# first), with libstdc++ (loaded after ASan by dlopen, its __cxa_throw would not be found by ASan's
# interceptor: every C++ exception would abort). Leak detection is off: the interpreter keeps its
# allocations to exit by design. Any ASan or UBSan report fails the run, also one in an interpreter a
# test starts and expects to fail or kills: reports are written to BUILD_DIR/python-asan/reports/ and
# any file there fails the run after pytest (printed).
set -euo pipefail
build=${1:?usage: $0 BUILD_DIR CORPUS PYTHON [JOBS]}
corpus=${2:?corpus directory}
python=${3:?python interpreter, e.g. .venv/bin/python}
jobs=${4:-2}
repo=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$build" && pwd)
python=$(cd "$(dirname "$python")" && pwd)/$(basename "$python")

grep -q '^GROUPMATES_SANITIZE:STRING=address' "$build/CMakeCache.txt" ||
  { echo "test-python-asan: $build is not an ASan build (configure it with -DGROUPMATES_SANITIZE=address,undefined)" >&2; exit 2; }
cmake --build "$build" -j"$jobs" --target groupmates_python groupmates_engine groupmates_testhooks groupmates_spm

pkg=$build/python-asan/groupmates
rm -rf "$build/python-asan"
mkdir -p "$pkg"
for f in "$repo"/python/groupmates/*; do ln -s "$f" "$pkg/"; done
cp "$build"/python/_core.*.so "$build"/python/_engine.*.so "$build"/loader/libgroupmates_spm.so "$pkg/"

asan=$(gcc -print-file-name=libasan.so)
stdcxx=$(gcc -print-file-name=libstdc++.so)
[ -f "$asan" ] && [ -f "$stdcxx" ] || { echo "test-python-asan: libasan or libstdc++ not found (gcc -print-file-name)" >&2; exit 2; }

# The package must come from here, not from an installed copy.
check="import groupmates._core as c, groupmates._engine as e; assert c.__file__.startswith('$pkg') and e.__file__.startswith('$pkg'), (c.__file__, e.__file__)"
export PYTHONPATH=$build/python-asan${PYTHONPATH:+:$PYTHONPATH}
export LD_PRELOAD="$asan $stdcxx"
reports=$build/python-asan/reports
mkdir -p "$reports"
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:log_path=$reports/asan
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan
export GROUPMATES_ENGINE_BUILD_DIR=$build GROUPMATES_CORPUS=$corpus
"$python" -c "$check"
echo "== tests/python with _core, _engine and the test hooks under -fsanitize=address,undefined"
rc=0
(cd "$repo/tests/python" && "$python" -m pytest -q -p no:cacheprovider .) || rc=$?
if compgen -G "$reports/*" >/dev/null; then
  echo "test-python-asan: sanitizer reports (in $reports):" >&2
  for f in "$reports"/*; do echo "--- $f" >&2; head -60 "$f" >&2; done
  exit 1
fi
[ $rc -eq 0 ] || { echo "test-python-asan: pytest failed (exit $rc)" >&2; exit $rc; }
echo "test-python-asan: passed, no sanitizer report"
