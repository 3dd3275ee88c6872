"""The CUDA sources compile with nvcc for Ampere (sm_80) and Hopper (sm_90), no GPU needed.

nvcc compiles exactly the text the cupy launcher hands to NVRTC (``kernel_source``) down to a
cubin, so ptxas runs too; warnings are errors.
"""
import re
import shutil
import subprocess

import pytest

from convcore._gpu import KERNELS, SOURCE_DIR, SOURCES, kernel_source

NVCC = shutil.which("nvcc")


def test_every_gpu_source_is_compiled_and_hashed():
    """A new .cu/.cuh file must be part of the compiled source and of its cache key."""
    on_disk = {p.name for p in SOURCE_DIR.iterdir() if p.suffix in (".cu", ".cuh")}
    assert on_disk == set(SOURCES)


@pytest.mark.skipif(NVCC is None, reason="nvcc not found on PATH")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("real_t", ["float", "double"])
def test_nvcc_compiles(tmp_path, arch, real_t):
    source = tmp_path / f"convcore_{real_t}.cu"
    source.write_text(kernel_source(real_t))
    cmd = [NVCC, "-cubin", f"-arch={arch}", "--Werror", "all-warnings", f"-I{SOURCE_DIR}",
           str(source), "-o", str(tmp_path / "kernels.cubin")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "kernels.cubin").stat().st_size > 0


@pytest.mark.skipif(NVCC is None, reason="nvcc not found on PATH")
def test_kernel_names_are_unmangled_entry_points(tmp_path):
    """cupy's get_function looks kernels up by the names in KERNELS: extern "C", no mangling."""
    source = tmp_path / "convcore_float.cu"
    source.write_text(kernel_source("float"))
    ptx = tmp_path / "kernels.ptx"
    proc = subprocess.run([NVCC, "--ptx", "-arch=sm_80", f"-I{SOURCE_DIR}", str(source), "-o",
                           str(ptx)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    entries = set(re.findall(r"\.entry\s+(\w+)\(", ptx.read_text()))
    assert entries == set(KERNELS)


def _nvrtc():
    try:
        from cupy.cuda import nvrtc

        nvrtc.getVersion()
    except Exception as exc:  # cupy missing, or its NVRTC library missing
        pytest.skip(f"cupy's NVRTC is not usable here ({type(exc).__name__})")
    return nvrtc


@pytest.mark.parametrize("real_t", ["float", "double"])
def test_nvrtc_compiles(real_t):
    """NVRTC (what cupy.RawModule uses) accepts the source with the launcher's options; no GPU
    is needed for compiling to PTX."""
    nvrtc = _nvrtc()
    prog = nvrtc.createProgram(kernel_source(real_t), "convcore_kernels.cu", [], [])
    try:
        try:
            nvrtc.compileProgram(prog, ["-I" + str(SOURCE_DIR), "--gpu-architecture=compute_80"])
        except nvrtc.NVRTCError:
            pytest.fail(nvrtc.getProgramLog(prog))
        ptx = nvrtc.getPTX(prog)
    finally:
        nvrtc.destroyProgram(prog)
    ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
    assert set(re.findall(r"\.entry\s+(\w+)\(", ptx)) == set(KERNELS)
