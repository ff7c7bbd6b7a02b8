"""What the Overton experiment's keys are called on report pages (merged into ``sim.report.labels``)."""

LABELS = {
    "coverage": "Overton coverage",
    "soft_coverage": "Overton coverage, soft (mean P)",
    "coverage_contextual_minus_single": "Overton coverage, contextual − single",
    "coverage_panel_minus_single": "Overton coverage, panel − single",
    "soft_coverage_contextual_minus_single": "soft Overton coverage, contextual − single",
    "soft_coverage_panel_minus_single": "soft Overton coverage, panel − single",
    "judge_own_position": "judge: a member's answer covers its own cluster's position",
    "judge_other_positions": "judge: a member's answer covers another cluster's position",
}
# shares: drawn on [0, 1], not zoomed to their spread (``coverage[...]`` keys by their name)
RANGES = {k: (0.0, 1.0) for k in ("coverage", "soft_coverage", "judge_own_position", "judge_other_positions")}
