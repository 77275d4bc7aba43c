"""Default values of the options users set, in one light module (no imports of the solvers), so
that the command line can state them in its help without loading Pyomo, HiGHS or pandas."""

from models.problem.tolerances import DEFAULT_MIP_GAP

DEFAULT_UTILIZATION_FLOOR = 1.0  # heuristic: keep setups using the whole cluster's compute (the paper's rule)
DEFAULT_WINDOW = 1000  # robustness: requests per bootstrapped window, about 17 s at 60 requests/s
DEFAULT_BOOTSTRAP_SAMPLES = 2000  # robustness: windows drawn
DEFAULT_BOOTSTRAP_SEED = 0

__all__ = ["DEFAULT_MIP_GAP", "DEFAULT_UTILIZATION_FLOOR", "DEFAULT_WINDOW", "DEFAULT_BOOTSTRAP_SAMPLES",
           "DEFAULT_BOOTSTRAP_SEED"]
