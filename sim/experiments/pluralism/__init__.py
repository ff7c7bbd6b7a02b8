"""``experiment=pluralism``: does answering as a panel keep more perspectives alive than one model?

One folder: ``config.py`` (its settings, ``study.pluralism.*``), ``run.py`` (its stages; the registration),
``summary.py`` (its typed summary and the statistics that fill it), ``report.py`` (its plot and page), ``labels.py``
(its keys' names); and one conf file, ``conf/experiment/pluralism.yaml``. The answers it measures are made by
:mod:`sim.experiments.shared.answers` (overton measures the same answers).
"""

from sim.experiments.pluralism.run import run_pluralism  # noqa: F401  (registers the experiment)
