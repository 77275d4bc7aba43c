"""The tolerance policy: how exact the planner's numbers are, stated once.

HiGHS solves mixed-integer programs with its default primal feasibility
tolerance, 1e-6 (absolute, on its scaled rows): a MIP solution may break a
constraint by about that much, and its bound is good to about that much. So a
MIP only proposes setups. The shares of every plan come from an LP (the
routing LP, the transportation problem) solved with feasibility tolerances of
LP_FEASIBILITY, and the plan's numbers are recomputed from its shares with the
piecewise-linear latency model, on which the constraints are then checked:

* a plan meets the mean-TTFT target when its mean TTFT is at most
  tau (1 + SLO_TOL): LP solutions carry rounding of about LP_FEASIBILITY times
  the steepest slope of H (ms per unit share), a few 1e-9 of the target;
* a model's share is within its capacity when it is at most its largest share
  plus SHARE_TOL (absolute, in share; 1e-9 of the arrival rate in load), and
  shares add up to 1 within SHARE_TOL;
* the published routing (SPEC 4.3) gives every model its share within SHARE_TOL;
* under the cost objective (SPEC 4.4), a plan's quality (from the routing LP) is at least
  min_quality (1 - QUALITY_TOL).

The plans solve the target and capacities themselves, with no margin below
them: a target equal to the lowest mean TTFT a setup reaches is feasible.

The MIP's bound is as precise as its solutions: a plan is reported with a
relative gap of at least GAP_FLOOR (1e-6), and "optimal" means the bound is
within the larger of `mip_gap` and GAP_FLOOR of the plan's quality. A bound
below a known plan's quality by more than GAP_FLOOR is a solver failure,
never clamped (models/methods/cut_loop.py).

The independent evaluator keeps its own, looser tolerance (1e-6 relative),
so a plan that passes these checks passes it.
"""

HIGHS_MIP_FEASIBILITY = 1e-6  # HiGHS's default primal feasibility tolerance, which MIPs keep
LP_FEASIBILITY = 1e-9  # primal and dual feasibility tolerance of the LPs whose solutions become plans
SLO_TOL = 1e-7  # relative: a plan's mean TTFT is at most tau (1 + SLO_TOL)
SHARE_TOL = 1e-9  # absolute, in share: capacity, the sum of shares, and the published routing's shares
QUALITY_TOL = 1e-9  # relative: under the cost objective a plan's quality is at least min_quality (1 - QUALITY_TOL)
GAP_FLOOR = HIGHS_MIP_FEASIBILITY  # relative: the smallest gap a plan reports, and what "optimal" means at least
DEFAULT_MIP_GAP = GAP_FLOOR  # relative gap at which exact stops as optimal
MIP_ABS_GAP = 1e-10
