"""``experiment=inverse_constitution``: which short list of principles explains a society's preferences?

After Inverse Constitutional AI (Findeis et al. 2024), for the whole society and for each judge cluster:

1. preferences: a society runs first (the config's population, steps, constitution), or an existing run's
   ``preferences.parquet`` is read (``study.inverse.preferences``); pairs are split, seeded, into training
   and held-out pairs (within each judge cluster, or by dilemma);
2. candidates: the configured model writes one principle per sampled training pair from the preferred and
   the rejected answer (ICA's proposal step; a reply with no principle in it is a counted fallback, kept in
   ``inverse_proposals.parquet``), deduplicated, plus a seeded draw from a bank of real principles (the
   bundled constitutions, the CCAI statements);
3. scoring: a persona-free judge reads P(A better) for every pair under every principle through
   :func:`agents.scoring.read_judgment` — the reader the society's judges use (``sim.judge_reader``,
   ``sim.debias_order``, each pair in its presented order);
4. selection and evaluation (:mod:`alignment.inverse`): per scope, greedy selection of up to
   ``max_principles`` on the training pairs; agreement on the held-out pairs with a Wilson 95% interval,
   beside the constitution the society was given and no principle (the ``none`` constitution's
   "Choose the better answer.").
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from agents import prompts
from agents.llm.base import GenerateRequest, LLMBackend
from agents.scoring import read_judgment, scorer
from alignment.inverse import explain_scopes
from alignment.preferences import PREFERENCE_SCHEMA, SchemaError, split_by_dilemma, validate_preferences
from scenarios.constitution import Constitution, bundled_constitutions, load_constitution
from scenarios.dilemma import Dilemma, load_dilemmas
from scenarios.errors import InputError
from scenarios.principle_bank import NO_PRINCIPLE, principle_bank
from sim.config import AgoraConfig
from sim.experiments.inverse_constitution.config import SECTIONS, InverseConfig
from sim.experiments.inverse_constitution.labels import TEMPLATES
from sim.experiments.inverse_constitution.report import inverse_report, plot_inverse
from sim.experiments.inverse_constitution.summary import InverseSummary, Pairs, counts, headline_of, scopes_of
from sim.experiments.registry import experiment
from sim.experiments.shared.collective import clean_proposal
from sim.run import store
from sim.run.checkpoint import simulate
from sim.run.lifecycle import Run
from sim.run.seeding import child_rng, child_seed

_LEAD = re.compile(r"\b(?:choose|select|prefer|pick)\s+(?:the\s+)?(?:answer|response|reply|one)\s+(?:that|which)\s+",
                   re.IGNORECASE)
log = logging.getLogger(__name__)
CCAI_SETTING = "study.inverse.ccai_path"  # its name in the bank's lines (the shared bank code names no experiment)
MIN_WORDS = 2  # "Choose the answer that helps." is a principle; "Choose the answer that." is not


def parse_proposal(raw: str) -> str | None:
    """The principle in a proposal reply, as "Choose the answer that ...", or None when it names none."""
    m = _LEAD.search(raw or "")
    rest = clean_proposal(raw[m.end():]) if m else None
    if not rest:
        return None
    rest = rest.rstrip(" .!?;:,")
    return f"Choose the answer that {rest}." if len(rest.split()) >= MIN_WORDS else None


def _key(text: str) -> str:
    return " ".join(re.sub(r"\W+", " ", text.lower()).split())


# -- inputs ----------------------------------------------------------------------------------------------
READ_COLUMNS = ("pref_id", "dilemma_id", "prompt", "response_a", "response_b", "judge_cluster", "p_a")


def read_preferences(source: str) -> tuple[pl.DataFrame, Path]:
    """A run's preferences (its folder or the parquet itself), schema-checked, or a one-line error."""
    path = Path(source).expanduser()
    file = path / "preferences.parquet" if path.is_dir() else path
    if not file.is_file():
        raise InputError(f"{source}: no preferences.parquet here (study.inverse.preferences takes a run folder or the file)")
    try:
        df = pl.read_parquet(file)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"{file}: not a readable parquet file ({type(exc).__name__})") from None
    missing = [c for c in PREFERENCE_SCHEMA if c not in df.columns]
    if missing:
        raise InputError(f"{file}: not a preferences table: missing column(s) {', '.join(missing)}")
    try:
        df = df.select(list(PREFERENCE_SCHEMA)).cast(PREFERENCE_SCHEMA)
        for col in READ_COLUMNS:  # the columns this method reads: a null one would fail mid-run
            if nulls := df[col].null_count():
                raise InputError(f"{file}: column {col} has {nulls} null value(s) (of {len(df)} rows)")
        validate_preferences(df)
    except (SchemaError, pl.exceptions.PolarsError) as exc:
        raise InputError(f"{file}: {str(exc).splitlines()[0][:200]}") from None
    if "society" in df["judge_cluster"].to_list():
        raise InputError(f"{file}: a judge_cluster is named 'society', the name of the whole-society scope")
    if len(df) < 2:
        raise InputError(f"{file}: {len(df)} preference(s); at least 2 are needed to hold some out")
    return df, file


