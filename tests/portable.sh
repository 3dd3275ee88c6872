#!/usr/bin/env bash
# The kernel tests against a portable build (CONVCORE_PORTABLE=1: no -march=native, as for wheels),
# in a temporary copy of the sources: its SIMD vectors are narrower than this machine's (16 bytes
# on x86-64 without -march), which changes register blocks, tile sizes and path bounds.
#
# Usage (from anywhere in the repository): bash tests/portable.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
tree=$(mktemp -d "${TMPDIR:-/tmp}/convcore-portable.XXXXXX")
trap 'rm -rf "$tree"' EXIT
bash tests/copy_sources.sh "$tree"
cd "$tree"
echo "portable: building $(ls convcore/_kernels/*.pyx | wc -l) kernel modules without -march=native in $tree"
CONVCORE_PORTABLE=1 python setup.py -q build_ext --inplace -j "$(nproc)" >build.log 2>&1 || { cat build.log; exit 1; }
# the tests must import this tree's build, not an installed one
PYTHONPATH="$tree" python -c 'import sys, convcore; assert convcore.__file__.startswith(sys.argv[1]), convcore.__file__' "$tree"
PYTHONPATH="$tree" CI="${CI:-1}" python -m pytest -q -p no:cacheprovider tests/kernels "$@"
