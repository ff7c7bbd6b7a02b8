"""Run configuration as dataclasses. ``conf/`` (Hydra YAML) mirrors these; the CLI converts once.

Each setting is documented once, in its class: here, in ``sim/study_config.py`` (the experiments)
or in ``alignment/config.py`` (training, the label-quality gate, evaluation). ``__post_init__`` checks
run when Hydra's ``DictConfig`` is turned into these objects (``OmegaConf.to_object``), so a bad value
fails before any work starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from agents.persona import PersonaConfig
from agents.scoring import READERS
from alignment.config import CalibrationConfig, DPOConfig, EvalConfig, RewardConfig, accelerate_config_path
from sim.study_config import StudyConfig

BACKENDS = ("embedded", "openai_compatible", "scripted")
REASONS = ("before_choice", "after_choice")
NETWORKS = ("small_world", "scale_free", "complete")


@dataclass(frozen=True)
class LLMConfig:
    """The model every agent and judge uses.

    Attributes:
        backend: ``embedded`` (in-process transformers), ``openai_compatible`` (HTTP) or
            ``scripted`` (deterministic stand-in, for tests).
        model_path: local Hugging Face model folder for ``embedded``; empty = the bundled SmolLM2-135M.
        device: ``auto`` (cuda if available), ``cpu`` or ``cuda``.
        dtype: ``auto`` (bf16 on cuda, fp32 on cpu), ``float32`` or ``bfloat16``.
        max_batch_size: most rows per forward batch (embedded).
        max_batch_tokens: most rows x padded tokens per forward batch, bounding activation and KV
            memory (embedded).
        prefix_sharing: score a prompt prefix shared by several requests once and reuse its KV cache
            (embedded; results equal unshared scoring within 1e-4); also lets a prompt start from the
            KV of an earlier prompt with the same opening while the engine is busy (a stance's
            generation and its scoring share one prompt).
        prefix_cache_mb: memory for those earlier prompts' KV (embedded; 0 turns that cache off).
        max_context_tokens: prompt + generation budget; longer prompts are truncated (middle dropped).
        base_url: server URL for ``openai_compatible``, e.g. ``http://127.0.0.1:8000/v1``.
        model: model name sent to the server.
        api_key_env: environment variable holding the API key (never the key itself).
        timeout_s: per-request timeout (openai_compatible).
        max_retries: retries of a failed request (refused connection, timeout, 5xx, 429, malformed
            body), with exponential backoff and jitter; each is counted in ``summary.json``
            (``backend.retries``, by cause in ``backend.extra``) (openai_compatible).
        backoff_s: the first retry's mean delay; doubled per attempt, capped at 30 s; a 429's
            ``Retry-After`` is waited at least (openai_compatible).
        concurrency: most requests in flight at once (openai_compatible).
        tokenizer: the served model's Hugging Face tokenizer (a local folder, a hub id or the model's
            ``.gguf`` file), whose chat template renders prompts for a server that gives prompt
            log-probabilities only in the completions ``echo`` form (llama-cpp-python's server with
            ``--logits_all true``); unused with vLLM's ``prompt_logprobs`` (openai_compatible).
        temperature: sampling temperature for free text (0 = greedy).
        top_p: nucleus sampling mass.
    """

    backend: str = "embedded"
    model_path: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    max_batch_size: int = 32
    max_batch_tokens: int = 16384
    prefix_sharing: bool = True
    prefix_cache_mb: int = 512
    max_context_tokens: int = 2048
    base_url: str | None = None
    model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 60.0
    max_retries: int = 3
    backoff_s: float = 0.5
    concurrency: int = 8
    tokenizer: str | None = None
    temperature: float = 0.7
    top_p: float = 0.95

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"llm.backend must be one of {BACKENDS}, got '{self.backend}'")
        if self.backend == "openai_compatible" and not (self.base_url and self.model):
            raise ValueError("llm=openai_compatible needs llm.base_url and llm.model")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"llm.dtype must be auto, float32 or bfloat16, got '{self.dtype}'")
        if self.max_batch_size < 1 or self.max_context_tokens < 256 or self.max_batch_tokens < 256:
            raise ValueError("llm.max_batch_size must be >= 1, llm.max_context_tokens and llm.max_batch_tokens >= 256")
        if self.prefix_cache_mb < 0:
            raise ValueError(f"llm.prefix_cache_mb must be >= 0, got {self.prefix_cache_mb}")
        if not 0 <= self.temperature <= 5 or not 0 < self.top_p <= 1:
            raise ValueError("llm.temperature must be in [0, 5] and llm.top_p in (0, 1]")
        if self.concurrency < 1 or self.max_retries < 0 or not 0 < self.timeout_s < float("inf") or not self.backoff_s >= 0:
            raise ValueError("llm.concurrency must be >= 1, llm.max_retries >= 0, llm.timeout_s > 0 and finite, "
                             "llm.backoff_s >= 0")


@dataclass(frozen=True)
class PopulationConfig:
    """Who is in the society (see ``agents/data/clusters.json`` for cluster names).

    Attributes:
        size: number of agents, 2 to 1,000,000.
        clusters: cultural clusters to sample from.
        weights: relative share per cluster; empty = equal.
        spread: within-cluster noise in units of the cluster's between-country standard deviation.
    """

    size: int = 12
    clusters: list[str] = field(default_factory=lambda: ["protestant_europe", "english_speaking", "confucian",
                                                         "islamic"])
    weights: list[float] = field(default_factory=list)
    spread: float = 1.0

    def __post_init__(self) -> None:
        from agents.worldview import PopulationSpec

        PopulationSpec(size=self.size, clusters=tuple(self.clusters), weights=tuple(self.weights), spread=self.spread)


@dataclass(frozen=True)
class NetworkConfig:
    """The social graph (networkx, always seeded from the run's seed).

    Attributes:
        kind: ``small_world`` (Watts–Strogatz), ``scale_free`` (Barabási–Albert) or ``complete``.
        k: neighbours per node in the small-world ring (even).
        p: rewiring probability (small_world).
        m: edges per new node (scale_free).
        homophily: in [0, 1]; the share of edges rewired, by swapping endpoints, toward same-cluster pairs.
    """

    kind: str = "small_world"
    k: int = 4
    p: float = 0.1
    m: int = 2
    homophily: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in NETWORKS:
            raise ValueError(f"network.kind must be one of {NETWORKS}, got '{self.kind}'")
        if not 0 <= self.homophily <= 1 or not 0 <= self.p <= 1:
            raise ValueError("network.homophily and network.p must be in [0, 1]")
        if self.k < 2 or self.m < 1:
            raise ValueError("network.k must be >= 2 and network.m >= 1")


@dataclass(frozen=True)
class ScenarioConfig:
    """What the society faces.

    Attributes:
        dilemmas: a bundled set name (``default``) or a path to a ``.jsonl``/``.csv`` file.
        per_step: dilemmas debated per step (all agents face the same ones).
        shuffle: draw dilemmas in a seeded random order (else file order).
    """

    dilemmas: str = "default"
    per_step: int = 1
    shuffle: bool = True

    def __post_init__(self) -> None:
        if self.per_step < 1:
            raise ValueError("scenario.per_step must be >= 1")


@dataclass(frozen=True)
class CollectiveConfig:
    """A constitution the agents write themselves (generations runs): before each generation every
    ``proposers`` agents draft a principle, everyone approves or not each candidate (the current
    principles and the drafts), approvals are weighted by the voter's place in the network, and the
    ``keep`` most approved become the next version. Every version is recorded.

    Attributes:
        enabled: vote a new constitution before each generation.
        proposers: agents (seeded draw) who draft one principle each.
        keep: judging principles in each version.
        weight: a voter's weight: ``degree`` (neighbours / mean degree), ``pagerank`` or ``uniform``.
        rule: ``relative`` — a voter approves the candidates whose scored P(yes) is at least its own
            mean over the candidates (approval voting's mean-threshold strategy, which also cancels a
            model's overall lean to "yes" or "no"); ``absolute`` — P(yes) >= ``approve_above``.
        approve_above: the threshold of the ``absolute`` rule.
    """

    enabled: bool = False
    proposers: int = 4
    keep: int = 4
    weight: str = "degree"
    rule: str = "relative"
    approve_above: float = 0.5

    def __post_init__(self) -> None:
        if self.weight not in ("degree", "pagerank", "uniform"):
            raise ValueError(f"constitution.collective.weight must be degree, pagerank or uniform, got '{self.weight}'")
        if self.rule not in ("relative", "absolute"):
            raise ValueError(f"constitution.collective.rule must be relative or absolute, got '{self.rule}'")
        if self.proposers < 1 or self.keep < 1 or not 0 < self.approve_above < 1:
            raise ValueError("constitution.collective.proposers and keep must be >= 1, approve_above in (0, 1)")


@dataclass(frozen=True)
class ConstitutionConfig:
    """Principles for critique and judging.

    Attributes:
        name: a bundled constitution (``harmlessness``, ``multiplex``, ``single_care``, ``none``) or a
            path to a YAML/JSON file.
        collective: let the agents vote their own constitution each generation (see the class).
    """

    name: str = "harmlessness"
    collective: CollectiveConfig = field(default_factory=CollectiveConfig)


@dataclass(frozen=True)
class TokenBudget:
    """New tokens per reply, by phase (SmolLM2 on 2 CPU cores makes ~90 tokens/s at batch 32).

    Attributes:
        stance: an agent's answer to the dilemma (its reason; the choice is read from scores).
        debate: one debate turn.
        critique: one critique of a neighbour's answer.
        revision: the author's revised answer after a critique.
    """

    stance: int = 48
    debate: int = 48
    critique: int = 40
    revision: int = 48

    def __post_init__(self) -> None:
        bad = {k: v for k, v in vars(self).items() if not 1 <= v <= 4096}
        if bad:
            raise ValueError(f"sim.tokens.* must be in [1, 4096], got {bad}")


@dataclass(frozen=True)
class SimConfig:
    """How each step runs.

    Attributes:
        steps: steps to run; each step faces ``scenario.per_step`` new dilemmas.
        debate_rounds: turns each member takes in its group's debate (0 skips debate).
        group_size: members per debating group, drawn from graph neighbourhoods.
        critique: run peer critique and revision.
        cross_cluster_pairs: extra judged pairs per dilemma between answers of agents from different
            clusters; -1 = half the population.
        judge_persona: judges speak from their own worldview (else a neutral judge prompt).
        debias_order: score both option orders and average (CAI's debiasing) for stances and judges.
        choice_rule: how a stance's choice is read from its scored P(a): ``sample`` draws it with a
            per-call seed (a near-0.5 model then splits instead of feigning unanimity), ``argmax``
            takes the likelier option.
        choice_reader: how a stance's P(a) is read (``agents/scoring.py``): ``likelihood`` — each
            action's own text scored after the situation, compared per character (lm-evaluation-harness's
            ``acc_norm``; MoralChoice agreement ~86% on the embedded model) — or ``label`` — the option
            letter's probability, both orders with ``debias_order`` (~35% there: position bias).
        judge_reader: how a judge's P(A better) is read: ``label`` (the letter, both orders with
            ``debias_order``) or ``likelihood`` (each answer's text scored after the dilemma and the
            principle). See the docs' "How good is the feedback?" (docs/evaluation.md) for the measurements behind the default.
        reason: when a stance's free-text reason is written: ``before_choice`` (beside the reading, from a
            prompt that lists both options and asks for a letter; the text may argue for the other option) or
            ``after_choice`` (the choice is read first, then the reason is written for it,
            ``agents.prompts.reason_messages``, and shown to others as "A. <reason>"). ``summary.json``'s
            ``reasons`` counts how often a reason still names the other option, in either mode.
        tokens: new-token budgets per phase.
        progress: show progress bars.
    """

    steps: int = 2
    debate_rounds: int = 1
    group_size: int = 3
    critique: bool = True
    cross_cluster_pairs: int = -1
    judge_persona: bool = True
    debias_order: bool = True
    choice_rule: str = "sample"
    choice_reader: str = "likelihood"
    judge_reader: str = "likelihood"
    reason: str = "before_choice"
    tokens: TokenBudget = field(default_factory=TokenBudget)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.choice_rule not in ("sample", "argmax"):
            raise ValueError(f"sim.choice_rule must be sample or argmax, got '{self.choice_rule}'")
        for key in ("choice_reader", "judge_reader"):
            if getattr(self, key) not in READERS:
                raise ValueError(f"sim.{key} must be one of {READERS}, got '{getattr(self, key)}'")
        if self.reason not in REASONS:
            raise ValueError(f"sim.reason must be one of {REASONS}, got '{self.reason}'")
        if self.steps < 1 or self.debate_rounds < 0 or self.group_size < 2:
            raise ValueError("sim.steps must be >= 1, sim.debate_rounds >= 0, sim.group_size >= 2")


MAX_PROCESSES = 64  # torchrun ranks on one node: a node's GPUs, or its CPU cores


@dataclass(frozen=True)
class AlignmentConfig:
    """The feedback loop (``agora experiment=evolve``).

    Attributes:
        generations: society generations; 0 runs one society with no training. With G > 0, each
            generation's feedback trains a reward model and (except the last) DPO-tunes the policy
            that the policy group uses in the next generation.
        policy_share: share of each cluster's agents that adopt the fine-tuned policy (the rest
            keep the base model, a control group in the same society).
        eval_fraction: share of dilemmas held out (whole dilemmas, never split across train/eval; a seeded
            draw per generation from the run's seed tree).
        min_confidence: keep pairs with |p_a − 0.5| at least this.
        require_informative_labels: stop before training when the calibration slice's judge accuracy
            interval does not clear chance (else the run says so in one line and goes on).
        balance_clusters: down-sample so every author cluster contributes equally.
        reward: reward-model settings (see ``alignment/config.py``).
        dpo: DPO settings (see ``alignment/config.py``).
        processes: training processes of each reward-model and DPO stage, 1 to 64. 1 trains in the run's own process;
            N > 1 starts ``torchrun`` with N ranks on this machine as a child (DDP: NCCL on GPUs, one per rank,
            gloo on CPU; see ``alignment/launch.py``), each rank taking 1/N of every global batch, and reads
            the saved model back. The weights equal one process's to float tolerance, so it is not part of
            the run id. A child killed mid-training leaves its checkpoint: ``resume=`` continues from it.
        accelerate_config: with ``processes`` > 1, start the ranks with ``accelerate launch --config_file``
            this file instead of ``torchrun``: a shipped name (``multi_gpu``, ``fsdp``: ``conf/accelerate/``)
            or a path. Empty: ``torchrun`` (plain DDP).
    """

    generations: int = 0
    policy_share: float = 0.5
    eval_fraction: float = 0.25
    min_confidence: float = 0.0
    require_informative_labels: bool = False
    balance_clusters: bool = False
    reward: RewardConfig = field(default_factory=RewardConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    processes: int = 1
    accelerate_config: str = ""

    def __post_init__(self) -> None:
        if self.generations < 0 or not 0 <= self.policy_share <= 1 or not 0 < self.eval_fraction < 1:
            raise ValueError("alignment.generations must be >= 0, policy_share in [0, 1], eval_fraction in (0, 1)")
        if not 1 <= self.processes <= MAX_PROCESSES:
            raise ValueError(f"alignment.processes must be 1 to {MAX_PROCESSES} (ranks on this one machine), "
                             f"got {self.processes}")
        if self.accelerate_config:
            accelerate_config_path(self.accelerate_config)  # a shipped name or an existing file, checked before any work


@dataclass(frozen=True)
class AgoraConfig:
    """A whole run.

    Attributes:
        seed: the root seed; every random draw in the run derives from it.
        name: experiment name, recorded in outputs.
        llm, population, network, scenario, constitution, sim, alignment, study, eval, calibration: see
            their classes.
        persona: how each agent's worldview conditions the model (``agents/persona.py``): ``persona.method=prompt``
            (the default: the persona text), ``contrast`` or ``steer``, with its variant and strength. It reaches
            every prompt rendered from an agent's worldview: stance, debate, critique, revision, judging, and
            the experiments that draw the run's population, and ``experiment=human_distributions``'s country
            agents (``study.human.persona``; its no-persona baseline stays without one).
        resume: a run folder with a ``checkpoint.json`` to continue (its stored config is used).
    """

    seed: int = 0
    name: str = "society"
    llm: LLMConfig = field(default_factory=LLMConfig)
    population: PopulationConfig = field(default_factory=PopulationConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    scenario: ScenarioConfig = field(default_factory=ScenarioConfig)
    constitution: ConstitutionConfig = field(default_factory=ConstitutionConfig)
    sim: SimConfig = field(default_factory=SimConfig)
    alignment: AlignmentConfig = field(default_factory=AlignmentConfig)
    study: StudyConfig = field(default_factory=StudyConfig)  # the study=society option; experiment=NAME selects another
    eval: EvalConfig = field(default_factory=EvalConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    persona: PersonaConfig = field(default_factory=PersonaConfig)
    resume: str = ""

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        # the name is a folder under outputs/: one plain path part, so a run cannot land elsewhere
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.+=,-]*", self.name):
            raise ValueError(f"name must be one folder name (letters, digits, _ . + = , -), got {self.name!r}")
        c = self.calibration
        if self.alignment.require_informative_labels and not (c.enabled and (c.judge_items or c.hhh_items)):
            raise ValueError("alignment.require_informative_labels=true needs the label-quality gate's judge slice "
                             "(calibration.enabled=true with calibration.judge_items or hhh_items > 0)")


def structured(obj: Any) -> Any:
    """A config dataclass (or instance) as a node Hydra composes into: typed, unknown keys refused, but writable.

    OmegaConf marks the node of a frozen dataclass read-only, which would refuse every group file and
    command-line override ("Cannot change read-only config container"); the objects that
    ``OmegaConf.to_object`` builds from the composed config are frozen all the same.
    """
    from omegaconf import DictConfig, ListConfig, OmegaConf

    def thaw(node: Any) -> None:
        OmegaConf.set_readonly(node, False)
        children = [node[k] for k in node] if isinstance(node, DictConfig) else list(node)
        for child in children:
            if isinstance(child, DictConfig | ListConfig):
                thaw(child)

    root = OmegaConf.structured(obj)
    thaw(root)
    return root


def schema(study: type[StudyConfig] = StudyConfig) -> Any:
    """``AgoraConfig`` as the schema Hydra composes into (:func:`structured`). Its ``study`` is the base node, so
    that the ``study`` option (the defaults list's, or an experiment's ``override /study: NAME``) can be any
    subclass; ``study`` gives a subclass's node instead (a resumed run's stored config merges into its own)."""
    return structured(AgoraConfig(study=study()))

