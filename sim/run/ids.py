"""Run ids, and which settings may change when a run is resumed: every rule in this one file.

A run id is ``NAME-sSEED-HASH``, the hash over what the run *is* (``NOT_IN_ID`` leaves out what only says how it
is shown, served or continued). Outputs, resumes and reports find a run by its id, and people have published
runs by it, so the hash is over the settings as they stood on 2026-12-07 (``tests/unit/test_run_ids.py`` pins
every preset's id):

- ``study``: every run of that date hashed the settings of three experiments (pluralism, evolving_norms,
  constitution_ablation) at their defaults unless it was that experiment's own run, plus its own settings
  (``study.<key>``) for the kinds added later. Each experiment's settings are now a Hydra option
  (``study=<name>``) that only its own runs carry, so the one-off shim puts the three back at their
  :data:`PUBLISHED_STUDIES` values (those defaults, frozen here) for a study node that lacks them. A study
  node with ``published_id = False`` (an experiment added after that date) is hashed as it is.
- a setting added after that date enters the hash only when set away from its default (:data:`ADDED_LATER`),
  so adding a setting never changes the id of a run that does not use it.
- the entry points other than ``agora`` (``agora-eval``, ``agora-sanity``, ``agora-injection``) are runs of their
  own kind; a kind in :data:`OWN_SETTINGS` also hashes the sections ``NOT_IN_ID`` leaves out of every other run
  (``agora-eval``'s ``eval``: it is what that run measures). Runs of every other kind hash as before.

Resume: :data:`MAY_CHANGE_ON_RESUME` names the settings a resumed run takes from the command line (where the model
is served, how patiently, the progress bar, whether a failed gate stops it); :func:`resumed_config` applies that
rule to a checkpoint's stored config, for every command that resumes.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.config import AgoraConfig
    from sim.study_config import StudyConfig

# where the model is served from and how patiently: neither what a run is nor fixed for its life (``tokenizer`` only
# renders the served model's own chat template for the echo form: how it is read, not what)
TRANSPORT_KEYS = ("base_url", "api_key_env", "timeout_s", "max_retries", "backoff_s", "concurrency", "tokenizer")
MAY_CHANGE_ON_RESUME = (*(f"llm.{k}" for k in TRANSPORT_KEYS), "sim.progress", "alignment.require_informative_labels")
NOT_IN_ID = (
    *MAY_CHANGE_ON_RESUME,  # display, transport, and whether a failed gate stops the run: not what the run is
    "resume",  # how a run is continued is not what it is
    "eval",  # evaluation reads the society's outputs, it does not change them
    "calibration",  # nor does the label-quality gate
    "alignment.processes",  # how training is spread over processes: equal weights (float tolerance)
    "alignment.accelerate_config",
)

# study.<key> -> its settings at their defaults on 2026-12-07 (each run of that date hashed these three); frozen
# here, not read from the experiments' classes: a default changed later must not change other kinds' ids
PUBLISHED_STUDIES: dict[str, Any] = {
    "pluralism": {"dilemmas": 12, "panel_size": 4, "answer_tokens": 64, "synthesis_tokens": 96},
    "norms": {
        "schedule": [
            {"generation": 0, "name": "loyalty_first", "principle": "Put loyalty to one's family, friends and group first, "
             "even at some cost to outsiders.", "cluster": "", "axis": "loyalty"},
            {"generation": 3, "name": "fairness_first", "principle": "Treat everyone fairly and equally, even when it "
             "means going against one's own group.", "cluster": "", "axis": "fairness"},
        ],
        "generations": 6, "dilemmas": 3, "turnover": 0.25, "mutation": 0.05, "answer_tokens": 48, "train_policy": False,
    },
    "ablation": {"constitutions": ["none", "harmlessness", "multiplex", "single_care"], "train_reward": True},
}

# run kind -> the NOT_IN_ID sections its id hashes too: what that kind of run is (agora-eval's suites and samples)
OWN_SETTINGS: dict[str, tuple[str, ...]] = {"eval": ("eval",)}

# settings added after 2026-12-07, dotted path -> default: hashed only when set to another value (a section left
# empty by that is dropped too, so a new section at its defaults is not in the id)
ADDED_LATER: dict[str, Any] = {
    "sim.reason": "before_choice",
    **{f"persona.{k}": v for k, v in {"method": "prompt", "variant": "culture", "alpha": 0.0, "centre": False,
                                      "beta": 0.0, "layer": 12}.items()},
}


def _drop(settings: dict[str, Any], path: str) -> None:
    *parents, last = path.split(".")
    node = settings
    for p in parents:
        node = node.get(p)
        if not isinstance(node, dict):
            return
    node.pop(last, None)


def _get(settings: dict[str, Any], path: str) -> Any:
    node: Any = settings
    for p in path.split("."):
        if not isinstance(node, dict) or p not in node:
            return _ABSENT
        node = node[p]
    return node


_ABSENT = object()


def study_settings(study: Any) -> dict[str, Any]:
    """The ``study`` part of the hashed settings (see the module docstring): the node's kind and its own
    settings, and for a published kind the three experiments every published run hashed."""
    own = study.settings_key
    hashed: dict[str, Any] = {"kind": study.kind}
    if study.published_id:
        for key, published in PUBLISHED_STUDIES.items():
            hashed[key] = dataclasses.asdict(getattr(study, key)) if hasattr(study, key) else copy.deepcopy(published)
    if own is not None:
        hashed[own] = dataclasses.asdict(getattr(study, own))
    return hashed


def id_settings(cfg: AgoraConfig, kind: str | None = None) -> dict[str, Any]:
    """What the run id hashes: the config without :data:`NOT_IN_ID` (less the sections a ``kind`` in
    :data:`OWN_SETTINGS` keeps), the study as :func:`study_settings` gives it, and the :data:`ADDED_LATER` settings
    left at their defaults taken out."""
    settings = {f.name: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
                for f in dataclasses.fields(cfg) if f.name != "study" for v in [getattr(cfg, f.name)]}
    kept = OWN_SETTINGS.get(kind or "", ())
    for path in NOT_IN_ID:
        if path not in kept:
            _drop(settings, path)
    if kept:
        settings["run_kind"] = kind
    settings["study"] = study_settings(cfg.study)
    for path, default in ADDED_LATER.items():
        if _get(settings, path) == default:
            _drop(settings, path)
            parent = path.rpartition(".")[0]
            if parent and _get(settings, parent) == {}:
                _drop(settings, parent)
    return settings


def run_id_for(cfg: AgoraConfig, kind: str | None = None) -> str:
    """Deterministic: the same config and seed give the same id (so outputs are byte-identical). ``kind``: the run's
    kind, which changes the id only for the kinds in :data:`OWN_SETTINGS`."""
    blob = json.dumps(id_settings(cfg, kind), sort_keys=True, default=str)
    return f"{cfg.name}-s{cfg.seed}-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


def resume_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """The command-line overrides a resumed run takes (those of :data:`MAY_CHANGE_ON_RESUME`, e.g. the server moved:
    point the run at it), and the ones it ignores (its stored config says what it is)."""
    allowed = tuple(f"{k}=" for k in MAY_CHANGE_ON_RESUME)
    given = [o for o in overrides if not o.startswith(("resume=", "hydra."))]
    kept = [o for o in given if o.startswith(allowed)]
    return kept, [o for o in given if o not in kept]


def stored_kind(stored: dict[str, Any]) -> str:
    """The ``study.kind`` of a checkpoint's stored config (its study node is looked up by it)."""
    return str(stored.get("study", {}).get("kind", "society"))


def resumed_config(stored: dict[str, Any], kept: list[str], node: type[StudyConfig]) -> AgoraConfig:
    """The config stored in a checkpoint with the ``kept`` overrides (:func:`resume_overrides`) applied, checked as a
    composed one is (an OmegaConf type error or a ``__post_init__`` check raises). ``node``: the study node of its
    :func:`stored_kind`. A config stored before each experiment had its own ``study`` node holds every study's
    settings: the keys its node lacks are dropped."""
    from omegaconf import OmegaConf

    from sim.config import AgoraConfig, schema

    stored = dict(stored)
    own = {f.name for f in dataclasses.fields(node)}
    stored["study"] = {k: v for k, v in stored.get("study", {}).items() if k in own}
    cfg = OmegaConf.to_object(OmegaConf.merge(schema(node), stored, OmegaConf.from_dotlist(kept)))
    assert isinstance(cfg, AgoraConfig)
    return cfg