def run_dilemmas(cfg: AgoraConfig, file: Path, prefs: pl.DataFrame) -> dict[str, Dilemma]:
    """The dilemmas the preferences were judged on: the run's own ``scenario.dilemmas`` (its summary.json)
    when there is one, else this config's."""
    source = cfg.scenario.dilemmas
    summary = file.parent / "summary.json"
    if summary.is_file():
        try:
            source = json.loads(summary.read_text())["config"]["scenario"]["dilemmas"]
        except (OSError, ValueError, KeyError, TypeError):
            pass  # not a summary agora wrote: this config's dilemmas, checked below
    pool = {d.id: d for d in load_dilemmas(source)}
    missing = sorted(set(prefs["dilemma_id"].to_list()) - set(pool))
    if missing:
        raise InputError(f"{file}: dilemma(s) {', '.join(missing[:5])} are not in {source} (set scenario.dilemmas to "
                         "the file the run used)")
    return pool


def given_constitution(cfg: AgoraConfig, prefs: pl.DataFrame) -> tuple[Constitution, str]:
    """The constitution the preferences name (when one bundled one), else ``constitution.name``; and which."""
    tags = sorted(set(prefs["constitution_version"].to_list()))
    names = {t.split("@")[0] for t in tags}
    if len(names) == 1 and (name := names.pop()) in bundled_constitutions():
        return load_constitution(name), f"{name} (named by the preferences)"
    return load_constitution(cfg.constitution.name), (f"{cfg.constitution.name} (constitution.name: the preferences name "
                                                      f"{', '.join(tags[:3])}, not one bundled constitution)")


def split_pairs(prefs: pl.DataFrame, held_out: float, split_by: str, seed: int) -> np.ndarray:
    """True for held-out pairs: a seeded share within each judge cluster, or whole dilemmas."""
    if split_by == "dilemma":
        if prefs["dilemma_id"].n_unique() < 2:
            raise InputError("study.inverse.split_by=dilemma needs preferences on two or more dilemmas")
        _, held = split_by_dilemma(prefs, held_out, child_seed(seed, "inverse", "split"))
        return prefs["pref_id"].is_in(held["pref_id"].implode()).to_numpy()
    out = np.zeros(len(prefs), bool)
    clusters = prefs["judge_cluster"].to_list()
    for c in sorted(set(clusters)):
        idx = np.array([i for i, x in enumerate(clusters) if x == c])
        if len(idx) >= 2:
            k = min(max(1, round(held_out * len(idx))), len(idx) - 1)
            out[child_rng(seed, "inverse", "split", c).permutation(idx)[:k]] = True
    return out


def proposal_rows(prefs: pl.DataFrame, held: np.ndarray, n: int, seed: int) -> list[int]:
    """``n`` training pairs with a decided label, the judge clusters in turn (seeded order within each)."""
    clusters, p_a = prefs["judge_cluster"].to_list(), prefs["p_a"].to_numpy()
    queues = {c: [int(i) for i in child_rng(seed, "inverse", "proposals", c).permutation(
        [i for i in range(len(prefs)) if clusters[i] == c and not held[i] and p_a[i] != 0.5])]
        for c in sorted(set(clusters))}
    out: list[int] = []
    while len(out) < n and any(queues.values()):
        for q in queues.values():
            if q and len(out) < n:
                out.append(q.pop(0))
    return out


