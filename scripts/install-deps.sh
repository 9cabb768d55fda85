#!/usr/bin/env bash
# Installs every system dependency of groupmates by Debian package name.
# Idempotent; run as root on Debian 12. Needs only Debian's package registry.
set -euo pipefail

PACKAGES=(
  build-essential cmake make ccache pkg-config git
  libtorch-dev python3-torch libopenblas0-pthread
  libboost-dev libconcurrentqueue-dev libxxhash-dev
  libsentencepiece-dev sentencepiece
  libsimdjson-dev libzstd-dev zstd
  pybind11-dev python3-pybind11 python3-setuptools python3-venv python3-pip python3-numpy python3-pytest python3-matplotlib
  libgtest-dev googletest
  libcli11-dev nlohmann-json3-dev libfmt-dev
  python3-mypy  # tests/python/test_stubs.py type-checks a use of the package's stubs
  clang libclang-rt-14-dev  # make fuzz: libFuzzer + ASan/UBSan
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: run this script as root (apt-get install needs it)" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
