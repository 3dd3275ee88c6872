"""Peer table: convcore against torch and onnxruntime on the cases of bench/cases.py.

    python bench/peers.py [--threads 2] [--repeat 15] [--cases NAME ...] [--dtypes float32 float64]
                          [--markdown] [--json results.json] [--no-memory]

Per case and dtype: median ms of convcore, torch and onnxruntime (float32 only), the ratio best peer
/ convcore (> 1: convcore is faster), convcore's GFLOP/s and its share of the GEMM peak (scipy's
BLAS, the one convcore calls, timed in the same rounds as the case so that both see the same load),
and convcore's peak extra memory. Geomeans and the issue's targets are summarised at the bottom.

Timing: every implementation runs once to check its output against torch, then warms up; then the
timed samples go round-robin (convcore, torch, onnxruntime, GEMM, convcore, ...) so that load from
other processes hits all of them alike. A sample is enough back-to-back calls to last ``--min-sample``
seconds, divided by their count; the table shows the median of ``--repeat`` samples.

Memory: each case runs in a fresh subprocess: after one warm-up call the kernel's peak RSS counter
(VmHWM) is reset through /proc/self/clear_refs, then one call runs; the extra memory is the peak
RSS minus the RSS before the call minus the output array. tracemalloc cannot see C buffers. glibc
runs with a fixed mmap threshold of 64 KiB so that every large buffer is mapped and unmapped per
call (resolution: a few pages, plus up to one huge page of the output).
"""
import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

import convcore

import cases
import runners

# Pause between samples of different implementations, so that one library's spinning OpenMP or
# onnxruntime workers have gone to sleep before the next library's sample starts.
SWITCH_PAUSE_S = 0.25  # > OpenBLAS's and onnxruntime's spin-wait after a call (~0.1-0.2 s here)
GEMM_SIZE = 2048  # square GEMM of the peak reported once per run: ~17 GFLOP, steady state
ROUND_GEMM_SIZE = 1536  # the GEMM timed in each case's rounds: near the peak at a third of the cost


def median_ms(fns, repeat, warmup, min_sample):
    """{impl: median ms}: warm-up, calibrate calls per sample, then interleaved timed samples."""
    inner = {}
    for impl, fn in fns.items():
        for _ in range(warmup):
            fn()
        start = time.perf_counter()
        fn()
        once = time.perf_counter() - start
        inner[impl] = max(1, math.ceil(min_sample / max(once, 1e-9)))
    samples = {impl: [] for impl in fns}
    for _ in range(repeat):
        for impl, fn in fns.items():
            time.sleep(SWITCH_PAUSE_S)
            n = inner[impl]
            start = time.perf_counter()
            for _ in range(n):
                fn()
            samples[impl].append((time.perf_counter() - start) / n)
    return {impl: 1e3 * statistics.median(s) for impl, s in samples.items()}


def make_gemm(dtype, n):
    """Square n x n GEMM through scipy's BLAS (convcore's BLAS), operands in Fortran order so that
    f2py passes them without a copy; also returns the operands for other GEMMs."""
    from scipy.linalg import blas

    rng = np.random.default_rng(0)
    a, b = (np.asfortranarray(rng.standard_normal((n, n)).astype(dtype)) for _ in range(2))
    gemm = blas.sgemm if np.dtype(dtype) == np.float32 else blas.dgemm
    return (lambda: gemm(1.0, a, b)), a, b


def _gemm_gflops(n, ms):
    return 2 * n**3 / (ms * 1e-3) / 1e9


def gemm_peak(dtype, threads, repeat=5):
    """GFLOP/s of scipy's BLAS GEMM and of numpy's matmul, square GEMM_SIZE."""
    scipy_gemm, a, b = make_gemm(dtype, GEMM_SIZE)
    with threadpool_limits(limits=threads, user_api="blas"):
        ms = median_ms({"scipy": scipy_gemm, "numpy": lambda: a @ b}, repeat, 1, 0.0)
    return {k: _gemm_gflops(GEMM_SIZE, v) for k, v in ms.items()}


