"""The independent plan evaluator.

It reads a plan in its JSON form (SPEC section 3) and checks it against the
instance on its own: it recomputes every number from the profiles and scores
and shares no code with any solver (it imports only the instance loader's
data classes). Every violated constraint (1)-(6) of SPEC section 1 is
returned with its amount.

Quality is the value of the transportation problem at the plan's shares,

    Q(w) = max (1/N) sum_x sum_i s[x,i] y[x,i]
           s.t. sum_i y[x,i] = 1 (all x),  (1/N) sum_x y[x,i] = w[i] (all i),  y >= 0,

computed exactly through its dual over the models with a positive share
(the others get no traffic), in the prices alpha alone:

    Q(w) = min_alpha D(alpha),   D(alpha) = (1/N) sum_x max_i (s[x,i] - alpha[i]) + sum_i w[i] alpha[i].

D is convex and piecewise linear, and D(alpha) >= Q(w) for every alpha. Solving
its LP whole (one row per prompt and model) took HiGHS 17.7 s of CPU at
300,000 prompts (interior point; simplex did not finish in 120 s). Instead:

1. Coordinate prices. D restricted to one price alpha_i is minimized exactly
   where at most w[i] N prompts strictly prefer model i and at least w[i] N
   weakly do: at the (w[i] N)-th largest s[x,i] - max_{j != i}(s[x,j] - alpha_j)
   (midway to the next one when w[i] N is whole). Sweeps of these updates
   (Gauss-Seidel, a few dozen at most) give prices close to optimal; on a
   non-smooth D they may stall short of it, which step 2 repairs.
2. Trust region. Around a center c, in the box |alpha_i - c_i| <= rho, a
   prompt whose best model at c leads the second by more than 2 rho keeps it,
   so there D is exactly the LP over the other prompts (merged into distinct
   rows r with counts c_r; F_i prompts fixed on model i with total score S_F):

       min (1/N) (S_F + sum_r c_r u_r) + sum_i (w[i] - F_i / N) alpha[i]
       s.t. u_r + alpha[i] >= s[r,i]  (window rows r, models i),  |alpha_i - c_i| <= rho.

   HiGHS solves it (simplex; a few thousand rows). Its row duals
   lambda[r,i] are a routing of the window, (1/N) c_r y[r,i]. If that routing,
   with the fixed prompts at their models, gives every model its share w (the
   box constraints have no dual), the prices minimize D over the box and, D
   being convex, everywhere. Otherwise the box binds: a box REGION_GROWTH
   times larger around the LP's prices follows (D does not increase).
3. Certificate. The routing of step 2 is feasible for Q(w) to within
   CERTIFICATE_SHARE_TOL in every share, and its quality is compared with
   D(alpha) computed over all prompts: the gap must be at most
   CERTIFICATE_GAP_TOL (weak duality makes Q(w) lie between them). The value
   returned is D(alpha).

This shares no code, and no algorithm, with the planner's transportation
solver (smoothed prices, then a primal window LP with moves between models).

With GPU types (SPEC 4.4) the evaluator numbers the GPUs itself, type by type in
the listed order: a model's option is (gpu_type, tp, mps_pct), its shards must
sit on GPUs of that type, and each GPU's memory (3) is its type's. The hourly
cost of the GPUs holding a shard is recomputed and compared with the plan's
`cost_per_hour`; under the cost objective the evaluated quality must be at
least min_quality (to RELATIVE_TOL).

Replicas (SPEC 4.5): an entry with `replicas` is checked replica by replica: each one's option, its
tp distinct GPUs, its memory and compute share on them, its capacity at its own load, its tail
percentiles and its own contribution H(share), which add up to the model's; their shares add up to the
entry's, and there are at most max_replicas of them. The routing and the quality are on the models.

Capacity (5) is checked against (1 - headroom) r_K (SPEC 4.1). Each tail bound (SPEC 4.6) is checked
at each deployed model's load, with the percentile interpolated here from the profiled column (flat
below r_1), and the percentiles a plan reports are compared with these. When the plan
publishes its routing (SPEC 4.3), the evaluator applies that rule to every
prompt on its own: listed prompts by their fractions, every other prompt to
the first deployed model with the largest s[x,i] - price_i. The shares it
gives must be the plan's within 1e-9, and its quality, smallest margin and
the reported utilizations (load / r_K) must match the plan's numbers.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import highspy
import numpy as np
import pandas as pd
from pyomo.common.tee import capture_output

from models.problem.instance import Instance, Option

SHARE_TOL = 1e-6  # absolute, on the sum of shares and on each share
RELATIVE_TOL = 1e-6  # on capacity (5) and the SLO (6)
MEMORY_TOL_GB = 1e-6
REPORT_TOL = 1e-6  # reported quality and mean TTFT against the evaluated ones (relative)
ROUTING_SHARE_TOL = 1e-9  # SPEC 4.3: the published rule gives every model its share within this
MARGIN_TOL = 1e-9  # reported smallest margin against the evaluated one (absolute, score units)
COORDINATE_SWEEPS = 30  # at most, of the coordinate minimization of the dual
WINDOW_PROMPTS = 500  # the first trust region lets about this many prompts per model change model
MIN_RADIUS = 1e-7  # score units
REGION_GROWTH = 4.0  # a trust region whose box binds is followed by one this much larger, around its optimum
MAX_REGIONS = 30
LP_TOL = 1e-10  # primal and dual feasibility tolerance of the trust-region LP
CERTIFICATE_SHARE_TOL = 1e-9  # the LP's routing gives every model its share within this
CERTIFICATE_GAP_TOL = 1e-9  # D(alpha) - quality of that routing (score units)


@dataclass(frozen=True)
class Violation:
    """One broken rule: which, where, by how much (in `unit`), and a sentence for people."""

    rule: str
    where: str
    amount: float
    unit: str
    message: str


@dataclass(frozen=True, eq=False)
class Evaluation:
    """What the evaluator found. `models` has name, load_rps, ttft_ms, contribution_ms per model."""

    violations: tuple[Violation, ...]
    models: pd.DataFrame
    mean_ttft_ms: float
    quality: float | None
    prices: tuple[float, ...] | None
    mismatches: tuple[str, ...] = field(default=())
    cost_per_hour: float | None = None  # of the GPUs holding a shard, when every GPU type has a cost

    @property
    def feasible(self) -> bool:
        return not self.violations

    @property
    def consistent(self) -> bool:
        """Feasible, and the plan's own quality and mean TTFT match the evaluated ones."""
        return self.feasible and not self.mismatches