# -- model work ------------------------------------------------------------------------------------------
async def _propose(cfg: AgoraConfig, backend: LLMBackend, prefs: pl.DataFrame, rows: list[int],
                   dilemmas: dict[str, Dilemma], on_done: Callable[[], None]) -> list[dict[str, Any]]:
    inv = cfg.study.inverse

    async def one(i: int) -> dict[str, Any]:
        r = prefs.row(i, named=True)
        chosen, rejected = (r["response_a"], r["response_b"]) if r["p_a"] > 0.5 else (r["response_b"], r["response_a"])
        (raw,) = await backend.generate([GenerateRequest(
            messages=prompts.inverse_proposal_messages(dilemmas[r["dilemma_id"]], chosen, rejected),
            max_new_tokens=inv.proposal_tokens, temperature=cfg.llm.temperature, top_p=cfg.llm.top_p,
            seed=child_seed(cfg.seed, "inverse", "proposal", i))])
        on_done()
        return {"pref_id": r["pref_id"], "judge_cluster": r["judge_cluster"], "raw": raw}

    return list(await asyncio.gather(*(one(i) for i in rows)))


async def _score(cfg: AgoraConfig, backend: LLMBackend, prefs: pl.DataFrame, principle: str,
                 dilemmas: dict[str, Dilemma], on_done: Callable[[], None]) -> list[float]:
    """P(response_a better | ``principle``) for every pair, by a persona-free judge."""
    score, c = scorer(backend), cfg.sim

    async def one(r: dict[str, Any]) -> float:
        reading = await read_judgment(score, c.judge_reader, dilemmas[r["dilemma_id"]], None, principle,
                                      r["response_a"], r["response_b"], both_orders=c.debias_order,
                                      swapped=r["order_swapped"], what=f"inverse judgment of {r['pref_id']}")
        on_done()
        return reading.p_a

    return list(await asyncio.gather(*(one(r) for r in prefs.iter_rows(named=True))))