def check(case, dtype, ref, got):
    atol, rtol = cases.tolerance(case, dtype)
    return got.shape == ref.shape and bool(np.allclose(got, ref, atol=atol, rtol=rtol))


def measure(case, dtype, impls, args):
    x, w, b = case.inputs(dtype)
    fns = {impl: runners.make(impl, case, x, w, b, args.threads) for impl in impls}
    ok = {}
    if "torch" in fns:
        ref = fns["torch"]()
        ok = {impl: check(case, dtype, ref, fn()) for impl, fn in fns.items() if impl != "torch"}
        for impl, good in ok.items():
            if not good:
                print(f"WARNING: {impl} differs from torch on {case.name} {np.dtype(dtype).name}", file=sys.stderr)
    fns["gemm"] = make_gemm(dtype, ROUND_GEMM_SIZE)[0]
    with threadpool_limits(limits=args.threads, user_api="blas"):
        ms = median_ms(fns, args.repeat, args.warmup, args.min_sample)
    return ms, _gemm_gflops(ROUND_GEMM_SIZE, ms.pop("gemm")), ok


def memory_probe(name, dtype, threads):
    """Run in a fresh process: convcore's extra peak RSS for one call, in bytes (None where the
    kernel does not let us reset the peak counter)."""
    case = cases.BY_NAME[name]
    convcore.set_num_threads(threads)  # not runners.set_threads: importing torch here is not needed
    x, w, b = case.inputs(dtype)
    fn = runners.make_convcore(case, x, w, b, threads)
    with threadpool_limits(limits=threads, user_api="blas"):
        # warm-up: thread pools, BLAS buffers, lazy imports are not per-call memory; its output
        # is kept, so that the measured call's output is new memory (not a recycled buffer)
        warm = fn()  # noqa: F841
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
        except OSError:
            return None
        before = _status_kb("VmRSS")
        y = fn()
        peak = _status_kb("VmHWM")
    # page-granular RSS accounting can dip a few pages below zero when the call frees memory
    return max(0, (peak - before) * 1024 - y.nbytes)


