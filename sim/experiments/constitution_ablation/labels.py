"""What the constitution ablation's keys are called on report pages (merged into ``sim.report.labels``)."""

LABELS = {
    "shift": "label shift",
    "rm_shift": "reward-model shift",
}
