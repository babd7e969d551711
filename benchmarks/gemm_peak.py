"""What one BLAS thread of this machine can do: the float32 GEMM rate the benchmarks compare against.

The benchmarks count the matrix-product arithmetic of a training step (forward and backward) and divide
it by the measured time: the achieved GFLOP/s, and its share of this peak, show how much of a step is
spent outside the matrix products (elementwise work, copies, Python).
"""

import os
import time

import numpy as np

from tito import KEEP_FREED_MEMORY


def gemm_peak_gflops(n=1024, repeat=5):
    """The best of `repeat` float32 (n x n) @ (n x n) products, in GFLOP/s (call with one BLAS thread set)."""
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    a @ a  # warm up
    best = min(_seconds(lambda: a @ a) for _ in range(repeat))
    return 2 * n**3 / best / 1e9


def _seconds(work):
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def print_rates(rows, per):
    """This machine's GEMM peak, then for each (name, flops, CPU seconds) in rows the GFLOP/s its matrix
    products reach and their share of the peak; `per` says what the seconds are of."""
    peak = gemm_peak_gflops()
    print(f"this machine's float32 GEMM peak, one BLAS thread (1024 x 1024 matrices): {peak:.0f} GFLOP/s")
    for name, flops, seconds in rows:
        rate = flops / seconds / 1e9
        print(f"{name:>9}: {rate:.1f} GFLOP/s in its matrix products, {rate / peak:.0%} of the GEMM peak ({per})")


def add_malloc_option(parser):
    parser.add_argument(
        "--default-malloc",
        action="store_true",
        help="train every contender with glibc's default malloc instead of tito's KEEP_FREED_MEMORY "
        "(freed memory kept for reuse), to see what that setting saves",
    )


def apply_malloc_option(args):
    """Set the allocator every contender process starts with (the same for all); say which it is."""
    if args.default_malloc:
        os.environ["TINYTORCH_MALLOC"] = "default"  # tito leaves glibc alone in the contenders
        for var in KEEP_FREED_MEMORY:
            os.environ.pop(var, None)
        return "glibc's default malloc (freed memory handed back to the OS)"
    os.environ.update(KEEP_FREED_MEMORY)
    return "freed memory kept for reuse (" + ", ".join(f"{k}={v}" for k, v in KEEP_FREED_MEMORY.items()) + ")"