def evaluate_plan(instance: Instance, plan: dict) -> Evaluation:
    """Check a plan dict against every constraint of the SPEC and recompute its numbers."""
    violations: list[Violation] = []
    entries = plan_entries(instance, plan, violations)
    check_setup(instance, entries, violations)
    check_placement(instance, entries, violations)
    shares = check_shares(instance, entries, violations)
    table = latency_table(instance, entries, shares, violations)
    mean_ttft = float(table.contribution_ms.sum())
    excess = mean_ttft - instance.slo_mean_ttft_ms
    if excess > RELATIVE_TOL * instance.slo_mean_ttft_ms:
        violations.append(
            Violation("(6) SLO", "mean TTFT", excess, "ms",
                      f"mean TTFT {mean_ttft:.3f} ms exceeds the target {instance.slo_mean_ttft_ms:g} ms by {excess:.3f} ms")
        )
    quality, prices = None, None
    if shares is not None:
        quality, prices = transport_value(instance.scores, shares)
        check_min_quality(instance, quality, violations)
    percentiles = tail_percentiles(instance, entries, shares)
    check_tail_bounds(instance, percentiles, violations)
    cost = gpu_cost(instance, entries)
    mismatches = (report_mismatches(plan, quality, mean_ttft) + utilization_mismatches(instance, entries)
                  + percentile_mismatches(entries, percentiles) + cost_mismatches(plan, cost))
    if "routing" in plan and shares is not None:
        mismatches += check_published_routing(instance, plan, entries, shares, violations)
    return Evaluation(
        violations=tuple(violations),
        models=table,
        mean_ttft_ms=mean_ttft,
        quality=quality,
        prices=prices,
        mismatches=tuple(mismatches),
        cost_per_hour=cost,
    )


# ---------------------------------------------------------------- the plan's entries


def plan_entries(instance: Instance, plan: dict, violations: list[Violation]) -> list[dict | None]:
    """The plan's model entries in the instance's model order (None where one is missing)."""
    by_name: dict[str, dict] = {}
    for entry in plan.get("models", []):
        name = entry.get("name")
        if name in by_name:
            violations.append(Violation("plan format", f"model {name}", 1, "entries", f"model '{name}' appears twice"))
        elif name not in instance.model_names:
            violations.append(Violation("plan format", f"model {name}", 1, "entries", f"unknown model '{name}'"))
        by_name[name] = entry
    entries = []
    for model in instance.models:
        entry = by_name.get(model.name)
        if entry is None:
            violations.append(Violation("plan format", f"model {model.name}", 1, "entries",
                                        f"model '{model.name}' has no entry"))
        entries.append(entry)
    return entries


