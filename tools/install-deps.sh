#!/usr/bin/env bash
# Installs the Debian packages parml needs to build, test and run its demo,
# when they are missing. Safe to run again; does nothing when all are present.
set -euo pipefail

pkgs=(
  libopenblas-dev        # OpenBLAS (libparml dlopens libopenblas.so.0)
  zlib1g-dev             # gzip-compressed IDX files
  gzip                   # test_api writes gzipped IDX files (Essential: normally present)
  libprotobuf-c-dev      # protobuf-c runtime for model/checkpoint files
  protobuf-c-compiler    # protoc-c, regenerates proto code
  protobuf-compiler      # protoc: the exchange test's Python reader and protoc --decode
  dataset-fashion-mnist  # the demo's data, under /usr/share/datasets/fashion-mnist
  valgrind               # leak check of a C host in make test
  pkg-config             # tests/install builds a host from parml.pc
  cmake                  # tests/install builds hosts with find_package(parml)
  python3                # header generator
  libopenmpi-dev         # <mpi.h> for the MPI shim (libparml dlopens libmpi.so.40)
  libdnnl-dev            # oneDNN's headers for the conv2d shim; pulls libdnnl2 (libparml dlopens libdnnl.so.2)
  openmpi-bin            # mpirun, for the MPI tests and multi-process jobs
  libssl3                # OpenSSL's libcrypto: HMAC-SHA-256 of authenticated files (libparml dlopens libcrypto.so.3)
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The Python bindings' tests (make test-python) need numpy and pytest; the
# file tests read parml's files with the standard protobuf package and run
# exported ONNX files with onnxruntime; make wheel builds with setuptools and
# wheel, without build isolation (no download at build time).
if ! python3 -c "import numpy, pytest, google.protobuf, onnxruntime, wheel, setuptools" 2>/dev/null; then
  echo "installing Python packages: numpy pytest protobuf onnxruntime wheel setuptools"
  python3 -m pip install --quiet numpy pytest protobuf onnxruntime wheel setuptools
fi

# The privacy accountant's oracle (bindings/python/tests/test_privacy.py
# skips its comparisons without it): Google's dp-accounting.
if ! python3 -c "import dp_accounting" 2>/dev/null; then
  echo "installing Python package: dp-accounting"
  python3 -m pip install --quiet dp-accounting
fi
# The metrics tests (bindings/python/tests/test_imbalance.py) check parml's
# figures against scikit-learn's on the same predictions; without it they
# skip, so a failed install is reported, not fatal.
if ! python3 -c "import sklearn" 2>/dev/null; then
  echo "installing Python package: scikit-learn"
  python3 -m pip install --quiet scikit-learn || echo "scikit-learn did not install: the metrics comparisons will skip"
fi
