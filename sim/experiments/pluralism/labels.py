"""What the pluralism experiment's keys are called on report pages (merged into ``sim.report.labels``)."""

LABELS = {
    "entropy": "perspective entropy",
    "contextual_minus_single": "perspective entropy, contextual − single",
    "panel_minus_single": "perspective entropy, panel − single",
    "classifier_member_accuracy": "judge names a panel member's own cluster",
}
# shares and normalised entropies: drawn on [0, 1], not zoomed to their spread (``entropy[...]`` keys by their name)
RANGES = {k: (0.0, 1.0) for k in ("entropy", "classifier_member_accuracy")}
