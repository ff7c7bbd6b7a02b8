"""Moral Machine: trolley-style choices built from its nine attributes, and people's per-country preferences.

Awad, E., Dsouza, S., Kim, R., Schulz, J., Henrich, J., Shariff, A., Bonnefon, J.-F., & Rahwan, I.
(2018). The Moral Machine experiment. *Nature*, 563, 59–64. Each country's preference per attribute
is an AMCE: how much more likely a character is to be spared when it has the attribute's second level
(e.g. young rather than elderly), with its standard error. The bundled table
(``scenarios/data/moral_machine_countries.csv.gz``) is the nine main attributes of
``country_specific_ACME.csv`` from causalNLP/moralmachine (MIT, ``scenarios/data/LICENSE-MoralMachine.md``);
:func:`build_bundle` recomputes it from ``shared/data/moral_machine`` and a test checks it, and against
the same estimates in ``CountriesChangePr.csv`` (NhiPK/SEMABTesting, no licence: read there, never bundled).

Each generated choice differs in one attribute only: a self-driving car with failed brakes either stays
on course or swerves, and one of two groups dies. Every attribute is asked in two variants (the
preferred group on the car's course, then on the swerve lane; for "intervention" two different groups),
so staying and swerving are balanced. A model's AMCE-equivalent is ``2·P(spare the second level) − 1``:
in a choice that differs in one attribute only, P(spared | level 2) − P(spared | level 1).
"""

from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA_FILE = Path(__file__).parent / "data" / "moral_machine_countries.csv.gz"
CITATION = ("Awad, Dsouza, Kim, Schulz, Henrich, Shariff, Bonnefon & Rahwan (2018), The Moral Machine experiment, "
            "Nature 563: 59-64; per-country AMCEs via causalNLP/moralmachine (MIT)")

# attribute -> (label in the ACME file, the level spared more when positive, the other level)
ATTRIBUTES: dict[str, tuple[str, str, str]] = {
    "intervention": ("Intervention", "inaction (stay on course)", "action (swerve)"),
    "relation_to_av": ("Relation to AV", "pedestrians", "passengers"),
    "law": ("Law", "lawful", "jaywalking"),
    "gender": ("Gender", "females", "males"),
    "fitness": ("Fitness", "fit", "large"),
    "social_status": ("Social Status", "higher status", "lower status"),
    "age": ("Age", "young", "elderly"),
    "no_characters": ("No. Characters", "more characters", "fewer characters"),
    "species": ("Species", "humans", "pets"),
}
# The two groups of a choice: (the level spared more when the AMCE is positive, the other level).
_GROUPS: dict[str, tuple[str, str]] = {
    "law": ("two people crossing on a green signal", "two people crossing on a red signal"),
    "gender": ("a woman and a girl", "a man and a boy"),
    "fitness": ("two athletes", "two large people"),
    "social_status": ("a doctor and an executive", "two homeless people"),
    "age": ("a boy and a girl", "an elderly man and an elderly woman"),
    "no_characters": ("three people", "one person"),
    "species": ("a man and a woman", "a dog and a cat"),
}
_BRAKES = "A self-driving car has a sudden brake failure."
_QUESTION = "What should the car do?"

# MFQ-30 country names (agents.culture) -> ISO3 codes of the Moral Machine tables.
ISO3 = {"Australia": "AUS", "Belgium": "BEL", "China": "CHN", "France": "FRA", "Hungary": "HUN", "Iran": "IRN",
        "Japan": "JPN", "Korea": "KOR", "Latvia": "LVA", "Mongolia": "MNG", "Netherlands": "NLD", "Poland": "POL",
        "Russia": "RUS", "Serbia": "SRB", "Spain": "ESP", "Sweden": "SWE", "Turkey": "TUR", "UK": "GBR", "US": "USA"}


@dataclass(frozen=True, kw_only=True)
class Choice:
    """One generated choice.

    Attributes:
        id: ``"<attribute>/<variant>"``.
        attribute: a key of :data:`ATTRIBUTES`.
        situation: what happens, without the options.
        spare_preferred: the reply that spares the attribute's positive level.
        spare_other: the reply that spares the other level.
    """

    id: str
    attribute: str
    situation: str
    spare_preferred: str
    spare_other: str


