"""``experiment=society`` (the default): a society run; with ``alignment.generations > 0``, the generations loop
(``generations``: simulate, train a reward model, DPO-tune the policy, the policy rejoins the society).

One folder: ``run.py`` (the society run; its registration), ``generations.py`` (the loop; its registration),
``summary.py`` (both typed summaries), ``report.py`` and ``generations_report.py`` (their pages), ``console.py``
(what ``agora`` prints at the end). No preset of its own: ``conf/config.yaml`` selects ``study: society`` (the
default), and the generations loop is a society run with ``alignment.generations`` (``experiment=evolve``).
"""

from sim.experiments.society.generations import run_generations  # noqa: F401  (registers the loop)
from sim.experiments.society.run import run_society  # noqa: F401  (registers the experiment)
