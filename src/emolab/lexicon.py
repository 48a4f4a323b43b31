"""Emotion word lists, shared by the error tags (:mod:`emolab.analysis.tags`) and text augmentation
(:mod:`emolab.models.text_augment`): negators, hedges and intensifiers as regular-expression alternatives,
and the NRC Emotion Lexicon as shipped by ``nrclex``."""

from __future__ import annotations

import json
import re
from functools import lru_cache

NEGATORS = r"[a-z]+n t|not|no|never|none|nothing|nobody|nowhere|neither|nor|cannot|cant|can t|without|n t|nt|dont|didnt|" \
           r"doesnt|isnt|wasnt|arent|werent|wont|wouldnt|couldnt|shouldnt|havent|hasnt|hadnt"
HEDGES = r"maybe|perhaps|kind of|kinda|sort of|a bit|a little|somewhat|i guess|i think|i suppose|probably|" \
         r"possibly|might|seems?|apparently|slightly|fairly|rather"
INTENSIFIERS = r"very|so|really|extremely|totally|completely|absolutely|incredibly|super|too|truly|utterly|" \
               r"deeply|highly|such"
NRC_EMOTIONS = ("anger", "anticipation", "disgust", "fear", "joy", "sadness", "surprise", "trust")


@lru_cache(maxsize=1)
def nrc_lexicon() -> dict[str, list[str]] | None:
    """The NRC Emotion Lexicon as shipped by ``nrclex`` (None when the package is not installed)."""
    try:
        from importlib import resources

        with resources.files("nrclex").joinpath("data/nrc_en.json").open() as fh:
            return json.load(fh)
    except (ImportError, FileNotFoundError, ModuleNotFoundError):
        return None


def lexicon_emotions(text: str) -> list[str]:
    lex = nrc_lexicon() or {}
    found = {e for w in re.findall(r"[a-z]+", text.lower()) for e in lex.get(w, ()) if e in NRC_EMOTIONS}
    return sorted(found)
