#!/usr/bin/env bash
# Installs the build tree into a fresh prefix and builds/runs a find_package(groupmates) consumer.
#   consume.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1 build=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/gm_install_XXXXXX")
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$src/tests/install/consumer" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/build" -j2 >/dev/null
/usr/bin/python3 -c "import array,sys; array.array('H', range(1, 65)).tofile(open(sys.argv[1], 'wb'))" "$work/tokens.bin"
out=$("$work/build/consumer" "$work/tokens.bin")
echo "$out"
[[ "$out" == "consumer: batch [2, 8], first token "* ]]
test -x "$work/prefix/bin/groupmates"
test -f "$work/prefix/lib/groupmates/libgroupmates_spm.so"
echo "install + find_package consumer: ok"
