"""What the inverse-constitution experiment's keys are called on report pages (merged into ``sim.report.labels``)."""

# its headline keys, ``<method>[<scope>]``: held-out agreement of each predictor per scope
TEMPLATES = {
    "learned": "held-out agreement of the learned principles, {}",
    "given_constitution": "held-out agreement of the given constitution, {}",
    "no_principle": "held-out agreement with no principle, {}",
}
