"""numpy's BLAS held to one thread while planning.

The command line, `models.api.solve` and the benchmarks plan inside `one_blas_thread()`. This module
is light (threadpoolctl and numpy only), so the command line can enter it before it parses its
arguments.
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits


def one_blas_thread():
    """numpy's BLAS (OpenBLAS) held to one thread while planning (a context manager). Its threads spin
    between calls, and the products here are small (Newton steps over M models): measured with
    `bench/exact_scale.py`'s instances, exact on scale-8m32g-slack took 6.2 s of CPU with them and 3.4 s
    with one, in 3.6 and 3.3 s of wall time; on paper-4xA100 at 300,000 prompts 3.7 and 2.3 s of CPU."""
    import numpy  # noqa: F401  the limit applies to the BLAS libraries loaded when it is set: numpy's

    return threadpool_limits(limits=1, user_api="blas")
