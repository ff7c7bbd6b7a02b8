"""``experiment=human_distributions``: do agents with a country's persona answer as that country's people do?

One folder: ``config.py`` (its settings, ``study.human.*``), ``run.py`` (its stages; the registration),
``summary.py`` (its typed summary), ``report.py`` (its plots and page); and one conf file,
``conf/experiment/human_distributions.yaml``.
"""

from sim.experiments.human_distributions.run import run_human_distributions  # noqa: F401  (registers the experiment)
