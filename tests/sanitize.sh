#!/usr/bin/env bash
# Run the kernel test corpus against kernels built with AddressSanitizer + UndefinedBehaviorSanitizer.
#
# The working tree is never rebuilt: its tracked and untracked-but-not-ignored files are copied to a
# temporary directory, the extensions are built there (setup.py's CONVCORE_SANITIZE switch), and
# pytest runs there with libasan preloaded (the Python interpreter itself is not instrumented).
# Every convcore/_kernels/*.pyx is built and must be loaded by some test, so new kernel files are
# covered as soon as they have tests. Exits non-zero on any test failure or sanitizer report,
# including reports from subprocesses.
#
# Usage (from anywhere in the repository): bash tests/sanitize.sh [extra pytest args]
#   CONVCORE_SANITIZE_KEEP=1  keep the temporary tree (its path is printed) to rerun or debug in it
#   CONVCORE_SANITIZE=...     sanitizers to use (default: address,undefined)
set -euo pipefail
cd "$(dirname "$0")/.."

tree=$(mktemp -d "${TMPDIR:-/tmp}/convcore-sanitize.XXXXXX")
if [ "${CONVCORE_SANITIZE_KEEP:-0}" = 1 ]; then
    echo "sanitize: tree kept in $tree"
else
    trap 'rm -rf "$tree"' EXIT
fi

bash tests/copy_sources.sh "$tree"
cd "$tree"

echo "sanitize: building $(ls convcore/_kernels/*.pyx | wc -l) kernel modules in $tree"
CONVCORE_SANITIZE="${CONVCORE_SANITIZE:-address,undefined}" \
    python setup.py -q build_ext --inplace -j "$(nproc)" >build.log 2>&1 \
    || { cat build.log; exit 1; }

libasan=$(gcc -print-file-name=libasan.so)
[ -f "$libasan" ] || { echo "sanitize: libasan not found (gcc -print-file-name=libasan.so)"; exit 1; }
# libstdc++ preloaded too: ASan intercepts __cxa_throw only if libstdc++ is loaded when ASan starts,
# and torch (the tests' oracle) throws C++ exceptions for every call it rejects.
libstdcxx=$(gcc -print-file-name=libstdc++.so)

tests=(tests/kernels)
for d in tests/api tests/reliability; do [ -d "$d" ] && tests+=("$d"); done

reports="$tree/sanitizer-report"
rc=0
# detect_leaks=0: the interpreter leaks by design. allocator_may_return_null=1 with
# max_allocation_size_mb: an allocation over 4 GiB returns NULL (a MemoryError), as a failed one does
# without the sanitizer, instead of aborting or (memory overcommitted) being written into swap.
# ASan writes to log files; UBSan ignores log_path here, so it writes to stderr, which
# --capture=sys leaves uncaptured (fd-level capture would lose a report when the process halts).
# exitcode=86 tells a sanitizer's halt from a test failure.
# CI=1: the reproducible, bounded hypothesis profile; CONVCORE_FUZZ_EXAMPLES: a shorter fuzz run.
env PYTHONPATH="$tree:$tree/tests/reliability" \
    LD_PRELOAD="$libasan $libstdcxx" \
    ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:max_allocation_size_mb=4096:halt_on_error=1:exitcode=86:log_path=$reports" \
    UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=86" \
    CONVCORE_SANITIZED_TREE="$tree" CI="${CI:-1}" CONVCORE_FUZZ_EXAMPLES="${CONVCORE_FUZZ_EXAMPLES:-300}" \
    python -m pytest -q -p no:cacheprovider --capture=sys -p sanitize_plugin "${tests[@]}" "$@" 2>&1 \
    | tee "$tree/pytest.log" || rc=$?

# Any report is a failure, warnings included: "failed to allocate" means something tried to allocate
# over 4 GiB, which convcore's size checks should have refused first.
if compgen -G "$reports.*" >/dev/null; then
    echo "sanitize: AddressSanitizer reports:"
    cat "$reports".*
    exit 1
fi
if grep -q "runtime error:" "$tree/pytest.log"; then
    echo "sanitize: UndefinedBehaviorSanitizer reports above"
    exit 1
fi
exit "$rc"
