#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian machine, then run them.
# Usage (from the repository root): bash tests/run_all.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# R for the r_compat tests (Debian's r-base-core; recommends would pull ~580 packages)
if ! command -v R >/dev/null 2>&1; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        r-base-core r-base-dev >/dev/null
fi

# torch==2.13.0 takes the CPU wheel; the [r] extra pins rpy2 to a release that works with R 4.2
python -m pip install -q -e ".[test,r]"

# the reproducible hypothesis profile ("ci", tests/conftest.py): this command is the gate, so it
# runs the same examples every time; a plain `pytest` draws new ones
export CI="${CI:-1}"
python -m pytest -q -p no:cacheprovider "$@"

# the kernels again, built with AddressSanitizer + UBSan in a temporary copy of the sources
bash tests/sanitize.sh -q

# and built portable (no -march=native, as for wheels): narrower vectors, other blocks and bounds
bash tests/portable.sh
