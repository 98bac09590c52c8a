#!/usr/bin/env bash
# Download the wheels of scripts/gpu_wheels.txt into .whl/ (git-ignored) for the device machine:
# CPython 3.12, manylinux x86-64, no dependencies (the device image has them). Run here, where PyPI is
# reachable, before carrying the tree to the device; never run by the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
grep -v '^\s*#' scripts/gpu_wheels.txt | sed 's/#.*//; s/\s*$//' | grep . > .whl/requirements.txt
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --platform any -d .whl -r .whl/requirements.txt
rm .whl/requirements.txt
ls -l .whl
