"""Agreement of the offline lemmatiser route with hand-checked pywsd lemmas on NExT-OE-style answers.

The measured number is quoted in docs/nextqa.md; this test fails if the route gets worse.
"""

from pathlib import Path

from llava_video.evaluation.wups import build_lemmatiser

DATA = Path(__file__).parent / "data" / "oe_lemma_reference.tsv"
MEASURED_AGREEMENT = 105  # of 116, with the trontagger-0.1.0 route (docs/nextqa.md)


def test_lemmatiser_agreement_on_oe_answers():
    rows = [line.split("\t") for line in DATA.read_text().splitlines() if line and not line.startswith("#")]
    lemmatiser = build_lemmatiser()
    agree = [answer for answer, expected in rows if " ".join(lemmatiser.lemmatize_sentence(answer)) == expected]
    assert len(rows) == 116
    if lemmatiser.route.exact:
        return  # nltk's own models are installed: the agreement then measures nltk, not our route
    assert len(agree) >= MEASURED_AGREEMENT, sorted(set(a for a, _ in rows) - set(agree))
