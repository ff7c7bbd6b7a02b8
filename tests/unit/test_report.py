"""Report pages: labels, escaping per format, alignment, intervals, the config shown, the transcript, the social
graph and per-cluster choices, agora-report's tables and axes (scripted runs; pages in a real browser are in
tests/e2e/test_report_pages.py)."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter

import networkx as nx
import polars as pl
import pytest

from agents.llm.scripted import ScriptedBackend
from alignment.metrics import proportion_interval
from sim.experiments import run_experiment as run
from sim.experiments.registry import get
from sim.report.blocks import Quote, Table, Term, md_escape, to_html, to_md
from sim.report.compare import find_runs, seed_summary
from sim.report.labels import label
from sim.report.plots import axis_limits
from sim.report.render import headline_table, relevant_config
from sim.report.social import cluster_choices, debate_pairs, plot_social_graph, stance_change
from tests.helpers import compose, tiny_config

HOSTILE = "I can't agree <script>alert(1)</script> & see [this](http://x.test) *now*. "


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """A society whose every reply is hostile markup, longer than the old 600-character cut."""
    out = tmp_path_factory.mktemp("hostile")
    long_reply = lambda r: "A. " + HOSTILE * 20 + "END-OF-REPLY"  # noqa: E731
    summary = run(tiny_config(debate_rounds=1), out, backend=ScriptedBackend(reply=long_reply))
    return out, summary


def test_markdown_has_no_html_entities_and_html_escapes_agent_text(hostile_run):
    out, _ = hostile_run
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "can't" in md and "&#x27;" not in md and "&lt;" not in md and "&amp;" not in md
    assert "\\<script>" in md and "\\[this\\]" in md  # inert in any Markdown renderer
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'href="http://x.test"' not in page


def test_transcript_shows_the_dilemma_text_and_whole_replies(hostile_run):
    out, _ = hostile_run
    md = (out / "report.md").read_text()
    prompt = pl.read_parquet(out / "preferences.parquet")["prompt"][0]
    first_line = prompt.splitlines()[0]
    assert md_escape(first_line) in md.split("## Sample transcript")[1]
    assert "END-OF-REPLY" in md and "…" not in md.split("## Sample transcript")[1]
    assert "12 new tokens for a stance" in md  # where replies end is the generation budget, said so


def test_labels_replace_raw_keys_and_keep_them_as_tooltips_and_in_the_key_list(hostile_run):
    out, _ = hostile_run
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "label informativeness mean abs p minus half" not in md and "p a std" not in md
    assert label("p_a_std") in md and label("label_informativeness_mean_abs_p_minus_half") in md
    assert f'title="p_a_std">{label("p_a_std")}</span>' in page
    assert "| spread of P(A) over labels (SD) | `p_a_std` |" in md  # the key list


def test_numbers_align_right_and_text_left():
    t = Table([{"cluster": "Confucian", "share": 0.5, "n": 4, "note": None}, {"cluster": "Islamic", "share": 0.25, "n": 3}])
    assert t.md().splitlines()[1] == "|:---|---:|---:|:---|"
    cells = re.findall(r"<td( class=\"num\")?>([^<]*)</td>", t.html())
    assert [bool(c) for c, _ in cells[:4]] == [False, True, True, False]
    mixed = Table([{"figure": Term("policy_model"), "generation 1": "policy-g1"},
                   {"figure": Term("rm_eval_accuracy"), "generation 1": 0.9}])  # a metric per row: aligned per cell
    assert re.findall(r"<td( class=\"num\")?>(policy-g1|0.900)</td>", mixed.html()) == [("", "policy-g1"),
                                                                                   (' class="num"', "0.900")]


def test_interval_column_only_where_some_figure_has_an_interval():
    plain = to_md(headline_table({"stances_per_s": 3.0, "label_informativeness": 0.06}))
    assert "interval" not in plain
    mixed = to_md(headline_table({"stances_per_s": 3.0, "entropy[panel]": {"value": 0.5, "low": 0.4, "high": 0.6}}))
    assert "| figure | value | 95% interval |" in mixed and "| stances per second | 3.000 |  |" in mixed
    assert "[0.400, 0.600]" in mixed


def test_config_is_collapsed_and_shows_only_what_the_run_kind_reads(hostile_run):
    out, summary = hostile_run
    shown = relevant_config(summary["config"], get("society").sections)
    assert "study" not in shown and "alignment" not in shown and "base_url" not in shown["llm"]
    plural = dataclasses.asdict(compose("experiment=pluralism"))  # its settings exist only in its own runs
    assert set(relevant_config(plural, get("pluralism").sections)["study"]) == {"kind", "pluralism"}
    assert "alignment" in relevant_config(summary["config"], get("generations").sections)
    page = (out / "report.html").read_text()
    config_html = re.split(r'<h2 id="s\d+">Config</h2>', page)[1]
    assert config_html.lstrip().startswith("<details><summary>Config: the 10 sections") and "norms:" not in config_html
    assert "persona:" in config_html and "method: prompt" in config_html  # which persona the run's agents were given


def test_quote_is_escaped_for_each_format_only():
    q = Quote("don't <b>shout</b>\n# not a heading", "*stance* — agent 1:")
    assert q.md() == "*stance* — agent 1:\n\n> don't \\<b>shout\\</b>\n> \\# not a heading"
    assert "don&#x27;t &lt;b&gt;shout&lt;/b&gt;" in q.html() and "<em>stance</em>" in q.html()
    assert to_html([Term("p_a_std")]) == f'<span title="p_a_std">{label("p_a_std")}</span>'


def _rows():
    """Two dilemmas, three agents: agent 0 changes its mind on one of two, agent 1 on both, agent 2 never
    debates (only a first answer)."""
    st = []
    for d, changes in (("d1", {0: True, 1: True}), ("d2", {0: False, 1: True})):
        for a, cl in ((0, "confucian"), (1, "islamic"), (2, "islamic")):
            first = "a"
            st.append({"generation": 0, "dilemma_id": d, "agent_id": a, "cluster": cl, "phase": "initial",
                       "choice": first, "p_a": 0.6})
            if a in changes:
                st.append({"generation": 0, "dilemma_id": d, "agent_id": a, "cluster": cl, "phase": "revised",
                           "choice": "b" if changes[a] else "a", "p_a": 0.4})
    tr = [{"generation": 0, "step": s, "dilemma_id": d, "phase": "debate", "group_id": 0, "agent_id": a, "turn": t}
          for s, d in ((1, "d1"), (2, "d2")) for t, a in enumerate((0, 1, 0), start=1)]
    return pl.DataFrame(st), pl.DataFrame(tr)


def test_stance_change_and_debate_pairs_from_the_rows(tmp_path):
    st, tr = _rows()
    assert stance_change(st) == {0: 0.5, 1: 1.0}  # agent 2 has no later choice: left out
    assert debate_pairs(tr) == Counter({(0, 1): 2})
    g = nx.path_graph(3)
    assert plot_social_graph(g, st, tr, tmp_path / "g.png", marked=[1]) == "g.png"
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"


def test_cluster_choices_carry_wilson_intervals():
    st, _ = _rows()
    t = cluster_choices(st, by=["dilemma_id"])
    r = t.filter((pl.col("dilemma_id") == "d1") & (pl.col("cluster") == "islamic") & (pl.col("phase") == "initial"))
    assert (r["n"][0], r["k"][0]) == (2, 2)
    assert (r["share_a"][0], r["low"][0], r["high"][0]) == pytest.approx(proportion_interval(2, 2))
    assert (t["low"] <= t["share_a"]).all() and (t["share_a"] <= t["high"]).all()


def test_society_report_has_the_social_graph_and_choices_by_cluster(hostile_run):
    out, summary = hostile_run
    md = (out / "report.md").read_text()
    assert "## The society" in md and "(social_graph.png)" in md and (out / "social_graph.png").stat().st_size > 0
    assert "## Choices by cluster" in md and (out / "cluster_choices.png").stat().st_size > 0
    assert set(summary["outputs"]) >= {"social_graph.png", "cluster_choices.png"}
    assert re.search(r"\| \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] \|", md.split("## Choices by cluster")[1])


def test_a_society_without_debate_on_one_dilemma_says_so(tmp_path):
    from sim.config import ScenarioConfig

    cfg = dataclasses.replace(tiny_config(debate_rounds=0), scenario=ScenarioConfig(per_step=1))
    run(cfg, tmp_path, backend=ScriptedBackend())
    md = (tmp_path / "report.md").read_text()
    assert "A society answered moral dilemmas (no debate: sim.debate_rounds=0)" in md and "society debated" not in md
    assert "With one dilemma there is no interval over dilemmas." in md and "bootstrap interval over dilemmas" not in md


def test_dot_plot_axes_hold_the_figure_range_not_the_spread():
    lo, hi = axis_limits("label_informativeness", [0.0435, 0.0465, 0.044, 0.046])
    assert lo <= 0 and hi >= 0.5  # 0.0435-0.0465 no longer fills the width
    lo, hi = axis_limits("stances_per_s", [812.0, 841.0])
    assert lo <= 0 < 841 <= hi
    lo, hi = axis_limits("panel_minus_single", [-0.2, 0.1, -0.3])
    assert lo <= -0.3 and hi >= 0.1


def test_across_seeds_is_long_not_wide():
    df = pl.DataFrame({"label": ["n=4 seed=0", "n=4 seed=1", "n=8 seed=0", "n=8 seed=1"], "run": ["a", "b", "c", "d"],
                       "kind": ["x"] * 4, "seed": [0, 1, 0, 1], "wall_seconds": [1.0] * 4, "common": [""] * 4,
                       **{f"m{i}": [0.1, 0.2, 0.3, 0.5] for i in range(12)}})
    s = seed_summary(df)
    assert s.columns == ["setting", "figure", "runs", "mean", "sd", "min", "max"] and len(s) == 2 * 12
    r = s.filter((pl.col("setting") == "n=8") & (pl.col("figure") == "m3")).row(0, named=True)
    assert r["runs"] == 2 and r["mean"] == pytest.approx(0.4) and (r["min"], r["max"]) == (0.3, 0.5)



def test_a_large_graph_is_drawn_as_one_connected_neighbourhood():
    """The layout is quadratic in agents: above MAX_DRAWN the page shows a breadth-first patch, the same each time."""
    import networkx as nx

    from sim.report.social import MAX_DRAWN, neighbourhood

    g = nx.connected_watts_strogatz_graph(3 * MAX_DRAWN, 4, 0.1, seed=0)
    patch = neighbourhood(g, MAX_DRAWN)
    assert len(set(patch)) == MAX_DRAWN and patch[0] == 0 and nx.is_connected(g.subgraph(patch))
    assert patch == neighbourhood(g, MAX_DRAWN)
    split = nx.disjoint_union(nx.path_graph(3), nx.path_graph(5))  # a component smaller than k: filled in order
    assert neighbourhood(split, 5) == [0, 1, 2, 3, 4]


def test_runs_below_a_folder_are_in_sweep_order_then_by_name(tmp_path):
    """A sweep's numbered points (2 before 10) and a named run beside them (agora-report once failed on the mix)."""
    for name in ("10", "2", "overton", "0/nested"):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "summary.json").write_text("{}")
    assert [p.relative_to(tmp_path).as_posix() for p in find_runs([tmp_path])] == ["0/nested", "2", "10", "overton"]
