"""The inverse-constitution experiment's plot and report page, read from its typed summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agents.worldview import cluster_label
from sim.experiments.inverse_constitution.summary import InverseSummary, Scope
from sim.experiments.registry import config_part
from sim.report.render import figure, fmt_interval, md_table, render, standard_sections

METHODS = {"learned": ("learned list", "#55a868"), "given_constitution": ("given constitution", "#4c72b0"),
           "no_principle": ("no principle", "#999999")}
PLOT = "inverse_agreement.png"


def scope_label(scope: str) -> str:
    return "whole society" if scope == "society" else cluster_label(scope)


def plot_inverse(scopes: dict[str, Scope], out_dir: Path) -> list[str]:
    """Held-out agreement per scope: the learned list, the given constitution, no principle (Wilson 95%)."""
    from sim.report.plots import error_bars, plt, save_png  # here: matplotlib is slow to load (the CLI imports this)

    names = list(scopes)
    x = np.arange(len(names))
    width = 0.8 / len(METHODS)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(names) + 2), 3.8), dpi=110)
    for k, (m, (label, colour)) in enumerate(METHODS.items()):
        vals = [scopes[s].held_out[m] for s in names]
        mid = [v.value if v.value is not None else 0 for v in vals]
        ax.bar(x + (k - 1) * width, mid, width, yerr=error_bars(mid, [v.low for v in vals], [v.high for v in vals]),
               capsize=3, label=label, color=colour)
    ax.axhline(0.5, color="#444", lw=0.8, ls=":")
    ax.set_xticks(x, [scope_label(s) for s in names], rotation=15, ha="right", fontsize=8)
    ax.set_ylim(0, 1.2)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("held-out agreement with the labels")
    ax.set_title("Which principles explain the preferences? (held-out pairs, Wilson 95% CI)", fontsize=9)
    ax.legend(fontsize=7, ncol=3, loc="upper center")
    save_png(fig, out_dir / PLOT, tight=True)
    return [PLOT]


def na(scope: Scope) -> str:
    """An n/a learned list, with its reason (no candidate principle, no decided training pair)."""
    return f"n/a ({scope.learned_na or 'empty list'})"


def _lists(summary: InverseSummary) -> list[dict[str, Any]]:
    rows = []
    for scope, v in summary.scopes.items():
        learned = "; ".join(f"{p.text} ({p.train_agreement:.2f})" for p in v.learned_list) or na(v)
        rows.append({"scope": scope_label(scope), "learned list (training agreement after each)": learned,
                     "train pairs": v.pairs["train"], "held-out pairs": v.pairs["held_out"]})
    return rows


def _held(summary: InverseSummary) -> list[dict[str, Any]]:
    rows = []
    for scope, v in summary.scopes.items():
        h, d = v.held_out, v.learned_minus
        learned = {f"{METHODS['learned'][0]} [95% CI]": na(v)} if v.learned_na else {}
        rows.append({"scope": scope_label(scope), **{f"{METHODS[m][0]} [95% CI]": h[m] for m in METHODS}, **learned,
                     "n (decided labels)": h["learned"].n, "learned − given [95% CI]": d["given_constitution"],
                     "learned − none [95% CI]": d["no_principle"]})
    return rows


def _reading(summary: InverseSummary) -> str:
    """Which scopes' learned lists beat no principle on held-out pairs, and how far apart the candidates are."""
    scopes = summary.scopes
    beats = [scope_label(s) for s, v in scopes.items() if (v.learned_minus["no_principle"].low or 0) > 0]
    society = scopes["society"]
    spread = society.candidate_train_agreement
    best = society.held_out["learned"]
    whole = na(society) if society.learned_na else f"{fmt_interval(best)} of {best.n} held-out pairs"
    return (f"Whole society, learned list: {whole}. The learned list agrees "
            f"with held-out labels more than no principle does (paired interval above 0) in: {', '.join(beats) or 'no scope'}. "
            f"The candidates' training agreement over the whole society spans {fmt_interval(spread.get('min'))}–"
            f"{fmt_interval(spread.get('max'))}: when every principle agrees about equally, the labels follow something "
            "the principles do not name (e.g. which answer the judge's model finds likelier), and no list is singled out.")


def inverse_report(out_dir: Path, summary: InverseSummary) -> list[str]:
    """``report.md`` and ``report.html`` from the summary."""
    p, b, pairs = summary.proposals, summary.bank, summary.pairs
    src = ", ".join(f"{k} {n}" for k, n in summary.principles.by_source.items()) or "none"
    intro = (f"Preferences: {summary.preferences} ({pairs.all} pairs, {pairs.held_out} held "
             f"out, {pairs.label_ties} ties). For the whole society and each judge cluster, the short list "
             "of principles that best agrees with the training labels (greedy, a list votes by the mean of its "
             "principles' P(A)), scored on held-out pairs beside the constitution the society was given "
             f"({summary.given_constitution}) and no principle.")
    fewer = (f" (study.inverse.proposals={p.requested}: only {p.asked} training pairs have a decided label)"
             if p.requested > p.asked else "")
    notes = (f"Candidates: {summary.principles.candidates} ({src}). Proposals: {p.asked} asked{fewer}, {p.parsed} "
             f"parsed, {p.duplicate} duplicates, **{p.unparsed} unparsed (fallback: no candidate from that pair)**. "
             f"Bank: {b['drawn']} drawn from {b['pool']} ({b['drawn_ccai']} CCAI); CCAI statements {b['ccai']}."
             + (f" {b['ccai_not_accepted']} CCAI statements not accepted by the moderators left out."
                if b.get("ccai_not_accepted") else ""))
    sections = standard_sections(summary, intro)
    sections += [("Candidates", notes), ("Learned lists", md_table(_lists(summary))),
                 ("Held-out agreement", md_table(_held(summary))),
                 ("Plot", figure(PLOT, "Held-out agreement per scope (Wilson 95% CI)")),
                 ("Reading it", _reading(summary)),
                 ("Config", config_part(summary))]
    return render(out_dir, f"agora inverse constitution — {summary.run_id}", sections)
