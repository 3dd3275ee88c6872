#!/usr/bin/env bash
# Copy the repository's sources (the files git knows or would add, never build products) into the
# directory $1, laid out as the editable install maps them (pyproject's package-dir), so that a
# build and the tests there never reach the working tree's build. Used by sanitize.sh, portable.sh.
set -euo pipefail
tree=$1
repo=$(cd "$(dirname "$0")/.." && pwd)
git -C "$repo" ls-files -z --cached --others --exclude-standard \
    | (cd "$repo" && while IFS= read -r -d '' f; do if [ -f "$f" ]; then printf '%s\0' "$f"; fi; done) \
    | (cd "$repo" && tar --null -T - -cf -) | tar -xf - -C "$tree"
ln -s ../bindings "$tree/convcore/api"
ln -s ../r_compat "$tree/convcore/r_compat"