def deployed_option(entry: dict | None) -> Option | None:
    """The entry's option; its GPU type is the entry's `gpu_type` ("" when absent, as without GPU types)."""
    if entry is None or not entry.get("deployed"):
        return None
    return Option(int(entry["tp"]), int(entry["mps_pct"]), str(entry.get("gpu_type") or ""))


def gpu_kinds(instance: Instance) -> list[tuple[str, float, float | None]]:
    """(type name, memory GB, cost per hour) of every GPU, numbered type by type in the listed order; without
    GPU types, gpu_count GPUs of gpu_memory_gb, type "" and no cost."""
    if not instance.gpu_types:
        return [("", instance.gpu_memory_gb, None)] * instance.gpu_count
    return [(t.name, t.memory_gb, t.cost_per_hour) for t in instance.gpu_types for _ in range(t.count)]


def replica_parts(entry: dict | None) -> list[tuple[Option, list[int], float]]:
    """A deployed entry's replicas as (option, GPUs, share): its `replicas` (SPEC 4.5), or the entry itself;
    none when it is not deployed."""
    if deployed_option(entry) is None:
        return []
    return [(Option(int(part["tp"]), int(part["mps_pct"]), str(part.get("gpu_type") or entry.get("gpu_type") or "")),
             [int(g) for g in part.get("gpus", [])],
             float(part.get("share", 0))) for part in entry.get("replicas", [entry])]


def check_setup(instance: Instance, entries, violations: list[Violation]) -> None:
    """(1) one profiled option per required model; undeployed models take no GPU and no traffic."""
    for model, entry in zip(instance.models, entries):
        option = deployed_option(entry)
        if option is None:
            if model.required:
                violations.append(Violation("(1) deployment", f"model {model.name}", 1, "models",
                                            f"required model '{model.name}' is not deployed"))
            if entry is not None and (entry.get("gpus") or float(entry.get("share", 0)) != 0):
                violations.append(Violation("(1) deployment", f"model {model.name}", 1, "models",
                                            f"undeployed model '{model.name}' has GPUs or traffic"))
            continue
        parts = replica_parts(entry)
        for option, _, _ in parts:
            allowed = option.tp in instance.tp_options and option.mps_pct in instance.mps_options
            if not allowed or (model.name, option) not in instance.curves:
                on = f" on GPU type '{option.gpu_type}'" if option.gpu_type or instance.gpu_types else ""
                violations.append(Violation("(1) deployment", f"model {model.name}", 1, "options",
                                            f"model '{model.name}' uses tp={option.tp}, mps_pct={option.mps_pct}{on}, "
                                            "which has no latency curve in setup_options"))
        check_replicas(model, entry, parts, violations)


def check_replicas(model, entry: dict, parts, violations: list[Violation]) -> None:
    """SPEC 4.5: at most max_replicas replicas, whose shares add up to the entry's; the entry's option and GPUs
    are its first replica's."""
    first = entry.get("replicas", [entry])[0]
    if any(entry.get(key) != first.get(key) for key in ("tp", "mps_pct", "gpus")):
        violations.append(Violation("plan format", f"model {model.name}", 1, "entries",
                                    f"model '{model.name}': its tp, mps_pct and gpus are not its first replica's"))
    if len(parts) > model.max_replicas:
        violations.append(Violation("(4.5) replicas", f"model {model.name}", len(parts) - model.max_replicas,
                                    "replicas", f"model '{model.name}' runs {len(parts)} replicas; max_replicas "
                                    f"is {model.max_replicas}"))
    total = sum(share for _, _, share in parts)
    if abs(total - float(entry.get("share", 0))) > SHARE_TOL:
        violations.append(Violation("(4.5) replicas", f"model {model.name}", abs(total - float(entry["share"])),
                                    "share", f"model '{model.name}': its replicas' shares add up to {total:.9f}, "
                                    f"not its share {entry['share']}"))


