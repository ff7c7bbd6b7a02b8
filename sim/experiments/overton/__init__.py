"""``experiment=overton``: Overton coverage, how many of the population's positions an answer represents.

One folder: ``config.py`` (its settings, ``study.overton.*``), ``run.py`` (its stages; the registration),
``coverage.py`` (positions and coverage, shared with the generations loop), ``summary.py`` (its typed summary),
``report.py`` (its page), ``labels.py`` (its keys' names); and one conf file, ``conf/experiment/overton.yaml``.
"""

from sim.experiments.overton.run import run_overton  # noqa: F401  (registers the experiment)
