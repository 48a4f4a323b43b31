"""Text perturbations: pure functions ``f(texts, rng, severity) -> texts`` on lists of strings.

Three kinds, as in CheckList (Ribeiro et al. 2020): a *perturbation* is noise a robust model should
shrug off (typos, casing, emoji), scored by accuracy against the true labels; an *invariance* check must
not change the label (names swapped, a neutral clause appended), so every flip is a failure; a
*directional* check should change it (the emotion phrase negated), so the share of predictions that
change is the pass rate. Severity (1..5) sets the rate or count where a perturbation has one.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Callable

import numpy as np

from emolab.errors import unknown_name

TYPO_RATE = (0.02, 0.05, 0.10, 0.15, 0.20)  # share of letters edited, by severity
ADDED = (1, 1, 2, 3, 4)  # emoji/hashtags or URLs/mentions added, by severity
EMOJI = ["😂", "😊", "🙏", "🔥", "💯", "👍", "✨", "😅", "🙌", "🎉"]
HASHTAGS = ["#mondaymood", "#life", "#tbt", "#nofilter", "#random", "#update", "#weekend", "#news"]
URLS = ["https://t.co/x7Gq2", "http://bit.ly/3kd9", "www.example.com/post/42", "https://youtu.be/dQw4"]
MENTIONS = ["@alex_w", "@newsdesk", "@jamie99", "@the_team", "@sam"]
NEUTRAL_CLAUSES = [", said my friend yesterday", ", i told my sister on tuesday", ", as i wrote on the train",
                   ", i mentioned at lunch", ", my colleague said this morning"]
NAMES = ["john", "mary", "james", "sarah", "michael", "emma", "david", "anna", "robert", "lisa", "tom",
         "kate", "peter", "laura", "mark", "jessica", "paul", "emily", "chris", "amy", "daniel", "rachel"]
PLACES = ["london", "paris", "new york", "chicago", "texas", "california", "china", "india", "japan",
          "canada", "australia", "germany", "mexico", "florida", "boston", "toronto", "berlin", "tokyo"]
# dair-ai emotion's templating: nearly every text says how "i feel" (99% of its test texts hold "feel")
TEMPLATE = re.compile(r"\b(?:i\s+(?:have\s+been|ve\s+been|am|was|m)?\s*feeling|i\s*m\s+feeling|ive\s+been\s+feeling|"
                      r"i\s+(?:feel|felt))\b\s*", re.IGNORECASE)
NEGATABLE = [  # (pattern, replacement): the first emotion phrase of a text, negated
    (re.compile(r"\bi\s+feel\b", re.I), "i do not feel"),
    (re.compile(r"\bi\s+felt\b", re.I), "i did not feel"),
    (re.compile(r"\bi\s+(?:am|m)\s+feeling\b|\bim\s+feeling\b", re.I), "i am not feeling"),
    (re.compile(r"\bi\s+was\s+feeling\b", re.I), "i was not feeling"),
    (re.compile(r"\bi\s+have\s+been\s+feeling\b|\bive\s+been\s+feeling\b", re.I), "i have not been feeling"),
    (re.compile(r"\bi\s+(?:am|m)\b|\bim\b", re.I), "i am not"),
]


def _edit_word(word: str, rng: np.random.Generator, rate: float) -> str:
    chars = list(word)
    i = 0
    while i < len(chars):
        if chars[i].isalpha() and rng.random() < rate:
            op = rng.integers(3)
            if op == 0 and i + 1 < len(chars):  # swap with the next character
                chars[i], chars[i + 1] = chars[i + 1], chars[i]
                i += 1
            elif op == 1 and len(chars) > 1:  # drop
                del chars[i]
                continue
            else:  # insert a random letter after
                chars.insert(i + 1, string.ascii_lowercase[rng.integers(26)])
                i += 1
        i += 1
    return "".join(chars)


def typos(texts: list[str], rng: np.random.Generator, severity: int) -> list[str]:
    """Character typos: each letter is, at the severity's rate, swapped with the next, dropped, or followed by
    an inserted letter."""
    rate = TYPO_RATE[severity - 1]
    return [" ".join(_edit_word(w, rng, rate) for w in t.split(" ")) for t in texts]


def uppercase(texts: list[str], rng: np.random.Generator, severity: int) -> list[str]:
    """Every letter upper case (shouting)."""
    return [t.upper() for t in texts]


def lowercase(texts: list[str], rng: np.random.Generator, severity: int) -> list[str]:
    """Every letter lower case."""
    return [t.lower() for t in texts]


_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")


def no_punctuation(texts: list[str], rng: np.random.Generator, severity: int) -> list[str]:
    """ASCII punctuation removed (apostrophes too: ``don't`` -> ``dont``)."""
    return [re.sub(r"\s+", " ", _PUNCT.sub("", t)).strip() for t in texts]


def emoji_hashtags(texts: list[str], rng: np.random.Generator, severity: int) -> list[str]:
    """Emoji and hashtags appended (as many as the severity says)."""
    pool = EMOJI + HASHTAGS
    return [t + " " + " ".join(pool[j] for j in rng.integers(len(pool), size=ADDED[severity - 1])) for t in texts]


def urls_mentions(texts: list[str], rng: np.random.Generator, severity: int) -> list[str]:
    """URLs and @mentions inserted between words at random places."""
    pool = URLS + MENTIONS
    out = []
    for t in texts:
        words = t.split(" ")
        for j in rng.integers(len(pool), size=ADDED[severity - 1]):
            words.insert(int(rng.integers(len(words) + 1)), pool[j])
        out.append(" ".join(words))
    return out


def no_template(texts: list[str], rng: np.random.Generator, severity: int) -> list[str]:
    """The dataset's templating phrases removed: ``i feel`` / ``i am feeling`` / ``im feeling`` / ``i felt``
    (``i feel so alone`` -> ``so alone``)."""
    return [re.sub(r"\s+", " ", TEMPLATE.sub("", t)).strip() or t for t in texts]


def _swap(texts: list[str], rng: np.random.Generator, words: list[str]) -> list[str]:
    pattern = re.compile(r"\b(" + "|".join(sorted(map(re.escape, words), key=len, reverse=True)) + r")\b", re.I)

    def other(match: re.Match) -> str:
        found = match.group(0)
        choices = [w for w in words if w != found.lower()]
        new = choices[int(rng.integers(len(choices)))]
        return new.title() if found[:1].isupper() else new

    return [pattern.sub(other, t) for t in texts]


def swap_names(texts: list[str], rng: np.random.Generator, severity: int) -> list[str]:
    """Invariance: every person name and place from a fixed list swapped for another of the list."""
    return _swap(_swap(texts, rng, NAMES), rng, PLACES)


def neutral_clause(texts: list[str], rng: np.random.Generator, severity: int) -> list[str]:
    """Invariance: a neutral clause appended (``, said my friend yesterday``)."""
    return [t.rstrip(" .!?") + NEUTRAL_CLAUSES[int(rng.integers(len(NEUTRAL_CLAUSES)))] for t in texts]


def negate(texts: list[str], rng: np.random.Generator, severity: int) -> list[str]:
    """Directional: the first emotion phrase negated (``i feel happy`` -> ``i do not feel happy``); texts
    without one stay as they are."""
    out = []
    for t in texts:
        hits = [(m.start(), p, r) for p, r in NEGATABLE if (m := p.search(t))]
        if hits:
            start, p, r = min(hits, key=lambda h: h[0])
            t = p.sub(r, t, count=1)
        out.append(t)
    return out


@dataclass(frozen=True)
class Perturbation:
    """A named text perturbation, the kind of check it is, and whether severity changes it."""
    name: str
    fn: Callable[[list[str], np.random.Generator, int], list[str]]
    kind: str = "perturbation"  # perturbation | invariance | directional
    graded: bool = False  # severity changes what it does

    @property
    def description(self) -> str:
        return (self.fn.__doc__ or "").strip().splitlines()[0]


PERTURBATIONS: dict[str, Perturbation] = {p.name: p for p in [
    Perturbation("typos", typos, graded=True),
    Perturbation("uppercase", uppercase),
    Perturbation("lowercase", lowercase),
    Perturbation("no-punctuation", no_punctuation),
    Perturbation("emoji-hashtags", emoji_hashtags, graded=True),
    Perturbation("urls-mentions", urls_mentions, graded=True),
    Perturbation("no-template", no_template),
    Perturbation("swap-names", swap_names, "invariance"),
    Perturbation("neutral-clause", neutral_clause, "invariance"),
    Perturbation("negate", negate, "directional"),
]}


def perturb(name: str, texts: list[str], *, severity: int = 3, seed: int = 0) -> list[str]:
    """``texts`` under the named perturbation; the same name, severity and seed give the same output."""
    if name not in PERTURBATIONS:
        raise unknown_name("text perturbation", name, list(PERTURBATIONS))
    rng = np.random.default_rng([seed, severity, sum(map(ord, name))])
    return PERTURBATIONS[name].fn(list(texts), rng, severity)