def principles_of(proposals: list[dict[str, Any]], bank: list[dict[str, Any]], given: Constitution,
                  none: Constitution) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every principle to score, once per text (generated, then bank, then the baselines' own), with its
    roles; and the proposals with their parsed principle and status (parsed, duplicate, unparsed)."""
    out: list[dict[str, Any]] = []
    by_key: dict[str, dict[str, Any]] = {}

    def add(pid: str, text: str, source: str, **role: bool) -> str:
        k = _key(text)
        if k not in by_key:
            by_key[k] = {"id": pid, "text": text, "source": source, "candidate": False, "given": False, "none": False}
            out.append(by_key[k])
            status = "parsed"
        else:
            status = "duplicate"
        for r, v in role.items():
            by_key[k][r] = by_key[k][r] or v
        return status

    logged = []
    for k, p in enumerate(proposals):
        text = parse_proposal(p["raw"])
        status = add(f"gen:{k}", text, "generated", candidate=True) if text else "unparsed"
        logged.append(p | {"principle": text, "status": status})
    for p in bank:
        add(p["id"], p["text"], p["source"], candidate=True)
    for p in given.judge:
        add(f"{given.name}:{p.id}", p.text, f"constitution:{given.name}", given=True)
    for p in none.judge:
        add(f"{none.name}:{p.id}", p.text, f"constitution:{none.name}", none=True)
    return out, logged


# -- outputs ---------------------------------------------------------------------------------------------
PROPOSAL_SCHEMA = {"pref_id": pl.String, "judge_cluster": pl.String, "raw": pl.String, "principle": pl.String,
                   "status": pl.String}
CANDIDATE_SCHEMA = {"scope": pl.String, "principle_id": pl.String, "text": pl.String, "source": pl.String,
                    "train_hits": pl.Int64, "train_n": pl.Int64, "train_agreement": pl.Float64,
                    "train_low": pl.Float64, "train_high": pl.Float64, "selected_rank": pl.Int64}
LIST_SCHEMA = {"scope": pl.String, "method": pl.String, "principle_ids": pl.List(pl.String),
               "principles": pl.List(pl.String), "train_agreement": pl.Float64, "train_n": pl.Int64,
               "held_hits": pl.Int64, "held_n": pl.Int64, "held_agreement": pl.Float64, "held_low": pl.Float64,
               "held_high": pl.Float64, "held_label_ties": pl.Int64, "held_undecided": pl.Int64,
               "na_reason": pl.String}  # why a learned list is n/a (null figures); null otherwise


def tables(principles: list[dict[str, Any]], result: dict[str, Any]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The candidates' training agreement per scope, and each scope's three predictors."""
    cands, lists = [], []
    for scope, r in result.items():
        rank = {s["row"]: k + 1 for k, s in enumerate(r["steps"])}
        for i, a in r["candidates"].items():
            p = principles[i]
            cands.append({"scope": scope, "principle_id": p["id"], "text": p["text"], "source": p["source"],
                          "train_hits": a["hits"], "train_n": a["n"], "train_agreement": a["value"],
                          "train_low": a["low"], "train_high": a["high"], "selected_rank": rank.get(i)})
        for method, m in r["methods"].items():
            h = m["held_out"]
            lists.append({"scope": scope, "method": method, "principle_ids": [principles[i]["id"] for i in m["rows"]],
                          "principles": [principles[i]["text"] for i in m["rows"]], "train_agreement": m["train"]["value"],
                          "train_n": m["train"]["n"], "held_hits": h["hits"], "held_n": h["n"], "held_agreement": h["value"],
                          "held_low": h["low"], "held_high": h["high"], "held_label_ties": h["label_ties"],
                          "held_undecided": h["undecided"], "na_reason": r["na"] if method == "learned" else None})
    return pl.DataFrame(cands, schema=CANDIDATE_SCHEMA), pl.DataFrame(lists, schema=LIST_SCHEMA)


def scores_table(prefs: pl.DataFrame, held: np.ndarray, principles: list[dict[str, Any]], scores: np.ndarray) -> pl.DataFrame:
    """Every pair's P(A) under every principle, beside its label (long form)."""
    base = prefs.select("pref_id", "judge_cluster", pl.col("p_a").alias("label_p_a")).with_columns(
        pl.Series("held_out", held))
    return pl.concat([base.with_columns(pl.lit(p["id"]).alias("principle_id"), pl.Series("p_a", scores[k], pl.Float64))
                      for k, p in enumerate(principles)])


def _society(run: Run, pool: list[Dilemma]) -> tuple[pl.DataFrame, dict[str, Any]]:
    """A society's preferences (a checkpointed stage, as the ablation runs one); its usual files are written."""
    from sim.society.model import Society  # here: Mesa is slow to load (the CLI imports this module)

    cfg = run.cfg
    society = Society(cfg, pool, load_constitution(cfg.constitution.name), run.backend, run_id=run.run_id,
                      run_async=run.run_async)
    fb = run.stage("society", partial(simulate, society, run.ckpt, "society"), drop=("society",))
    stances, transcripts, prefs = store.feedback_tables(fb["stances"], fb["transcripts"], fb["preferences"])
    return prefs, store.write_feedback(run.out_dir, stances, transcripts, prefs)


def check(cfg: AgoraConfig) -> None:
    """Refuse before any work what cannot be honoured or mean anything: a preferences file that is not one
    (:func:`read_preferences`), ``bank_size`` beyond the bank, ``split_by=dilemma`` over fewer than two dilemmas."""
    from sim.society.model import check_per_step  # here: Mesa is slow to load (the CLI imports this module)

    inv = cfg.study.inverse
    if inv.preferences:
        prefs, file = read_preferences(inv.preferences)
        run_dilemmas(cfg, file, prefs)
        dilemmas = prefs["dilemma_id"].n_unique()
    else:
        pool = load_dilemmas(cfg.scenario.dilemmas)
        check_per_step(cfg, pool)
        dilemmas = min(cfg.sim.steps * cfg.scenario.per_step, len(pool))
    if inv.split_by == "dilemma" and dilemmas < 2:
        raise InputError(f"study.inverse.split_by=dilemma needs preferences on two or more dilemmas; these have {dilemmas}"
                         + ("" if inv.preferences else " (sim.steps x scenario.per_step)"))
    _, bank = principle_bank(inv.ccai_path, inv.bank_size, child_rng(cfg.seed, "inverse", "bank"), CCAI_SETTING)
    if bank["drawn"] < inv.bank_size:
        raise InputError(f"study.inverse.bank_size={inv.bank_size} is more than the {bank['pool']} principles in the bank "
                         f"(CCAI: {bank['ccai']})")


@experiment("inverse_constitution", key="inverse", config=InverseConfig, summary=InverseSummary, report=inverse_report,
            check=check, sections=SECTIONS, templates=TEMPLATES, published_id=True)
def run_inverse_constitution(run: Run) -> InverseSummary:
    from sim.society.model import check_per_step  # here: Mesa is slow to load (the CLI imports this module)

    cfg, inv = run.cfg, run.cfg.study.inverse
    notes: dict[str, Any] = {}
    if inv.preferences:
        prefs, file = read_preferences(inv.preferences)
        dilemmas = run_dilemmas(cfg, file, prefs)
        given, notes["given_constitution"] = given_constitution(cfg, prefs)
        notes["preferences"] = str(file)
    else:
        pool = load_dilemmas(cfg.scenario.dilemmas)
        check_per_step(cfg, pool)
        dilemmas = {d.id: d for d in pool}
        given, notes["given_constitution"] = load_constitution(cfg.constitution.name), cfg.constitution.name
        notes["preferences"] = "this run's society"
    bank, notes["bank"] = principle_bank(inv.ccai_path, inv.bank_size, child_rng(cfg.seed, "inverse", "bank"), CCAI_SETTING)
    if notes["bank"]["ccai"].startswith("absent"):
        log.warning("inverse: CCAI statements not found, the bank is the bundled constitutions only (%s)", inv.ccai_path)
    if not inv.preferences:
        prefs, notes["trl_export"] = _society(run, pool)
    if len(prefs) < 2:
        raise InputError(f"the society gave {len(prefs)} preference(s); raise population.size or sim.steps")
    held = split_pairs(prefs, inv.held_out, inv.split_by, cfg.seed)
    rows = proposal_rows(prefs, held, inv.proposals, cfg.seed)
    if len(rows) < inv.proposals:
        log.warning("inverse: study.inverse.proposals=%d, but only %d training pair(s) have a decided label: %d proposals",
                    inv.proposals, len(rows), len(rows))
    raw = run.stage("proposals", _propose(cfg, run.backend, prefs, rows, dilemmas, run.progress.update), total=len(rows),
                    unit="pair", desc="propose principles")
    principles, proposals = principles_of(raw, bank, given, load_constitution(NO_PRINCIPLE))
    scores = np.asarray([run.stage(f"score/{p['id']}", _score(cfg, run.backend, prefs, p["text"], dilemmas,
                                                              run.progress.update),
                                   total=len(prefs), unit="pair", desc=f"judge under principle {k + 1}/{len(principles)}")
                         for k, p in enumerate(principles)], float)
    roles = {r: [k for k, p in enumerate(principles) if p[r]] for r in ("candidate", "given", "none")}
    result = explain_scopes(scores, prefs["p_a"].to_numpy(), prefs["judge_cluster"].to_list(), held, roles,
                            inv.max_principles, cfg.seed, cfg.eval.bootstrap)
    candidates, lists = tables(principles, result)
    run.write_parquet("inverse_candidates", candidates)
    run.write_parquet("inverse_lists", lists)
    run.write_parquet("inverse_proposals", pl.DataFrame(proposals, schema=PROPOSAL_SCHEMA))
    run.write_parquet("inverse_scores", scores_table(prefs, held, principles, scores))
    scopes = scopes_of(result, principles)
    asked, scored = counts(principles, proposals, inv.proposals)
    # as published: the scoring stages (one per principle) summed under one key, and a society key when none ran
    seconds = {k: round(run.ckpt.seconds(stage), 1) for k, stage in
               (("society", "society"), ("proposals", "proposals"), ("scoring", "score/"))}
    return InverseSummary(scopes=scopes, headline=headline_of(scopes), preferences=notes["preferences"],
                          given_constitution=notes["given_constitution"], bank=notes["bank"], proposals=asked,
                          principles=scored, trl_export=notes.get("trl_export"), seconds=seconds,
                          pairs=Pairs(all=len(prefs), held_out=int(held.sum()), label_ties=int((prefs["p_a"] == 0.5).sum())),
                          plots=plot_inverse(scopes, run.out_dir))
