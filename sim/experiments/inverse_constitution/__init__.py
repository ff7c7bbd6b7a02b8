"""``experiment=inverse_constitution``: which short list of principles explains a society's preferences?

One folder: ``config.py`` (its settings, ``study.inverse.*``), ``run.py`` (its stages; the registration),
``summary.py`` (its typed summary, made from :func:`alignment.inverse.explain_scopes`), ``report.py`` (its plot and
page), ``labels.py`` (its keys' names); and one conf file, ``conf/experiment/inverse_constitution.yaml``.
"""

from sim.experiments.inverse_constitution.run import run_inverse_constitution  # noqa: F401  (registers the experiment)
