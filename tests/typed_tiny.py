"""`tiny` on two GPU types (SPEC 4.4), written into a folder: the worked example of tests/test_gpu_types.py and
tests/test_cost.py.

Type "A" is data/tiny's GPU (2 x 18 GB, cost 1 per hour). Type "B" is a faster GPU of the same memory
(2 x 18 GB, cost 3 per hour) whose profiled TTFTs are data/tiny's halved.
"""

from pathlib import Path

TINY = Path(__file__).resolve().parents[1] / "data" / "tiny"
FAST = 0.5  # B's TTFT over A's at every profiled point

CLUSTER = '''[cluster]
[[cluster.gpu_types]]
name = "A"
count = 2
memory_gb = 18
cost_per_hour = 1.0

[[cluster.gpu_types]]
name = "B"
count = 2
memory_gb = 18
cost_per_hour = 3.0
'''


def write_typed_tiny(folder: Path, objective: str = "") -> Path:
    """data/tiny with GPU types A and B, and `objective` (TOML text of an [objective] table) appended."""
    folder.mkdir(parents=True, exist_ok=True)
    toml = (TINY / "instance.toml").read_text()
    start, end = toml.index("[cluster]"), toml.index("[workload]")
    (folder / "instance.toml").write_text(toml[:start] + CLUSTER + "\n" + toml[end:] + objective)
    lines = (TINY / "profiles.csv").read_text().split()
    rows = [f"{row},A" for row in lines[1:]]
    for row in lines[1:]:
        model, tp, mps, rate, ttft = row.split(",")
        rows.append(f"{model},{tp},{mps},{rate},{float(ttft) * FAST:g},B")
    (folder / "profiles.csv").write_text(lines[0] + ",gpu_type\n" + "\n".join(rows) + "\n")
    (folder / "scores.csv").write_text((TINY / "scores.csv").read_text())
    return folder
