"""Cultural clusters built from real survey data.

A cluster is a named group of countries (an Inglehart–Welzel cultural zone). Its centre on each
value axis is the mean of its countries' published scores:

- Inglehart–Welzel (Integrated Values Surveys, EVS/WVS; country-year factor scores via open-numbers'
  DDF package): ``traditional_secular`` (higher = more secular-rational) and
  ``survival_selfexpression`` (higher = more self-expression; the DDF ``survsagg`` column is
  negated, see ``shared/data/README.md``). Each country's latest wave is used.
- Hofstede, Hofstede & Minkov (2010), *Cultures and Organizations*, 3rd ed.; data release
  2015-08-16: the six dimensions on their 0–100 scale.
- Moral Foundations (MFQ-30, Atari et al. 2020, via mkezer/Moral-values-across-countries, MIT):
  agents draw a *real respondent's* five foundation averages (0–5 scale) from the cluster's
  countries rather than a mean, so within-cluster disagreement is real, not invented. The bundle
  holds all 19 countries' respondents; those of Latvia and Mongolia (in no cluster) have an empty
  ``cluster`` and serve the per-country comparison only (:func:`load_mfq_by_country`).

Only derived aggregates (cluster means) and the MIT-licensed MFQ rows are bundled in
``agents/data/``; :func:`build_bundle` recomputes them from ``shared/data`` and a test checks the
bundle against that recomputation.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).parent / "data"
CLUSTERS_FILE = DATA_DIR / "clusters.json"
MFQ_FILE = DATA_DIR / "mfq30_profiles.csv.gz"

# Inglehart–Welzel zones restricted to countries that have MFQ-30 respondents in the shared data.
# (IVS geo id, Hofstede code, MFQ country name)
CLUSTER_COUNTRIES: dict[str, list[tuple[str, str, str]]] = {
    "protestant_europe": [("sweden", "SWE", "Sweden"), ("netherlands", "NET", "Netherlands")],
    "english_speaking": [
        ("united_states", "USA", "US"),
        ("great_britain", "GBR", "UK"),
        ("australia", "AUL", "Australia"),
    ],
    "catholic_europe": [
        ("france", "FRA", "France"),
        ("spain", "SPA", "Spain"),
        ("belgium", "BEL", "Belgium"),
        ("poland", "POL", "Poland"),
        ("hungary", "HUN", "Hungary"),
    ],
    "orthodox_europe": [("russia", "RUS", "Russia"), ("serbia", "SER", "Serbia")],
    "confucian": [("china", "CHI", "China"), ("japan", "JPN", "Japan"), ("south_korea", "KOR", "Korea")],
    "islamic": [("iran", "IRA", "Iran"), ("turkey", "TUR", "Turkey")],
}

IW_AXES = ("traditional_secular", "survival_selfexpression")
HOFSTEDE_AXES = ("power_distance", "individualism", "masculinity", "uncertainty_avoidance",
                 "long_term_orientation", "indulgence")
MFQ_AXES = ("care", "fairness", "loyalty", "authority", "sanctity")
_HOFSTEDE_COLS = ("pdi", "idv", "mas", "uai", "ltowvs", "ivr")
_MFQ_COLS = ("HARM_AVG", "FAIRNESS_AVG", "INGROUP_AVG", "AUTHORITY_AVG", "PURITY_AVG")

# Per-axis scale (documented once, used for clipping and persona wording).
AXIS_SCALES: dict[str, tuple[float, float]] = {
    "traditional_secular": (-2.5, 2.5),  # IVS factor score; Egypt ≈ −1.4, Sweden ≈ +1.2
    "survival_selfexpression": (-2.5, 3.5),  # IVS factor score (sign flipped from survsagg)
    **{a: (0.0, 100.0) for a in HOFSTEDE_AXES},  # Hofstede index
    **{a: (0.0, 5.0) for a in MFQ_AXES},  # MFQ-30 foundation average
}


@dataclass(frozen=True, kw_only=True)
class Cluster:
    """A cultural cluster.

    Attributes:
        name: cluster id, e.g. ``"confucian"``.
        countries: member countries (display names).
        centre: mean score per Inglehart–Welzel and Hofstede axis.
        axis_sd: between-country standard deviation per axis (0 for single-country axes), used to
            scale the sampling spread so that "spread" means the same on every axis.
    """

    name: str
    countries: tuple[str, ...]
    centre: dict[str, float]
    axis_sd: dict[str, float]


def _latest_by_geo(path: Path, column: str) -> dict[str, float]:
    latest: dict[str, tuple[int, float]] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            year, value = int(row["year"]), float(row[column])
            if row["geo"] not in latest or year > latest[row["geo"]][0]:
                latest[row["geo"]] = (year, value)
    return {geo: v for geo, (_, v) in latest.items()}


def _read_country_data(shared_data: Path) -> tuple[dict[str, float], dict[str, float], dict[str, list[float | None]]]:
    """Each country's latest IVS traditional and survival scores, and its six Hofstede scores (None where missing)."""
    ivs = shared_data / "inglehart_welzel_ivs"
    trad = _latest_by_geo(ivs / "ddf--datapoints--tradagg--by--geo--year.csv", "tradagg")
    surv = _latest_by_geo(ivs / "ddf--datapoints--survsagg--by--geo--year.csv", "survsagg")
    hof: dict[str, list[float | None]] = {}
    with (shared_data / "hofstede" / "6-dimensions-for-website-2015-08-16.csv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter=";"):
            hof[row["ctr"]] = [None if row[c] == "#NULL!" else float(row[c]) for c in _HOFSTEDE_COLS]
    return trad, surv, hof


def build_bundle(shared_data: Path) -> tuple[dict, list[tuple[str, str, list[float]]]]:
    """Recompute the bundled tables from the raw survey files in ``shared_data``.

    Returns:
        ``(clusters_json, mfq_rows)`` where ``mfq_rows`` are ``(cluster, country, [5 scores])``
        with the NA and all-zero rows of the raw file dropped (``cluster`` empty for a country in
        no cluster).
    """
    trad, surv, hof = _read_country_data(shared_data)

    clusters: dict[str, dict] = {}
    for name, members in CLUSTER_COUNTRIES.items():
        per_axis: dict[str, list[float]] = {a: [] for a in IW_AXES + HOFSTEDE_AXES}
        for geo, ctr, _ in members:
            per_axis["traditional_secular"].append(trad[geo])
            per_axis["survival_selfexpression"].append(-surv[geo])  # survsagg: higher = survival
            for axis, value in zip(HOFSTEDE_AXES, hof[ctr], strict=True):
                if value is not None:
                    per_axis[axis].append(value)
        clusters[name] = {
            "countries": [m[2] for m in members],
            "centre": {a: round(float(np.mean(v)), 4) for a, v in per_axis.items()},
            "axis_sd": {a: round(float(np.std(v)), 4) for a, v in per_axis.items()},
        }

    country_to_cluster = {m[2]: name for name, ms in CLUSTER_COUNTRIES.items() for m in ms}
    rows: list[tuple[str, str, list[float]]] = []
    with (shared_data / "mfq_countries" / "ALL_MFQ30.csv").open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            cluster = country_to_cluster.get(row["Country"], "")
            if any(row[c] in ("", "NA", "NaN") for c in _MFQ_COLS):
                continue
            scores = [float(row[c]) for c in _MFQ_COLS]
            if not all(np.isfinite(scores)) or all(s == 0 for s in scores):
                continue
            rows.append((cluster, row["Country"], [round(s, 4) for s in scores]))
    return {"clusters": clusters, "sources": _SOURCES}, rows


_SOURCES = {
    "inglehart_welzel": "Integrated Values Surveys (EVS/WVS) TradAgg/SurvSAgg, latest wave per "
    "country, via open-numbers ddf--ivs (commit 4cfde16); cluster means only",
    "hofstede": "Hofstede, Hofstede & Minkov (2010), Cultures and Organizations, 3rd ed.; "
    "data release 2015-08-16; cluster means only",
    "mfq30": "Atari et al. (2020) MFQ-30 respondents via mkezer/Moral-values-across-countries (MIT)",
}


def write_bundle(shared_data: Path) -> None:
    """Regenerate ``agents/data/`` from ``shared_data`` (run by hand when the data changes)."""
    clusters_json, rows = build_bundle(shared_data)
    CLUSTERS_FILE.write_text(json.dumps(clusters_json, indent=1, sort_keys=True) + "\n")
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(("cluster", "country", *MFQ_AXES))
    for cluster, country, scores in rows:
        writer.writerow((cluster, country, *scores))
    # mtime=0 keeps the gzip bytes reproducible.
    MFQ_FILE.write_bytes(gzip.compress(buf.getvalue().encode(), mtime=0))


@cache
def load_clusters() -> dict[str, Cluster]:
    """The bundled clusters, by name."""
    raw = json.loads(CLUSTERS_FILE.read_text())["clusters"]
    return {
        name: Cluster(name=name, countries=tuple(c["countries"]), centre=c["centre"], axis_sd=c["axis_sd"])
        for name, c in raw.items()
    }


@cache
def load_mfq_profiles() -> dict[str, np.ndarray]:
    """Real MFQ-30 respondent profiles per cluster, shape ``(n, 5)`` in :data:`MFQ_AXES` order."""
    text = gzip.decompress(MFQ_FILE.read_bytes()).decode()
    out: dict[str, list[list[float]]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        if row["cluster"]:
            out.setdefault(row["cluster"], []).append([float(row[a]) for a in MFQ_AXES])
    return {k: np.asarray(v) for k, v in out.items()}


@cache
def load_mfq_by_country() -> dict[str, np.ndarray]:
    """Real MFQ-30 respondent profiles per country (all 19), shape ``(n, 5)`` in :data:`MFQ_AXES` order."""
    text = gzip.decompress(MFQ_FILE.read_bytes()).decode()
    out: dict[str, list[list[float]]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        out.setdefault(row["country"], []).append([float(row[a]) for a in MFQ_AXES])
    return {k: np.asarray(v) for k, v in out.items()}


def load_country_values(shared_data: Path) -> dict[str, dict[str, float]]:
    """Each cluster country's own Inglehart–Welzel (latest wave) and Hofstede scores, read at run time from
    ``shared_data`` (the IVS scores are for non-commercial use and are not bundled; only cluster means are).

    Returns:
        MFQ country name -> axis -> score (a Hofstede dimension the country lacks is left out).

    Raises:
        FileNotFoundError: ``shared_data`` lacks the Hofstede or IVS files.
    """
    trad, surv, hof = _read_country_data(shared_data)
    out: dict[str, dict[str, float]] = {}
    for members in CLUSTER_COUNTRIES.values():
        for geo, ctr, country in members:
            values = {"traditional_secular": round(trad[geo], 4), "survival_selfexpression": round(-surv[geo], 4)}
            values |= {a: v for a, v in zip(HOFSTEDE_AXES, hof[ctr], strict=True) if v is not None}
            out[country] = values
    return out


def country_cluster(country: str) -> str:
    """The cluster a country (MFQ display name) belongs to, or "" when it is in none."""
    return next((name for name, ms in CLUSTER_COUNTRIES.items() if country in {m[2] for m in ms}), "")


if __name__ == "__main__":
    import sys

    write_bundle(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data"))
    print(f"wrote {CLUSTERS_FILE} and {MFQ_FILE}")