def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def extra_memory(case, dtype, threads):
    # A fixed mmap threshold turns off glibc's dynamic one: otherwise the warm-up call's freed
    # scratch raises the threshold, stays in the heap, and the measured call reuses it unseen.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--memory-probe", case.name, np.dtype(dtype).name,
         "--threads", str(threads)],
        capture_output=True, text=True, env=env,
    )
    if out.returncode:
        raise RuntimeError(f"memory probe of {case.name} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(args):
    load_before = os.getloadavg()[0]
    runners.set_threads(args.threads)
    dtypes = [np.dtype(d) for d in args.dtypes]
    impls = [i for i in runners.IMPLS if runners.available(i)]
    missing = sorted(set(runners.IMPLS) - set(impls))
    peaks = {d.name: gemm_peak(d, args.threads) for d in dtypes}
    rows = []
    for case in cases.select(args.cases):
        for dtype in dtypes:
            ms, peak, ok = measure(case, dtype, [i for i in impls if runners.supports(i, dtype)], args)
            peers = {p: ms[p] for p in runners.PEERS if p in ms}
            gflops = case.flops / (ms["convcore"] * 1e-3) / 1e9
            row = dict(
                case=case.name, op=case.op, input=list(case.x_shape), weight=list(case.w_shape),
                kwargs=case.kwargs, dtype=dtype.name, flops=case.flops,
                ms={impl: ms.get(impl) for impl in runners.IMPLS},
                best_peer_over_convcore=min(peers.values()) / ms["convcore"] if peers else None,
                gflops=gflops, gemm_gflops=peak, pct_peak=100 * gflops / peak,
                matches_torch=ok,
                extra_mb=None if args.no_memory else _mb(extra_memory(case, dtype, args.threads)),
            )
            rows.append(row)
            # in markdown mode stdout carries only the table; progress goes to stderr
            print(_text_line(row), file=sys.stderr if args.markdown else sys.stdout, flush=True)
    meta = _meta(args, missing)
    meta["load_average_1min"] = [load_before, os.getloadavg()[0]]  # other processes skew every number
    return dict(meta=meta, gemm_peak_gflops=peaks, rows=rows, summary=summary(rows))


def _mb(nbytes):
    return None if nbytes is None else nbytes / 2**20


def _geomean(values):
    values = [v for v in values if v]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def summary(rows):
    """Per dtype: geomeans of each peer's time over convcore's, the worst case, and the issue's
    targets (float32 >= 1.0x best peer everywhere and geomean >= 1.5x; float64 geomean >= 3x torch;
    GEMM-bound cases >= 70% of peak; extra memory <= 64 MB)."""
    result = {}
    for dtype in sorted({r["dtype"] for r in rows}):
        sel = [r for r in rows if r["dtype"] == dtype]
        ratios = [r for r in sel if r["best_peer_over_convcore"]]
        s = {
            "geomean_best_peer_over_convcore": _geomean(r["best_peer_over_convcore"] for r in ratios),
            **{f"geomean_{p}_over_convcore": _geomean(r["ms"][p] / r["ms"]["convcore"] for r in sel if r["ms"][p])
               for p in runners.PEERS},
            "worst": min(ratios, key=lambda r: r["best_peer_over_convcore"])["case"] if ratios else None,
            "min_best_peer_over_convcore": min((r["best_peer_over_convcore"] for r in ratios), default=None),
            "gemm_bound_pct_peak": {r["case"]: r["pct_peak"] for r in sel if r["case"] in cases.GEMM_BOUND},
            "median_round_gemm_gflops": statistics.median(r["gemm_gflops"] for r in sel),
            "max_extra_mb": max((r["extra_mb"] for r in sel if r["extra_mb"] is not None), default=None),
            "all_match_torch": all(all(r["matches_torch"].values()) for r in sel),
        }
        result[dtype] = s
    return result


def _fmt(v, spec):
    """``format(v, spec)``, or a dash of the same width for a missing value."""
    if v is None:
        width = "".join(ch for ch in spec.split(".")[0] if ch.isdigit())
        return f"{'-':>{width}}" if width else "-"
    return format(v, spec)


def _text_line(r):
    ms = r["ms"]
    wrong = [impl for impl, good in r["matches_torch"].items() if not good]
    bad = "  MISMATCH " + ",".join(wrong) if wrong else ""
    return (f"{r['case']:<16}{r['dtype']:<9}{_fmt(ms['convcore'], '10.3f')}{_fmt(ms['torch'], '>10.3f')}"
            f"{_fmt(ms['onnxruntime'], '>10.3f')}{_fmt(r['best_peer_over_convcore'], '>8.2f')}"
            f"{r['gflops']:>9.1f}{r['pct_peak']:>7.1f}{_fmt(r['extra_mb'], '>9.1f')}{bad}")


TEXT_HEADER = (f"{'case':<16}{'dtype':<9}{'convcore':>10}{'torch':>10}{'ort':>10}{'peer/cc':>8}"
               f"{'GFLOP/s':>9}{'%peak':>7}{'extraMB':>9}")


def _summary_lines(result):
    lines = []
    peaks = result["gemm_peak_gflops"]
    for dtype, s in result["summary"].items():
        p = peaks[dtype]
        lines.append(
            f"{dtype}: geomean best peer/convcore {_fmt(s['geomean_best_peer_over_convcore'], '.2f')}x "
            f"(torch {_fmt(s['geomean_torch_over_convcore'], '.2f')}x, "
            f"onnxruntime {_fmt(s['geomean_onnxruntime_over_convcore'], '.2f')}x); "
            f"worst {s['worst']} {_fmt(s['min_best_peer_over_convcore'], '.2f')}x; "
            f"GEMM-bound % of peak: "
            + ", ".join(f"{k} {v:.0f}%" for k, v in s["gemm_bound_pct_peak"].items())
            + f"; max extra memory {_fmt(s['max_extra_mb'], '.1f')} MB; "
            f"GEMM peak {p['scipy']:.0f} GFLOP/s (scipy BLAS, {GEMM_SIZE}^3, at the start; median over the "
            f"cases' rounds {s['median_round_gemm_gflops']:.0f}), numpy matmul {p['numpy']:.0f}"
            + ("" if s["all_match_torch"] else "; SOME OUTPUTS DIFFER FROM TORCH")
        )
    return lines


def _ms(v):
    """Milliseconds with three significant digits (0.022, 5.74, 29.4, 102)."""
    if v is None:
        return "-"
    return f"{v:.3g}" if v >= 100 else f"{v:.{max(0, 2 - int(math.floor(math.log10(v))))}f}" if v > 0 else "0"


def markdown(result):
    """The README's table: one row per case, float32 against the best peer, float64 against torch."""
    m = result["meta"]
    by_case = {}
    for r in result["rows"]:
        by_case.setdefault(r["case"], {})[r["dtype"]] = r
    out = [
        f"convcore {m['convcore']}, torch {m['torch']}, onnxruntime {m['onnxruntime']}, numpy {m['numpy']}, "
        f"scipy {m['scipy']}; {m['cpu']}; {m['threads']} threads; median of {m['repeat']} interleaved samples, "
        f"times in ms; 1-min load average {m['load_average_1min'][0]:.1f} before, "
        f"{m['load_average_1min'][1]:.1f} after.",
        "",
        "| case | fp32 convcore | torch | onnxruntime | best peer / convcore | fp64 convcore | torch "
        "| torch / convcore | % GEMM peak (fp32, fp64) | extra MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case, rows in by_case.items():
        f32, f64 = rows.get("float32"), rows.get("float64")
        cells = [case]
        for r, peer in ((f32, "best_peer_over_convcore"), (f64, None)):
            if r is None:
                cells += ["-"] * (4 if peer else 3)
                continue
            flag = "" if all(r["matches_torch"].values()) else " (differs from torch!)"
            cells.append(_ms(r["ms"]["convcore"]) + flag)
            cells.append(_ms(r["ms"]["torch"]))
            if peer:
                cells.append(_ms(r["ms"]["onnxruntime"]))
                ratio = r[peer]
            else:
                ratio = None if r["ms"]["torch"] is None else r["ms"]["torch"] / r["ms"]["convcore"]
            cells.append(f"**{ratio:.2f}**" if ratio is not None else "-")
        cells.append(", ".join(f"{r['pct_peak']:.0f}%" for r in (f32, f64) if r is not None))
        mbs = [r["extra_mb"] for r in (f32, f64) if r is not None and r["extra_mb"] is not None]
        cells.append(f"{max(mbs):.1f}" if mbs else "-")
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out += [f"- {line}" for line in _summary_lines(result)]
    return "\n".join(out)


def _meta(args, missing):
    def version(mod):
        try:
            return __import__(mod).__version__
        except ImportError:
            return None

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return dict(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), cpu=cpu,
        cores=os.cpu_count(), threads=args.threads, repeat=args.repeat, warmup=args.warmup,
        min_sample_s=args.min_sample, missing_peers=missing, python=platform.python_version(),
        **{m: version(m) for m in ("convcore", "numpy", "scipy", "torch", "onnxruntime")},
    )


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=15, help="timed samples per implementation (median)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls before timing")
    p.add_argument("--min-sample", type=float, default=0.02, help="seconds of back-to-back calls per sample")
    p.add_argument("--cases", nargs="*", default=[], metavar="NAME", help=f"any of: {' '.join(cases.BY_NAME)}")
    p.add_argument("--dtypes", nargs="*", default=["float32", "float64"], choices=["float32", "float64"])
    p.add_argument("--markdown", action="store_true", help="print a README-ready markdown table")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--no-memory", action="store_true", help="skip the per-case memory subprocesses")
    p.add_argument("--memory-probe", nargs=2, metavar=("CASE", "DTYPE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads < 1 or args.repeat < 1:
        p.error("--threads and --repeat must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.memory_probe:
        print(json.dumps(memory_probe(*args.memory_probe, args.threads)))
        return
    print(TEXT_HEADER, file=sys.stderr if args.markdown else sys.stdout, flush=True)
    result = run(args)
    if args.markdown:
        print(markdown(result))
    else:
        print("\n".join(_summary_lines(result)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
