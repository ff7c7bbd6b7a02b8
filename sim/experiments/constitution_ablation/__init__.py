"""``experiment=constitution_ablation``: one society's answer pairs judged again under each constitution.

One folder: ``config.py`` (its settings, ``study.ablation.*``), ``run.py`` (its stages; the registration),
``summary.py`` (its typed summary and the statistics that fill it), ``report.py`` (its plot and page), ``labels.py``
(its keys' names); and one conf file, ``conf/experiment/constitution_ablation.yaml``.
"""

from sim.experiments.constitution_ablation.run import run_constitution_ablation  # noqa: F401  (registers the experiment)
