"""pytest setup for the benchmark suite: it is collected only when bench/ (or a file in it) is named
on the command line, so that `pytest .` or a stray rootdir run never starts the benchmarks."""
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def _targets_bench(config):
    for arg in config.args:
        path = (config.invocation_params.dir / str(arg).split("::")[0]).resolve()
        if path == BENCH_DIR or BENCH_DIR in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path, config):
    if not _targets_bench(config):
        return True
    return None