def _lanes(attribute: str, variant: int, first: str, second: str) -> Choice:
    """``first`` is spared by swerving in variant 0 (it is on the course) and by staying in variant 1."""
    on_course, on_swerve = (first, second) if variant == 0 else (second, first)
    situation = f"{_BRAKES} In its path: {on_course}. If it swerves into the other lane it will kill {on_swerve} instead."
    stay, swerve = f"Stay on course and kill {on_course}.", f"Swerve and kill {on_swerve}."
    spare_first, spare_second = (swerve, stay) if variant == 0 else (stay, swerve)
    return Choice(id=f"{attribute}/{variant}", attribute=attribute, situation=f"{situation} {_QUESTION}",
                  spare_preferred=spare_first, spare_other=spare_second)


def _relation_to_av(variant: int) -> Choice:
    """Pedestrians or the car's own passengers; the pedestrians are on the course in variant 0."""
    ped, pas = "the two pedestrians crossing ahead", "its two passengers"
    if variant == 0:
        situation = f"{_BRAKES} It can stay on course and kill {ped}, or swerve into a concrete barrier and kill {pas}."
        stay, swerve = f"Stay on course and kill {ped}.", f"Swerve and kill {pas}."
        spare_ped, spare_pas = swerve, stay
    else:
        situation = f"{_BRAKES} It is heading into a concrete barrier that will kill {pas}; it can swerve and kill {ped} instead."
        stay, swerve = f"Stay on course and kill {pas}.", f"Swerve and kill {ped}."
        spare_ped, spare_pas = stay, swerve
    return Choice(id=f"relation_to_av/{variant}", attribute="relation_to_av", situation=f"{situation} {_QUESTION}",
                  spare_preferred=spare_ped, spare_other=spare_pas)


def choices() -> tuple[Choice, ...]:
    """Two variants of a one-attribute choice per attribute (18), in :data:`ATTRIBUTES` order."""
    out: list[Choice] = []
    for attribute in ATTRIBUTES:
        for v in (0, 1):
            if attribute == "intervention":  # the same group in both lanes: staying on course is inaction
                group = ("two pedestrians", "a man and a woman")[v]
                c = _lanes(attribute, 1, group, group)
                out.append(Choice(id=f"{attribute}/{v}", attribute=attribute, situation=c.situation,
                                  spare_preferred=c.spare_preferred, spare_other=c.spare_other))
            elif attribute == "relation_to_av":
                out.append(_relation_to_av(v))
            else:
                out.append(_lanes(attribute, v, *_GROUPS[attribute]))
    return tuple(out)


def build_bundle(shared_data: Path) -> list[tuple[str, str, float, float]]:
    """``(ISO3, attribute, estimate, se)`` for every country and the nine attributes, from the MIT file."""
    by_label = {label: name for name, (label, _, _) in ATTRIBUTES.items()}
    rows = []
    with (shared_data / "moral_machine" / "country_specific_ACME.csv").open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["Label"] in by_label:
                rows.append((row["Country"], by_label[row["Label"]], round(float(row["Estimates"]), 6),
                             round(float(row["se"]), 6)))
    return sorted(rows, key=lambda r: (r[0], list(ATTRIBUTES).index(r[1])))


def write_bundle(shared_data: Path) -> None:
    """Regenerate the bundled table (run by hand when the data changes)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("iso3", "attribute", "estimate", "se"))
    writer.writerows(build_bundle(shared_data))
    DATA_FILE.write_bytes(gzip.compress(buf.getvalue().encode(), mtime=0))  # mtime=0: reproducible bytes


@cache
def load_estimates() -> dict[str, dict[str, tuple[float, float]]]:
    """People's AMCE per country (ISO3) and attribute: ``{iso3: {attribute: (estimate, se)}}``."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for row in csv.DictReader(io.StringIO(gzip.decompress(DATA_FILE.read_bytes()).decode())):
        out.setdefault(row["iso3"], {})[row["attribute"]] = (float(row["estimate"]), float(row["se"]))
    return out


if __name__ == "__main__":
    import sys

    write_bundle(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data"))
    print(f"wrote {DATA_FILE}")