def check_placement(instance: Instance, entries, violations: list[Violation]) -> None:
    """(2) tp distinct GPUs of the option's type; (3) memory and (4) compute share on every GPU."""
    kinds = gpu_kinds(instance)
    memory = np.zeros(len(kinds))
    compute = np.zeros(len(kinds))
    for model, entry in zip(instance.models, entries):
        for option, gpus, _ in replica_parts(entry):
            mine = [g for g, kind in enumerate(kinds) if kind[0] == option.gpu_type]
            valid = [g for g in set(gpus) if g in mine]
            if len(gpus) != option.tp or len(set(gpus)) != len(gpus) or len(valid) != len(gpus):
                of_type = f" of type '{option.gpu_type}'" if option.gpu_type else ""
                violations.append(Violation("(2) shards", f"model {model.name}", abs(len(valid) - option.tp) or 1,
                                            "GPUs", f"model '{model.name}' at tp={option.tp} is on GPUs {gpus}: "
                                            f"needs {option.tp} distinct GPUs{of_type} among {mine}"))
            for g in valid:
                memory[g] += model.weights_gb / option.tp + model.kv_cache_gb
                compute[g] += option.mps_pct
    for g, (_, capacity, _) in enumerate(kinds):
        if memory[g] > capacity + MEMORY_TOL_GB:
            violations.append(Violation("(3) memory", f"GPU {g}", memory[g] - capacity, "GB",
                                        f"GPU {g} holds {memory[g]:.2f} GB of {capacity:g} GB"))
        if compute[g] > 100:
            violations.append(Violation("(4) compute share", f"GPU {g}", compute[g] - 100, "percent",
                                        f"GPU {g} has MPS shares adding up to {compute[g]:g}%"))


def check_shares(instance: Instance, entries, violations: list[Violation]) -> np.ndarray | None:
    """Shares are non-negative and add up to 1; returns them normalized, or None if unusable."""
    shares = np.array([float(e.get("share", 0)) if e is not None else 0.0 for e in entries])
    for model, share in zip(instance.models, shares):
        if not np.isfinite(share) or share < -SHARE_TOL:
            violations.append(Violation("routing", f"model {model.name}", abs(share), "share",
                                        f"model '{model.name}' has share {share}"))
            return None
    total = shares.sum()
    if abs(total - 1) > SHARE_TOL:
        violations.append(Violation("routing", "shares", abs(total - 1), "share",
                                    f"shares add up to {total:.9f}, not 1"))
        return None
    return np.clip(shares, 0, None) / np.clip(shares, 0, None).sum()


# ---------------------------------------------------------------- latency


def latency_table(instance: Instance, entries, shares, violations: list[Violation]) -> pd.DataFrame:
    """Per model: load, TTFT and contribution H to the mean TTFT, summed over its replicas (SPEC 4.5; the TTFT
    their load-weighted mean); capacity (5) checked per replica."""
    rows = []
    for k, (model, entry) in enumerate(zip(instance.models, entries)):
        share = 0.0 if shares is None else float(shares[k])
        parts = replica_parts(entry)
        curves = [instance.curves.get((model.name, option)) for option, _, _ in parts]
        if not parts or None in curves:
            rows.append({"name": model.name, "load_rps": instance.arrival_rate_rps * share, "ttft_ms": np.nan,
                         "contribution_ms": 0.0 if share == 0 else np.inf})
            continue
        replicas = [replica_latency(instance, model, curve, part, violations)
                    for curve, part in zip(curves, replica_shares(entry, parts, share))]
        load = sum(r["load_rps"] for r in replicas)
        ttft = (sum(r["load_rps"] * r["ttft_ms"] for r in replicas) / load if len(replicas) > 1 and load > 0
                else replicas[0]["ttft_ms"])
        rows.append({"name": model.name, "load_rps": load, "ttft_ms": ttft,
                     "contribution_ms": sum(r["contribution_ms"] for r in replicas)})
    return pd.DataFrame(rows)


def replica_shares(entry: dict, parts, share: float) -> list[float]:
    """Each replica's share of the model's (normalized) `share`: its own, scaled as the model's was."""
    if len(parts) == 1:
        return [share]
    total = float(entry.get("share", 0))
    return [part * share / total if total > 0 else 0.0 for _, _, part in parts]


