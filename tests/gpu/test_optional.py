"""cupy stays optional: importing convcore never imports it, and the probe never raises."""
import subprocess
import sys

from convcore import _gpu


def _run(code):
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_import_does_not_import_cupy():
    out = _run("import sys, convcore, convcore._gpu, convcore._gpu._plan; "
               "print('cupy' in sys.modules)")
    assert out.strip() == "False"


def test_probe_without_cupy():
    # sys.modules["cupy"] = None makes `import cupy` raise ImportError, as on a machine without it
    out = _run("import sys; sys.modules['cupy'] = None; from convcore import _gpu; "
               "print(_gpu.available()); print(_gpu.describe())")
    available, description = out.splitlines()
    assert available == "False"
    assert description.startswith("unavailable: cupy cannot be imported")


def test_probe_here():
    available = _gpu.available()
    description = _gpu.describe()
    assert isinstance(available, bool) and isinstance(description, str)
    assert description.startswith("cupy ") if available else description.startswith("unavailable")
