"""What the evolving-norms experiment's keys are called on report pages (merged into ``sim.report.labels``)."""

LABELS = {
    "population_lag": "population lag (generations)",
    "policy_lag": "policy lag (generations)",
    "fit_change": "fit gained",
    "change": "change over the run",
    "mean_fit": "mean fit with the norm",
    "sd_fit": "SD of fit",
    "policy_fit": "policy fit",
    "lineage_entropy": "cluster entropy of lineages",
    "founders_alive": "founders alive",
    "choice_entropy": "choice entropy",
    "mfq_dispersion": "spread of MFQ values",
    "replaced": "agents replaced",
    "fit_at_shift": "fit at the shift",
    "fit_before_next_shift": "fit before the next shift",
    "fit_change_by_next_shift": "fit gained by the next shift",
    "threshold": "threshold (½ SD of fit)",
}
# ``name[norm]`` / ``change[figure]`` headline keys, read as a phrase
TEMPLATES = {
    "population_lag": "population lag (generations) to {}",
    "policy_lag": "policy lag (generations) to {}",
    "fit_change": "fit gained under {}",
    "change": "change over the run in {}",
}
