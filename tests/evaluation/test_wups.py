"""Hand-worked WUPS cases against the official NExT-OE rules (needs WordNet: tools/setup_env.sh)."""

import pytest

from llava_video.evaluation.wups import (
    OpenEndedScorer,
    WordNetMissingError,
    load_wordnet,
    treebank_tokenize,
    wup,
    wups,
)

DOG_CAT = 2 * 12 / (14 + 14)  # LCS carnivore.n.01 (max depth 11, +1); dog and cat are 2 edges below it


@pytest.fixture(scope="session")
def scorer():
    return OpenEndedScorer.create()


@pytest.fixture(scope="session")
def wordnet(scorer):
    return load_wordnet()


def test_wup_equal_unknown_and_threshold(wordnet):
    assert wup("dog", "dog", threshold=0.9, wordnet=wordnet) == 1.0
    assert wup("zqxv", "dog", threshold=0.0, wordnet=wordnet) == 0.0  # no synset -> 0
    assert wup("dog", "zqxv", threshold=0.0, wordnet=wordnet) == 0.0
    assert wup("dog", "cat", threshold=0.0, wordnet=wordnet) == pytest.approx(DOG_CAT)
    assert wup("dog", "cat", threshold=0.9, wordnet=wordnet) == pytest.approx(0.1 * DOG_CAT)  # below 0.9


def test_wup_keeps_nltk33_asymmetry(wordnet):
    # sit's first synset is a verb, chair's a noun. nltk 3.3 adds the fake root only when the *first*
    # synset needs it (verbs do): sit -> chair meet at the root, chair -> sit has no common hypernym.
    sit_to_chair = wup("sit", "chair", threshold=0.0, wordnet=wordnet)
    # fake root depth 1; sit.v.01 is 1 edge below it, chair.n.01 10 (chair, seat, furniture, ... entity, root)
    assert sit_to_chair == pytest.approx(2 * 1 / ((1 + 1) + (10 + 1)))
    assert wup("chair", "sit", threshold=0.0, wordnet=wordnet) == 0.0


def test_wups_product_skips_unmatched_words():
    table = {("a", "x"): 0.5, ("b", "x"): 0.8, ("c", "x"): 0.0}
    sim = lambda p, q: table.get((p, q), 0.0)  # noqa: E731
    assert wups(["a", "b"], ["x"], similarity=sim) == pytest.approx(0.4)
    assert wups(["a", "c"], ["x"], similarity=sim) == pytest.approx(0.5)  # c matches nothing: skipped
    assert wups(["c"], ["x"], similarity=sim) == 0.0  # nothing matched at all
    assert wups([], ["x"], similarity=sim) == 0.0


def test_scorer_hand_worked(scorer):
    # stopwords go ("the", "a"), both directions give dog~cat
    assert scorer.score(prediction="the dog", references=["a cat"], qtype="CW") == pytest.approx((DOG_CAT, 0.1 * DOG_CAT))
    # unknown word in the prediction is skipped in one direction, and in the other nothing is unmatched
    assert scorer.score(prediction="dog zqxv", references=["cat"], qtype="CW") == pytest.approx((DOG_CAT, 0.1 * DOG_CAT))
    # lemmatised before matching: "dogs" -> dog
    assert scorer.score(prediction="dogs", references=["dog"], qtype="DO") == (1.0, 1.0)
    assert scorer.score(prediction="zqxv", references=["cat"], qtype="CW") == (0.0, 0.0)
    # noun vs verb: one direction is 0, and WUPS takes the min
    assert scorer.score(prediction="sit", references=["chair"], qtype="CH") == (0.0, 0.0)


def test_two_references_take_the_best(scorer):
    one = scorer.score(prediction="cat", references=["dog"], qtype="CW")
    assert scorer.score(prediction="cat", references=["zqxv", "dog"], qtype="CW") == one
    assert scorer.score(prediction="cat", references=["dog", "cat"], qtype="CW") == (1.0, 1.0)


def test_count_and_yes_no_are_exact_match(scorer):
    assert scorer.score(prediction="two", references=["two"], qtype="DC") == (1.0, 1.0)
    assert scorer.score(prediction="three", references=["two"], qtype="DC") == (0.0, 0.0)  # WUP would give > 0
    assert scorer.score(prediction="three", references=["four", "three"], qtype="DC") == (1.0, 1.0)
    assert scorer.score(prediction="Yes", references=["yes"], qtype="DB") == (1.0, 1.0)  # lower-cased lemmas
    # the official rule keeps punctuation tokens: a trailing period breaks the exact match
    assert scorer.score(prediction="yes.", references=["yes"], qtype="DB") == (0.0, 0.0)


def test_normalize_drops_tailored_stopwords_only(scorer):
    assert scorer.normalize("The man is sitting on the sofa") == "man sit on sofa"  # "on" is kept
    assert scorer.normalize("to pick up the ball") == "pick up ball"


def test_treebank_tokenizer_rules():
    assert treebank_tokenize("the baby didn't cry.") == ["the", "baby", "did", "n't", "cry", "."]
    assert treebank_tokenize("he cannot see") == ["he", "can", "not", "see"]
    assert treebank_tokenize('he said "hi"') == ["he", "said", "``", "hi", "''"]
    assert treebank_tokenize("dog, cat; bird") == ["dog", ",", "cat", ";", "bird"]


def test_missing_wordnet_is_a_clear_error(tmp_path):
    with pytest.raises(WordNetMissingError, match="wordnet_setup"):
        load_wordnet(data_dir=tmp_path)
    with pytest.raises(WordNetMissingError, match="WordNet 3.0 not found"):
        OpenEndedScorer.create(data_dir=tmp_path)
