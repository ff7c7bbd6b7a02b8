"""agora-eval's plots and the lines it prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sim.report.plots import error_bars, save_png


def plot_eval(summary: dict[str, Any], out_dir: Path) -> list[str]:
    from sim.report.plots import plt

    def save(fig, name: str) -> str:
        save_png(fig, out_dir / name, bbox_inches="tight")
        return name

    files = []
    if "hhh" in summary:
        pts = summary["hhh"]["reliability"]
        fig, ax = plt.subplots(figsize=(4.2, 4), dpi=110)
        ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfect calibration")
        total = sum(p["n"] for p in pts)
        ax.scatter([p["mean_p"] for p in pts], [p["observed"] for p in pts], s=[15 + 150 * p["n"] / total for p in pts],
                   zorder=3)
        ax.plot([p["mean_p"] for p in pts], [p["observed"] for p in pts], lw=1)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="judge's P(reply A is better)", ylabel="share where A is correct",
               title=f"HHH reliability (ECE {_one(summary['hhh'], 'ece', '.3f')})")
        ax.legend(loc="upper left", fontsize=8)
        files.append(save(fig, "eval_hhh_reliability.png"))
    panels = [(k, t) for k, t in (("low_stances", "stances"), ("low_judges", "judges")) if k in summary.get("moralchoice", {})]
    if panels:
        fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.6), dpi=110, sharey=True, squeeze=False)
        for ax, (key, title) in zip(axes[0], panels, strict=True):
            block = summary["moralchoice"][key]
            names = list(block)
            vals = [block[n]["value"] for n in names]
            err = error_bars(vals, [block[n]["low"] for n in names], [block[n]["high"] for n in names])
            ax.bar(range(len(names)), vals, yerr=err, capsize=3, color=["#444"] + ["#4c72b0"] * (len(names) - 1))
            ax.axhline(0.5, color="grey", lw=1, ls=":")
            ax.set_xticks(range(len(names)), [n.replace("_", "\n") for n in names], fontsize=7)
            ax.set(ylim=(0, 1), title=f"MoralChoice low ambiguity: {title}")
        axes[0][0].set_ylabel("share favouring the moral action")
        files.append(save(fig, "eval_moralchoice.png"))
    if "steerability" in summary:
        st = {k: v for k, v in summary["steerability"].items() if isinstance(v, dict)}
        fig, ax = plt.subplots(figsize=(5, 3.4), dpi=110)
        names = list(st)
        vals = [st[n]["shift"]["value"] for n in names]
        err = error_bars(vals, [st[n]["shift"]["low"] for n in names], [st[n]["shift"]["high"] for n in names])
        ax.barh(range(len(names)), vals, xerr=err, capsize=3, color="#dd8452")
        ax.axvline(0, color="grey", lw=1)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set(xlabel="shift of P(action1) vs unconditioned agent", title="Steerability (high ambiguity)")
        files.append(save(fig, "eval_steerability.png"))
    return files


def _fmt(iv: dict[str, Any], pct: bool = True, spec: str = ".3f") -> str:
    """``value [low, high]``; ``n/a (reason)`` where a figure could not be computed."""
    f = (lambda x: f"{100 * x:.1f}%") if pct else (lambda x: f"{x:{spec}}")
    if iv.get("value") is None:
        return f"n/a ({iv.get('na', 'not computed')})"
    if iv.get("low") is None or iv.get("high") is None:
        return f"{f(iv['value'])} (interval n/a: {iv.get('na', 'not computed')})"
    return f"{f(iv['value'])} [{f(iv['low'])}, {f(iv['high'])}]"


def _one(block: dict[str, Any], key: str, spec: str, default: str = "not computed") -> str:
    """A scalar figure of ``block``, or ``n/a (reason)`` (its ``<key>_na``)."""
    v = block.get(key)
    return f"n/a ({block.get(f'{key}_na', default)})" if v is None or v != v else f"{v:{spec}}"


def report_lines(summary: dict[str, Any]) -> list[str]:
    """The eval block as Markdown lines (for the console and ``report.md``)."""
    lines = [f"### How good is the feedback? ({summary['model']})", ""]
    if "hhh" in summary:
        h = summary["hhh"]
        bias = (f"{100 * h['position_bias_rate']:.1f}%" if h["position_bias_rate"] is not None
                else f"n/a ({h.get('position_bias_rate_na', 'no option shown first')})")
        lines += [f"- HHH judge accuracy ({summary.get('readers', {}).get('judge_reader', 'label')} reader): "
                  f"{_fmt(h['accuracy'])} on {h['items']} comparisons (chance 50%); position-bias rate {bias}; "
                  f"ECE {_one(h, 'ece', '.3f')}"]
        if "reward_model" in h:
            lines.append(f"- HHH reward-model accuracy: {_fmt(h['reward_model']['accuracy'])}")
    if "moralchoice" in summary:
        m = summary["moralchoice"]
        r = summary.get("readers", {})
        lines += [f"- MoralChoice low ambiguity ({m['scenarios']['low']} scenarios × {m['agents']} agents): stances "
                  f"({r.get('choice_reader', 'label')} reader) favour the moral action {_fmt(m['low_stances']['overall'])}, "
                  f"judges ({r.get('judge_reader', 'label')} reader) {_fmt(m['low_judges']['overall'])}",
                  f"- MoralChoice high ambiguity ({m['scenarios']['high']} scenarios): choice entropy "
                  f"{_fmt(m['high_entropy']['mean_bits'], pct=False)} bits (1 = even split), unanimous on "
                  f"{100 * m['high_entropy']['unanimous_share']:.0f}% of scenarios"]
        per = [f"{c} {_fmt(v)}" for c, v in m["low_stances"].items() if c != "overall"]
        lines.append("- stances favouring the moral action by cluster: " + "; ".join(per))
    if "steerability" in summary:
        st = {k: v for k, v in summary["steerability"].items() if isinstance(v, dict)}
        lines.append("- steerability (shift of P(action1) vs an unconditioned agent, permutation p): " + "; ".join(
            f"{c} {_fmt(v['shift'], pct=False, spec='+.3f')} p={_one(v, 'p_value', '.3g')}" for c, v in st.items()))
    lines.append("- wall seconds: " + ", ".join(f"{k} {v}" for k, v in summary["wall_seconds"].items()))
    return lines