def replica_latency(instance: Instance, model, curve, share: float, violations: list[Violation]) -> dict:
    """One replica at `share`: load, interpolated TTFT and contribution H; capacity (5) checked."""
    lam = instance.arrival_rate_rps
    load = lam * share
    rates, ttfts = np.array(curve.rates_rps), np.array(curve.ttfts_ms)
    limit = (1 - instance.headroom) * rates[-1]
    if load > limit * (1 + RELATIVE_TOL):
        violations.append(Violation("(5) capacity", f"model {model.name}", load - limit, "requests/s",
                                    f"model '{model.name}' gets {load:.3f} requests/s; it may carry {limit:g} "
                                    f"((1 - headroom {instance.headroom:g}) x r_K {rates[-1]:g})"))
        return {"load_rps": load, "ttft_ms": np.inf, "contribution_ms": np.inf}
    knots_w = np.concatenate([[0.0], rates / lam])
    knots_h = knots_w * np.concatenate([[0.0], ttfts])
    return {"load_rps": load, "ttft_ms": float(np.interp(load, rates, ttfts)),
            "contribution_ms": float(np.interp(share, knots_w, knots_h))}


def tail_percentiles(instance: Instance, entries, shares) -> dict[tuple[str, str], float]:
    """(model, percentile) -> the profiled TTFT percentile at the model's load (the largest over its replicas, each
    at its own load), for every deployed model with curves and every percentile column the profiles have:
    linear between profiled loads, the first value below."""
    lam = instance.arrival_rate_rps
    found = {}
    for k, (model, entry) in enumerate(zip(instance.models, entries)):
        parts = replica_parts(entry)
        curves = [instance.curves.get((model.name, option)) for option, _, _ in parts]
        if not parts or None in curves or shares is None:
            continue
        loads = [lam * part for part in replica_shares(entry, parts, float(shares[k]))]
        for p in ("p95", "p99"):
            columns = [getattr(curve, f"{p}_ttfts_ms") for curve in curves]
            if all(columns):
                found[(model.name, p)] = max(float(np.interp(load, curve.rates_rps, column))
                                             for load, curve, column in zip(loads, curves, columns))
    return found


def check_tail_bounds(instance: Instance, percentiles: dict, violations: list[Violation]) -> None:
    """SPEC 4.6: every deployed model's percentile at its load within the bound (relative RELATIVE_TOL)."""
    for (name, p), value in percentiles.items():
        bound = instance.tail_slo_ms.get(p)
        if bound is not None and value > bound * (1 + RELATIVE_TOL):
            violations.append(Violation(f"(4.6) {p} TTFT", f"model {name}", value - bound, "ms",
                                        f"model '{name}' has {p} TTFT {value:.3f} ms at its load, above the "
                                        f"bound {bound:g} ms"))


def percentile_mismatches(entries, percentiles: dict) -> list[str]:
    """Reported p95_ttft_ms / p99_ttft_ms against the evaluated percentiles."""
    by_name = {entry.get("name"): entry for entry in entries if entry is not None}
    mismatches = []
    for (name, p), value in percentiles.items():
        reported = by_name[name].get(f"{p}_ttft_ms")
        if reported is not None and abs(reported - value) > REPORT_TOL * max(1.0, value):
            mismatches.append(f"model '{name}' reports {p} TTFT {reported:.6f} ms, evaluated {value:.6f} ms")
    return mismatches


# ---------------------------------------------------------------- quality


def transport_value(scores: np.ndarray, shares: np.ndarray) -> tuple[float, tuple[float, ...]]:
    """Q(w) and a set of optimal prices alpha (module docstring: coordinate prices, then the dual LP in a
    trust region until its routing has the shares w, certified by the duality gap)."""
    scores = np.asarray(scores, dtype=float)
    shares = np.asarray(shares, dtype=float)
    active = np.flatnonzero(shares > 0)
    used = scores[:, active]
    target = shares[active] / shares[active].sum()
    alpha = coordinate_prices(used, target)
    radius = None
    for _ in range(MAX_REGIONS):
        region = TrustRegion.around(used, alpha, radius)
        alpha, certified = region.solve(used, target)
        if certified is not None:
            return certified, all_prices(scores, active, alpha)
        radius = REGION_GROWTH * region.radius
    raise RuntimeError(f"evaluator: the transportation LP's trust region did not reach an optimum in "
                       f"{MAX_REGIONS} steps")


def dual_value(scores: np.ndarray, shares: np.ndarray, alpha: np.ndarray) -> float:
    """D(alpha) = (1/N) sum_x max_i (s[x,i] - alpha_i) + alpha . w: an upper bound on Q(w) for any alpha."""
    return float(np.max(scores - alpha, axis=1).mean() + alpha @ shares)


