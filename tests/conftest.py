"""Test-wide setup: ``tests/`` importable (``from reference import ...``) and hypothesis profiles.

Profile "ci" (selected when the CI environment variable is set) is reproducible and bounded;
"dev" (the default) tries more, and new, examples on every run.
"""
import os
import sys

from hypothesis import settings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=300, print_blob=True)
settings.register_profile("dev", deadline=None, max_examples=1000)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_configure(config):
    # On a failure hypothesis imports libcst, whose mypy_extensions import warns; with
    # filterwarnings=error that warning would replace the real failure report.
    config.addinivalue_line("filterwarnings", "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")
