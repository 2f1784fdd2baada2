#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs the Debian 12 packages pith needs; installs nothing when they are all present.
#   cmake/setup-debian.sh            build, test and benchmark dependencies (PCRE2 and utf8proc for the
#                                    BPE tokenizer, target pith::bpe; pybind11, the Python headers, numpy
#                                    and pytest for the Python module and its tests, PITH_BUILD_PYTHON)
#   cmake/setup-debian.sh --ci       also the aarch64 cross toolchain, qemu-user and clang
#   cmake/setup-debian.sh --python   also the Python reference (python3-torch, numpy, OpenBLAS, matplotlib) and
#                                    what installs the module into a virtual environment (venv, pip, setuptools)
set -eu

packages="cmake make g++ pkg-config libeigen3-dev nlohmann-json3-dev libpcre2-dev libutf8proc-dev libgtest-dev libbenchmark-dev"
packages="$packages pybind11-dev python3-dev python3-numpy python3-pytest"
for flag in "$@"; do
  case "$flag" in
    --ci) packages="$packages g++-aarch64-linux-gnu qemu-user clang libclang-rt-14-dev" ;;
    --python) packages="$packages python3-torch python3-numpy libopenblas0-pthread python3-matplotlib python3-venv python3-pip python3-setuptools" ;;
    *) echo "setup-debian.sh: unknown option '$flag' (use --ci or --python)" >&2; exit 2 ;;
  esac
done

missing=""
for package in $packages; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing="$missing $package"
  fi
done

if [ -z "$missing" ]; then
  exit 0
fi

echo "setup-debian.sh: installing$missing" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
$sudo apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
