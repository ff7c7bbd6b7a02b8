"""The Moral Foundations Questionnaire (MFQ-30) and how it is scored.

Item texts: Graham, J., Nosek, B. A., Haidt, J., Iyer, R., Koleva, S., & Ditto, P. H. (2011).
Mapping the moral domain. *Journal of Personality and Social Psychology*, 101(2), 366–385; the
questionnaire (MFQ30, "MFQ-30") is published for research use at https://moralfoundations.org/.

Part 1 asks how *relevant* 16 considerations are to judging right and wrong, part 2 how much one
*agrees* with 16 statements, both on 0–5. Each of the five foundations has three items in each part;
its score is the mean of its six items (0–5), the scale of the human reference
(``agents/data/mfq30_profiles.csv.gz``). Two catch items (good at math; better to do good than bad)
are scored by no foundation: the MFQ uses them to spot inattentive answers, and so do we.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

FOUNDATIONS = ("care", "fairness", "loyalty", "authority", "sanctity")  # = agents.culture.MFQ_AXES
CATCH = "catch"
CITATION = ("Graham, Nosek, Haidt, Iyer, Koleva & Ditto (2011), Mapping the moral domain, JPSP 101(2): 366-385; "
            "MFQ30 text from moralfoundations.org (research use)")

RELEVANCE_QUESTION = ("When you decide whether something is right or wrong, to what extent is the following "
                      "consideration relevant to your thinking?")
AGREEMENT_QUESTION = "Please read the following sentence and indicate your agreement or disagreement."
RELEVANCE_SCALE = ("not at all relevant", "not very relevant", "slightly relevant", "somewhat relevant",
                   "very relevant", "extremely relevant")
AGREEMENT_SCALE = ("strongly disagree", "moderately disagree", "slightly disagree", "slightly agree",
                   "moderately agree", "strongly agree")


@dataclass(frozen=True, kw_only=True)
class Item:
    """One MFQ-30 item.

    Attributes:
        id: ``"r1".."r16"`` (relevance, part 1) or ``"a1".."a16"`` (agreement, part 2), in the
            questionnaire's order.
        text: the item as printed.
        foundation: one of :data:`FOUNDATIONS`, or :data:`CATCH` for the two catch items.
        part: ``relevance`` or ``agreement``.
    """

    id: str
    text: str
    foundation: str
    part: str

    @property
    def question(self) -> str:
        return RELEVANCE_QUESTION if self.part == "relevance" else AGREEMENT_QUESTION

    @property
    def scale(self) -> tuple[str, ...]:
        """The six answers, from 0 to 5."""
        return RELEVANCE_SCALE if self.part == "relevance" else AGREEMENT_SCALE


_C, _F, _L, _A, _S, _X = (*FOUNDATIONS, CATCH)
_RELEVANCE = (
    ("Whether or not someone suffered emotionally", _C),
    ("Whether or not some people were treated differently than others", _F),
    ("Whether or not someone's action showed love for his or her country", _L),
    ("Whether or not someone showed a lack of respect for authority", _A),
    ("Whether or not someone violated standards of purity and decency", _S),
    ("Whether or not someone was good at math", _X),
    ("Whether or not someone cared for someone weak or vulnerable", _C),
    ("Whether or not someone acted unfairly", _F),
    ("Whether or not someone did something to betray his or her group", _L),
    ("Whether or not someone conformed to the traditions of society", _A),
    ("Whether or not someone did something disgusting", _S),
    ("Whether or not someone was cruel", _C),
    ("Whether or not someone was denied his or her rights", _F),
    ("Whether or not someone showed a lack of loyalty", _L),
    ("Whether or not an action caused chaos or disorder", _A),
    ("Whether or not someone acted in a way that God would approve of", _S),
)
_AGREEMENT = (
    ("Compassion for those who are suffering is the most crucial virtue.", _C),
    ("When the government makes laws, the number one principle should be ensuring that everyone is treated fairly.", _F),
    ("I am proud of my country's history.", _L),
    ("Respect for authority is something all children need to learn.", _A),
    ("People should not do things that are disgusting, even if no one is harmed.", _S),
    ("It is better to do good than to do bad.", _X),
    ("One of the worst things a person could do is hurt a defenseless animal.", _C),
    ("Justice is the most important requirement for a society.", _F),
    ("People should be loyal to their family members, even when they have done something wrong.", _L),
    ("Men and women each have different roles to play in society.", _A),
    ("I would call some acts wrong on the grounds that they are unnatural.", _S),
    ("It can never be right to kill a human being.", _C),
    ("I think it's morally wrong that rich children inherit a lot of money while poor children inherit nothing.", _F),
    ("It is more important to be a team-player than to express oneself.", _L),
    ("If I were a soldier and disagreed with my commanding officer's orders, I would obey anyway because that is "
     "my duty.", _A),
    ("Chastity is an important and valuable virtue.", _S),
)
ITEMS: tuple[Item, ...] = (
    *(Item(id=f"r{i}", text=t, foundation=f, part="relevance") for i, (t, f) in enumerate(_RELEVANCE, 1)),
    *(Item(id=f"a{i}", text=t, foundation=f, part="agreement") for i, (t, f) in enumerate(_AGREEMENT, 1)),
)
# Catch items (this project's rule, on expected answers): "good at math" must stay below "somewhat
# relevant" (< 3) and "better to do good than to do bad" reach at least "slightly agree" (>= 3).
CATCH_LIMITS = {"r6": ("below", 3.0), "a6": ("at_least", 3.0)}


def foundation_scores(answers: Mapping[str, float], items: Sequence[Item] = ITEMS) -> dict[str, float]:
    """Each foundation's score: the mean of its six items' answers (0–5), as the MFQ key scores it.

    Args:
        answers: item id -> answer on 0–5 (here the expected value of the model's answer distribution);
            every scored item must be present, catch items are ignored.
        items: the items scored (default all 30); a subset (e.g. a held-out half) must keep at least one
            item per foundation, whose score is then the mean of its items in the subset.
    """
    missing = [it.id for it in items if it.foundation != CATCH and it.id not in answers]
    if missing:
        raise ValueError(f"MFQ-30 answers missing for items {missing}")
    out = {}
    for f in FOUNDATIONS:
        vals = [float(answers[it.id]) for it in items if it.foundation == f]
        if not vals:
            raise ValueError(f"MFQ-30 items {[it.id for it in items]} score no item of {f}")
        out[f] = sum(vals) / len(vals)
    return out


def passes_catch(answers: Mapping[str, float]) -> bool:
    """Whether the answers pass both catch items (see :data:`CATCH_LIMITS`)."""
    ok = True
    for item_id, (kind, limit) in CATCH_LIMITS.items():
        v = float(answers[item_id])
        ok &= v < limit if kind == "below" else v >= limit
    return ok
