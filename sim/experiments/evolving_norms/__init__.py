"""``experiment=evolving_norms``: a norm schedule, selection on fit, and how fast the society follows.

One folder: ``config.py`` (its settings, ``study.norms.*``), ``run.py`` (its stages; the registration),
``summary.py`` (its typed summary and the statistics that fill it), ``report.py`` (its plot and page), ``labels.py``
(its keys' names); and one conf file, ``conf/experiment/evolving_norms.yaml``.
"""

from sim.experiments.evolving_norms.run import run_evolving_norms  # noqa: F401  (registers the experiment)
