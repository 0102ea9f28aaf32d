"""WUPS as the official NExT-OE scorer computes it, with an offline lemmatiser.

The official scorer (NExT-OE ``eval_oe.py`` + ``metrics.py``, pinned to nltk 3.3, pywsd 1.2.4) does:

1. ``remove_stop(text)``: pywsd's ``lemmatize_sentence`` (punkt sentences -> Treebank tokens -> perceptron
   POS tags -> WordNet lemma, Porter stem as a fallback), then drops a fixed stopword list, joined by spaces;
2. ``get_wups(pred, ref, alpha)``: tokenise both again; ``min(wups(P, R), wups(R, P))`` where
   ``wups(A, B)`` multiplies, over words a of A, ``max_b wup(a, b)`` (words whose best match is 0 are
   skipped; 0 if none matched);
3. ``wup(a, b)``: 1 if equal, 0 if either has no synset, else Wu-Palmer similarity of the *first* synsets,
   times 0.1 when below ``alpha``.

nltk 3.6 changed ``Synset.wup_similarity`` (a fake root is now added when *either* synset needs one, and
the subsumer prefers ``self``); the official numbers were produced with nltk 3.3, whose rule
(:func:`wup_similarity_nltk33`) is reproduced here on top of nltk's public graph methods.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Callable, Literal, Sequence

from llava_video.errors import LlavaVideoError
from llava_video.evaluation.wordnet_setup import tagger_dir, wordnet_dir

__all__ = [
    "WordNetMissingError",
    "LemmatiserRoute",
    "PywsdLemmatiser",
    "OpenEndedScorer",
    "load_wordnet",
    "load_stopwords",
    "build_lemmatiser",
    "wup_similarity_nltk33",
    "wup",
    "wups",
    "treebank_tokenize",
]

SETUP_HINT = "run `python -m llava_video.evaluation.wordnet_setup` (tools/setup_env.sh does it)"


class WordNetMissingError(LlavaVideoError):
    """WordNet (or the lemmatiser's data) is not installed: scoring would be wrong, so it refuses."""


@cache
def load_wordnet(*, data_dir: Path | None = None):
    """nltk's WordNet 3.0 reader over the project's data folder; a clear error when it is missing."""
    root = wordnet_dir(data_dir)
    if not all((root / name).is_file() for name in ("data.noun", "index.noun", "lexnames")):
        raise WordNetMissingError(f"WordNet 3.0 not found in {root}: {SETUP_HINT}")
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    # nltk only reads corpora from folders on its data path; put the project's folder first.
    data_root = str(root.parents[1])
    if data_root not in nltk.data.path:
        nltk.data.path.insert(0, data_root)
    with warnings.catch_warnings():  # "multilingual functions not available": no OMW, none needed
        warnings.simplefilter("ignore", UserWarning)
        reader = WordNetCorpusReader(str(root), None)
    if reader.get_version() != "3.0":
        raise WordNetMissingError(f"{root} holds WordNet {reader.get_version()}, the scorer needs 3.0")
    return reader


@cache
def load_stopwords() -> frozenset[str]:
    """The stopword list the official scorer removes after lemmatising (nltk's 179 English stopwords)."""
    text = resources.files("llava_video.evaluation").joinpath("nextqa_stopwords.txt").read_text()
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


# --- tokeniser -------------------------------------------------------------------------------------------
# nltk 3.3's word_tokenize (and pywsd 1.2.4's copy of it): the Penn Treebank rules with three extra
# rules in front (curly/angle quotes, and a final period followed by closing quotes). Later nltk versions
# reordered some rules, so the 3.3 table is spelled out here.
def _rules(*pairs: tuple[str, str]) -> list[tuple[re.Pattern[str], str]]:
    return [(re.compile(pattern, re.U), replacement) for pattern, replacement in pairs]


_STARTING_QUOTES = _rules(("([«“‘„]|[`]+)", r" \1 "), (r'^"', r"``"), (r"(``)", r" \1 "),
                          (r"([ (\[{<])(\"|'{2})", r"\1 `` "))
_PUNCTUATION = _rules((r"([^\.])(\.)([\]\)}>\"'»”’ ]*)\s*$", r"\1 \2 \3 "),
                      (r"([:,])([^\d])", r" \1 \2"), (r"([:,])$", r" \1 "), (r"\.\.\.", r" ... "),
                      (r"[;@#$%&]", r" \g<0> "), (r"([^\.])(\.)([\]\)}>\"']*)\s*$", r"\1 \2\3 "),
                      (r"[?!]", r" \g<0> "), (r"([^'])' ", r"\1 ' "))
_PARENS = _rules((r"[\]\[\(\)\{\}\<\>]", r" \g<0> "), (r"--", r" -- "))
_ENDING_QUOTES = _rules(("([»”’]+)", r" \1 "), (r'"', " '' "), (r"(\S)('')", r"\1 \2 "),
                        (r"([^' ])('[sS]|'[mM]|'[dD]|') ", r"\1 \2 "),
                        (r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ", r"\1 \2 "))
_CONTRACTIONS = _rules(*((p, r" \1 \2 ") for p in (
    r"(?i)\b(can)(not)\b", r"(?i)\b(d)('ye)\b", r"(?i)\b(gim)(me)\b", r"(?i)\b(gon)(na)\b",
    r"(?i)\b(got)(ta)\b", r"(?i)\b(lem)(me)\b", r"(?i)\b(mor)('n)\b", r"(?i)\b(wan)(na)\s",
    r"(?i) ('t)(is)\b", r"(?i) ('t)(was)\b")))


def treebank_tokenize(sentence: str) -> list[str]:
    """Tokenise one sentence with nltk 3.3's word_tokenize rules."""
    text = sentence
    for pattern, replacement in (*_STARTING_QUOTES, *_PUNCTUATION, *_PARENS):
        text = pattern.sub(replacement, text)
    text = f" {text} "
    for pattern, replacement in (*_ENDING_QUOTES, *_CONTRACTIONS):
        text = pattern.sub(replacement, text)
    return text.split()


# --- lemmatiser ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LemmatiserRoute:
    """Which data the lemmatiser runs on; ``exact`` only when both are nltk's own English models."""

    sentence_splitter: Literal["punkt-english", "punkt-untrained"]
    tagger: Literal["nltk-averaged-perceptron-eng", "trontagger-0.1.0"]

    @property
    def exact(self) -> bool:
        return self.sentence_splitter == "punkt-english" and self.tagger == "nltk-averaged-perceptron-eng"

    def describe(self) -> str:
        return f"{self.sentence_splitter} + {self.tagger} ({'exact' if self.exact else 'approximate'})"


_PENN_TO_WORDNET = {"NN": "n", "JJ": "a", "VB": "v", "RB": "r"}


class PywsdLemmatiser:
    """pywsd 1.2.4's ``lemmatize_sentence`` with injectable sentence splitter and tagger."""

    def __init__(self, *, wordnet, tagger, split_sentences, route: LemmatiserRoute) -> None:
        from nltk.stem import PorterStemmer

        self._wordnet = wordnet
        self._tagger = tagger
        self._split_sentences = split_sentences
        self._stemmer = PorterStemmer()
        self.route = route

    def tokenize(self, text: str) -> list[str]:
        return [token for sentence in self._split_sentences(text) for token in treebank_tokenize(sentence)]

    def _has_synsets(self, word: str) -> bool:
        return bool(self._wordnet.synsets(word))

    def lemmatize_word(self, word: str, pos: str) -> str:
        """pywsd.utils.lemmatize: WordNet lemma; if it has no synset, a Porter stem that has one; else the word."""
        if not pos:  # words whose sentence tag maps to no WordNet POS are re-tagged alone, noun by default
            pos = _PENN_TO_WORDNET.get(self._tagger.tag([word])[0][1][:2], "n")
        analyses = self._wordnet._morphy(word, pos)  # what WordNetLemmatizer.lemmatize does
        lemma = min(analyses, key=len) if analyses else word
        if self._has_synsets(lemma):
            return lemma
        stem = self._stemmer.stem(word)
        return stem if self._has_synsets(stem) else word

    def lemmatize_sentence(self, text: str) -> list[str]:
        tokens = self.tokenize(text)
        tagged = self._tagger.tag(tokens) if tokens else []
        return [self.lemmatize_word(word.lower(), _PENN_TO_WORDNET.get(tag[:2], "")) for word, tag in tagged]


def _load_project_tagger(data_dir: Path | None):
    from nltk.tag.perceptron import PerceptronTagger

    model_file = tagger_dir(data_dir) / "model.json"
    if not model_file.is_file():
        raise WordNetMissingError(f"POS tagger model for the WUPS lemmatiser not found at {model_file}: {SETUP_HINT}")
    model = json.loads(model_file.read_text(encoding="utf-8"))
    tagger = PerceptronTagger(load=False)
    tagger.model.weights = model["weights"]
    tagger.tagdict = model["tagdict"]
    tagger.classes = set(model["classes"])
    tagger.model.classes = tagger.classes
    return tagger


@cache
def build_lemmatiser(*, data_dir: Path | None = None,
                     tagger: Literal["auto", "nltk", "project"] = "auto") -> PywsdLemmatiser:
    """The closest available route to pywsd's lemmatiser: nltk's own models when installed, else ours."""
    import nltk

    wordnet = load_wordnet(data_dir=data_dir)
    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        split, splitter_name = (lambda text: nltk.sent_tokenize(text, "english")), "punkt-english"
    except LookupError:
        from nltk.tokenize.punkt import PunktSentenceTokenizer

        split, splitter_name = PunktSentenceTokenizer().tokenize, "punkt-untrained"
    nltk_tagger = None
    if tagger in ("auto", "nltk"):
        try:
            nltk.data.find("taggers/averaged_perceptron_tagger_eng/")
            from nltk.tag.perceptron import PerceptronTagger

            nltk_tagger = PerceptronTagger()
        except LookupError:
            if tagger == "nltk":
                raise WordNetMissingError("nltk's averaged_perceptron_tagger_eng is not installed") from None
    if nltk_tagger is not None:
        chosen, tagger_name = nltk_tagger, "nltk-averaged-perceptron-eng"
    else:
        chosen, tagger_name = _load_project_tagger(data_dir), "trontagger-0.1.0"
    route = LemmatiserRoute(sentence_splitter=splitter_name, tagger=tagger_name)
    return PywsdLemmatiser(wordnet=wordnet, tagger=chosen, split_sentences=split, route=route)


# --- Wu-Palmer and WUPS ------------------------------------------------------------------------------------
def wup_similarity_nltk33(synset_a, synset_b) -> float | None:
    """``synset_a.wup_similarity(synset_b)`` as nltk 3.3 computed it (asymmetric for noun/verb pairs)."""
    need_root = synset_a.pos() != "n"  # WordNet 3.0: only the noun hierarchy has a single root
    subsumers = synset_a.lowest_common_hypernyms(synset_b, simulate_root=need_root, use_min_depth=True)
    if not subsumers:
        return None
    subsumer = subsumers[0]
    depth = subsumer.max_depth() + 1
    distance_a = synset_a.shortest_path_distance(subsumer, simulate_root=need_root)
    distance_b = synset_b.shortest_path_distance(subsumer, simulate_root=need_root)
    if distance_a is None or distance_b is None:
        return None
    return (2.0 * depth) / (distance_a + depth + distance_b + depth)


def wup(word_a: str, word_b: str, *, threshold: float, wordnet) -> float:
    """The official word similarity: first synsets only, 0.1 x below ``threshold``."""
    if word_a == word_b:
        return 1.0
    synsets_a = wordnet.synsets(word_a)
    if not synsets_a:
        return 0.0
    synsets_b = wordnet.synsets(word_b)
    if not synsets_b:
        return 0.0
    similarity = wup_similarity_nltk33(synsets_a[0], synsets_b[0]) or 0.0
    return similarity * 0.1 if similarity < threshold else similarity


def wups(words_a: Sequence[str], words_b: Sequence[str], *, similarity: Callable[[str, str], float]) -> float:
    """Product over words of A of their best match in B; unmatched words skipped; 0 if none matched."""
    product, matched = 1.0, False
    for word_a in words_a:
        best = max((similarity(word_a, word_b) for word_b in words_b), default=0.0)
        if best > 0:
            product *= best
            matched = True
    return product if matched else 0.0


class OpenEndedScorer:
    """Scores one open-ended answer against one or two references, as ``eval_oe.py`` does."""

    EXACT_MATCH_TYPES = frozenset({"DC", "DB"})

    def __init__(self, *, lemmatiser: PywsdLemmatiser, stopwords: frozenset[str]) -> None:
        self.lemmatiser = lemmatiser
        self.stopwords = stopwords
        self._wordnet = lemmatiser._wordnet
        self._normalize = lru_cache(maxsize=65536)(self._normalize_uncached)
        self._wup = lru_cache(maxsize=262144)(self._wup_uncached)

    @classmethod
    def create(cls, *, data_dir: Path | None = None) -> "OpenEndedScorer":
        return cls(lemmatiser=build_lemmatiser(data_dir=data_dir), stopwords=load_stopwords())

    def _normalize_uncached(self, text: str) -> str:
        """The official ``remove_stop``: lemmas without stopwords, joined by single spaces."""
        return " ".join(w for w in self.lemmatiser.lemmatize_sentence(text) if w not in self.stopwords)

    def _wup_uncached(self, word_a: str, word_b: str, threshold: float) -> float:
        return wup(word_a, word_b, threshold=threshold, wordnet=self._wordnet)

    def normalize(self, text: str) -> str:
        return self._normalize(text)

    def wups_text(self, prediction: str, reference: str, *, threshold: float) -> float:
        """The official ``get_wups`` on two already-normalised strings (they are tokenised again)."""
        words_p = self.lemmatiser.tokenize(prediction)
        words_r = self.lemmatiser.tokenize(reference)
        def similarity(word_a: str, word_b: str) -> float:
            return self._wup(word_a, word_b, threshold)

        return min(wups(words_p, words_r, similarity=similarity), wups(words_r, words_p, similarity=similarity))

    def score(self, *, prediction: str, references: Sequence[str], qtype: str) -> tuple[float, float]:
        """(WUPS@0, WUPS@0.9) in [0, 1] for one question; the best over the references."""
        if not references:
            raise ValueError("at least one reference answer is needed")
        pred = self.normalize(prediction)
        refs = [self.normalize(reference) for reference in references]
        if qtype in self.EXACT_MATCH_TYPES:
            hit = float(any(pred == ref for ref in refs))
            return hit, hit
        return (max(self.wups_text(pred, ref, threshold=0.0) for ref in refs),
                max(self.wups_text(pred, ref, threshold=0.9) for ref in refs))