def coordinate_prices(scores: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Exact minimization of D along one price at a time, in sweeps: alpha_i becomes the (w_i N)-th
    largest s[x,i] - max_{j != i} (s[x,j] - alpha_j) (midway to the next when w_i N is whole)."""
    n, m = scores.shape
    alpha = np.zeros(m)
    if m == 1:
        return alpha
    for _ in range(COORDINATE_SWEEPS):
        before = alpha.copy()
        for i in range(m):
            others = np.delete(scores - alpha, i, axis=1).max(axis=1)
            gain = scores[:, i] - others
            k = shares[i] * n
            whole = abs(k - round(k)) < 1e-9
            rank = int(round(k)) if whole else int(np.ceil(k))
            rank = min(max(rank, 1), n)
            if whole and rank < n:
                top = -np.partition(-gain, (rank - 1, rank))[[rank - 1, rank]]
                alpha[i] = (top[0] + top[1]) / 2
            else:
                alpha[i] = -np.partition(-gain, rank - 1)[rank - 1]
        alpha -= alpha[0]
        if np.max(np.abs(alpha - before)) < 1e-12:
            break
    return alpha


@dataclass(frozen=True, eq=False)
class TrustRegion:
    """The box |alpha_i - center_i| <= radius, and the prompts whose best model can change inside it:
    those within 2 radius of a tie at the center. Every other prompt keeps its best model there."""

    center: np.ndarray
    radius: float
    window: np.ndarray  # mask over the prompts
    best: np.ndarray  # each prompt's best model at the center

    @classmethod
    def around(cls, scores: np.ndarray, center: np.ndarray, radius: float | None) -> "TrustRegion":
        utility = scores - center
        best = np.argmax(utility, axis=1)
        if scores.shape[1] == 1:
            return cls(center, 1.0, np.zeros(len(scores), dtype=bool), best)
        top_two = -np.partition(-utility, 1, axis=1)[:, :2]
        margin = top_two[:, 0] - top_two[:, 1]
        if radius is None:  # about WINDOW_PROMPTS prompts per model can change their best model
            rank = min(len(margin), WINDOW_PROMPTS * scores.shape[1]) - 1
            radius = max(MIN_RADIUS, float(np.partition(margin, rank)[rank]) / 2)
        return cls(center, radius, margin <= 2 * radius, best)

    def solve(self, scores: np.ndarray, shares: np.ndarray) -> tuple[np.ndarray, float | None]:
        """The dual LP over the box (module docstring); returns its prices and, when its routing has
        the shares w and closes the duality gap, Q(w) (else None)."""
        n, m = scores.shape
        fixed = ~self.window
        fixed_load = np.bincount(self.best[fixed], minlength=m) / n
        fixed_value = float(scores[fixed, self.best[fixed]].sum()) / n
        rows, counts = np.unique(scores[self.window], axis=0, return_counts=True)
        r = len(rows)
        lp = highspy.HighsLp()
        lp.num_col_ = m + r  # alpha_i, then u_r
        lp.num_row_ = r * m  # u_r + alpha_i >= s[r, i]
        lp.col_cost_ = np.concatenate([shares - fixed_load, counts / n])
        lp.col_lower_ = np.concatenate([self.center - self.radius, np.full(r, -highspy.kHighsInf)])
        lp.col_upper_ = np.concatenate([self.center + self.radius, np.full(r, highspy.kHighsInf)])
        lp.row_lower_ = rows.ravel()
        lp.row_upper_ = np.full(lp.num_row_, highspy.kHighsInf)
        index = np.empty(2 * lp.num_row_, dtype=np.int32)
        index[0::2] = m + np.repeat(np.arange(r), m)
        index[1::2] = np.tile(np.arange(m), r)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.start_ = np.arange(0, 2 * lp.num_row_ + 1, 2, dtype=np.int32)
        lp.a_matrix_.index_ = index
        lp.a_matrix_.value_ = np.ones(2 * lp.num_row_)
        highs = quiet_highs()
        highs.setOptionValue("primal_feasibility_tolerance", LP_TOL)
        highs.setOptionValue("dual_feasibility_tolerance", LP_TOL)
        highs.passModel(lp)
        highs.run()
        status = highs.getModelStatus()
        if status != highspy.HighsModelStatus.kOptimal:
            raise RuntimeError(f"evaluator: transportation LP ended with status {highs.modelStatusToString(status)}")
        solution = highs.getSolution()
        alpha = np.array(solution.col_value[:m])
        flow = np.clip(np.array(solution.row_dual).reshape(r, m), 0, None)  # (1/N) c_r y[r,i]
        flow *= (counts / n / np.maximum(flow.sum(axis=1), 1e-300))[:, None]  # every row routed in full
        routed = fixed_load + flow.sum(axis=0)
        if np.max(np.abs(routed - shares)) > CERTIFICATE_SHARE_TOL:
            return alpha, None  # a price sits on the box: the optimum lies beyond it
        routing_value = fixed_value + float((flow * rows).sum())
        bound = dual_value(scores, shares, alpha)
        if bound - routing_value > CERTIFICATE_GAP_TOL:
            return alpha, None
        return alpha, bound


def all_prices(scores: np.ndarray, active: np.ndarray, alpha: np.ndarray) -> tuple[float, ...]:
    """Prices of every model from the active ones': a model with no share is priced so that no prompt
    prefers it, alpha_i = max_x (s[x,i] - max_{j active} (s[x,j] - alpha_j)); the lowest is 0."""
    utility = np.max(scores[:, active] - alpha, axis=1)
    prices = np.max(scores - utility[:, None], axis=0)
    prices[active] = alpha
    return tuple(prices - prices.min())


def quiet_highs() -> highspy.Highs:
    with capture_output(io.StringIO(), capture_fd=True):  # HiGHS prints a banner when it starts
        highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("random_seed", 0)
    return highs


def check_min_quality(instance: Instance, quality: float, violations: list[Violation]) -> None:
    """Under the cost objective (SPEC 4.4), Q >= min_quality to RELATIVE_TOL."""
    if instance.objective.kind != "cost":
        return
    floor = instance.objective.min_quality
    if quality < floor - RELATIVE_TOL * max(1.0, floor):
        violations.append(Violation("(4.4) min quality", "quality", floor - quality, "quality",
                                    f"quality {quality:.9f} is below min_quality {floor:g}"))


def gpu_cost(instance: Instance, entries) -> float | None:
    """Hourly cost of the GPUs holding at least one shard; None unless every GPU type has a cost."""
    kinds = gpu_kinds(instance)
    if not instance.gpu_types or any(cost is None for _, _, cost in kinds):
        return None
    used = {int(g) for entry in entries if deployed_option(entry) is not None for g in entry.get("gpus", [])}
    return float(sum(kinds[g][2] for g in used if 0 <= g < len(kinds)))


def cost_mismatches(plan: dict, cost: float | None) -> list[str]:
    reported = plan.get("cost_per_hour")
    if (reported is None) != (cost is None):
        return [f"the plan reports cost_per_hour {reported}; evaluated {cost}"]
    if cost is not None and abs(reported - cost) > REPORT_TOL * max(1.0, cost):
        return [f"the plan reports cost_per_hour {reported:.6f}; evaluated {cost:.6f}"]
    return []


def report_mismatches(plan: dict, quality: float | None, mean_ttft: float) -> list[str]:
    mismatches = []
    reported_quality = plan.get("quality")
    if quality is not None and reported_quality is not None and \
            abs(reported_quality - quality) > REPORT_TOL * max(1.0, abs(quality)):
        mismatches.append(f"plan reports quality {reported_quality:.9f}, evaluated {quality:.9f}")
    reported_ttft = plan.get("mean_ttft_ms")
    if reported_ttft is not None and np.isfinite(mean_ttft) and \
            abs(reported_ttft - mean_ttft) > REPORT_TOL * max(1.0, abs(mean_ttft)):
        mismatches.append(f"plan reports mean TTFT {reported_ttft:.6f} ms, evaluated {mean_ttft:.6f} ms")
    return mismatches


def utilization_mismatches(instance: Instance, entries) -> list[str]:
    """Reported utilizations against load / r_K (the largest over a model's replicas, SPEC 4.5)."""
    mismatches = []
    for model, entry in zip(instance.models, entries):
        parts = replica_parts(entry)
        reported = entry.get("utilization") if entry is not None else None
        if not parts or reported is None or any((model.name, o) not in instance.curves for o, _, _ in parts):
            continue
        utilization = max(share * instance.arrival_rate_rps / instance.curves[(model.name, option)].rates_rps[-1]
                          for option, _, share in parts)
        if abs(reported - utilization) > REPORT_TOL * max(1.0, utilization):
            mismatches.append(f"model '{model.name}' reports utilization {reported:.9f}, evaluated {utilization:.9f}")
    return mismatches


# ---------------------------------------------------------------- the published routing (SPEC 4.3)


def check_published_routing(instance: Instance, plan: dict, entries, shares: np.ndarray,
                            violations: list[Violation]) -> list[str]:
    """Apply the plan's rule to every prompt; a share off by more than 1e-9 is a violation, a quality or
    margin that differs from the plan's a mismatch (returned)."""
    routing = plan["routing"]
    prices = published_prices(instance, entries, violations)
    fractions = split_fractions(instance, routing, entries, violations)
    if prices is None or fractions is None:
        return []
    listed = np.isfinite(fractions[:, 0])
    utility = instance.scores - prices  # -inf for models not deployed
    chosen = np.argmax(utility, axis=1)  # the first of the largest
    fractions[~listed] = 0.0
    fractions[np.flatnonzero(~listed), chosen[~listed]] = 1.0
    realized = fractions.mean(axis=0)
    for model, share, planned in zip(instance.models, realized, shares):
        if abs(share - planned) > ROUTING_SHARE_TOL:
            violations.append(Violation("(4.3) routing", f"model {model.name}", abs(share - planned), "share",
                                        f"the published rule gives '{model.name}' share {share:.12f}; the plan "
                                        f"says {planned:.12f}"))
    mismatches = []
    quality = float((fractions * instance.scores).sum(axis=1).mean())
    if plan.get("quality") is not None and abs(quality - plan["quality"]) > REPORT_TOL * max(1.0, abs(quality)):
        mismatches.append(f"the published rule's quality is {quality:.9f}; the plan reports {plan['quality']:.9f}")
    margin = smallest_margin(utility[~listed])
    reported = routing.get("min_margin")
    if (reported is None) != (margin is None) or (margin is not None and abs(reported - margin) > MARGIN_TOL):
        mismatches.append(f"the plan reports min_margin {reported}; the evaluated smallest margin is {margin}")
    return mismatches


def published_prices(instance: Instance, entries, violations: list[Violation]) -> np.ndarray | None:
    """Each deployed model's price; +inf for a model not deployed, so that no prompt goes there."""
    prices = np.full(len(instance.models), np.inf)
    for k, (model, entry) in enumerate(zip(instance.models, entries)):
        if deployed_option(entry) is None:
            continue
        price = entry.get("price")
        if isinstance(price, bool) or not isinstance(price, (int, float)) or not np.isfinite(price):
            violations.append(Violation("(4.3) routing", f"model {model.name}", 1, "prices",
                                        f"deployed model '{model.name}' has no finite price"))
            return None
        prices[k] = price
    return prices


def split_fractions(instance: Instance, routing: dict, entries, violations: list[Violation]) -> np.ndarray | None:
    """N x M fractions of the listed prompts (NaN rows for the others), or None if a split is malformed."""
    index = {prompt_id: x for x, prompt_id in enumerate(instance.prompt_ids)}
    names = list(instance.model_names)
    deployed = {name for name, entry in zip(names, entries) if deployed_option(entry) is not None}
    fractions = np.full((instance.prompt_count, len(names)), np.nan)
    for split in routing.get("splits", []):
        prompt_id, given = split.get("prompt_id"), split.get("fractions", {})
        problem = None
        if prompt_id not in index:
            problem = f"split prompt '{prompt_id}' is not a prompt of the instance"
        elif np.isfinite(fractions[index[prompt_id], 0]):
            problem = f"prompt '{prompt_id}' is split twice"
        elif not given or set(given) - deployed or any(not 0 <= f <= 1 for f in given.values()):
            problem = f"prompt '{prompt_id}' has fractions {given} that are not over deployed models in [0, 1]"
        elif abs(sum(given.values()) - 1) > ROUTING_SHARE_TOL:
            problem = f"prompt '{prompt_id}' has fractions adding up to {sum(given.values()):.12f}, not 1"
        if problem:
            violations.append(Violation("(4.3) routing", f"prompt {prompt_id}", 1, "splits", problem))
            return None
        fractions[index[prompt_id]] = [given.get(name, 0.0) for name in names]
    return fractions


def smallest_margin(utility: np.ndarray) -> float | None:
    """The smallest difference between the largest and the second-largest utility of a row; None when
    fewer than two models are deployed (no runner-up)."""
    deployed = np.isfinite(utility[0]) if len(utility) else np.array([])
    if deployed.sum() < 2 or not len(utility):
        return None
    top_two = np.sort(utility[:, deployed], axis=1)[:, -2:]
    return float((top_two[:, 1] - top_two[:, 0]).min())
