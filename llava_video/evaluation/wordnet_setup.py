"""Offline install of the language data the NExT-QA open-ended scorer needs.

``nltk.download`` cannot reach its server on the project's machines, so this step builds a
project-local NLTK data folder from package registries that are reachable:

- WordNet 3.0 from Debian's ``wordnet-base`` + ``wordnet-sense-index`` (installed with apt-get when
  missing and running as root), copied to ``<data>/corpora/wordnet/`` plus the ``lexnames`` table
  Debian does not ship;
- an averaged-perceptron POS tagger for the lemmatiser. NLTK's own English tagger model is not on
  PyPI or Debian; the closest available model (same features and code, Honnibal's 2013 WSJ model
  shipped in the PyPI wheel ``textblob-aptagger==0.2.0``) is downloaded with pip (sha256-pinned),
  read with a restricted unpickler and stored as JSON under ``<data>/taggers/``. docs/nextqa.md
  measures how far this is from NLTK's tagger.

Idempotent: a second run only verifies. Run ``python -m llava_video.evaluation.wordnet_setup``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from llava_video.atomic import atomic_path, write_json_atomic, write_text_atomic

__all__ = [
    "DATA_DIR_ENV",
    "nltk_data_dir",
    "wordnet_dir",
    "tagger_dir",
    "install_wordnet",
    "install_tagger",
    "verify_wordnet",
    "main",
]

DATA_DIR_ENV = "LLAVA_VIDEO_NLTK_DATA"
DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")
DEBIAN_PACKAGES = ("wordnet-base", "wordnet-sense-index")
# Files nltk's WordNetCorpusReader opens (lexnames is written by us).
WORDNET_FILES = (
    "cntlist.rev", "index.sense",
    "index.adj", "index.adv", "index.noun", "index.verb",
    "data.adj", "data.adv", "data.noun", "data.verb",
    "adj.exc", "adv.exc", "noun.exc", "verb.exc",
)
# The WordNet 3.0 lexicographer files in number order (lexnames(5WN)); category 1 noun, 2 verb,
# 3 adjective, 4 adverb.
_LEXNAMES = (
    ("adj.all", 3), ("adj.pert", 3), ("adv.all", 4),
    *((f"noun.{name}", 1) for name in (
        "Tops act animal artifact attribute body cognition communication event feeling food group "
        "location motive object person phenomenon plant possession process quantity relation shape "
        "state substance time").split()),
    *((f"verb.{name}", 2) for name in (
        "body change cognition communication competition consumption contact creation emotion motion "
        "perception possession social stative weather").split()),
    ("adj.ppl", 3),
)
TAGGER_WHEEL = "textblob-aptagger==0.2.0"
TAGGER_WHEEL_SHA256 = "1ed281f37b3646475503ce77347d0ed92a5f4de176a63c6ab4d1064636067dcc"
TAGGER_PICKLE_MEMBER = "textblob_aptagger/trontagger-0.1.0.pickle"
TAGGER_NAME = "trontagger_0_1_0"
DOG_CAT_WUP = 0.8571428571428571


def nltk_data_dir() -> Path:
    """The project's NLTK data folder: $LLAVA_VIDEO_NLTK_DATA, else ``.nltk_data`` in the checkout."""
    configured = os.environ.get(DATA_DIR_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file():
        return checkout / ".nltk_data"
    return Path.home() / ".cache" / "llava-video" / "nltk_data"


def wordnet_dir(data_dir: Path | None = None) -> Path:
    return (data_dir or nltk_data_dir()) / "corpora" / "wordnet"


def tagger_dir(data_dir: Path | None = None) -> Path:
    return (data_dir or nltk_data_dir()) / "taggers" / TAGGER_NAME


def _lexnames_text() -> str:
    return "".join(f"{index:02d}\t{name}\t{category}\n" for index, (name, category) in enumerate(_LEXNAMES))


def _install_debian_packages() -> None:
    if shutil.which("apt-get") is None:
        raise RuntimeError(f"WordNet not found in {DEBIAN_WORDNET_DIR} and apt-get is not available: "
                           f"install {' '.join(DEBIAN_PACKAGES)} or set {DATA_DIR_ENV}")
    if os.geteuid() != 0:
        raise RuntimeError(f"WordNet not found in {DEBIAN_WORDNET_DIR}: run as root or "
                           f"`sudo apt-get install {' '.join(DEBIAN_PACKAGES)}` first")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", *DEBIAN_PACKAGES]
    if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        # A fresh machine may have empty package lists: refresh once, then retry.
        subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL, check=True)
        subprocess.run(install, env=env, stdout=subprocess.DEVNULL, check=True)


def install_wordnet(*, data_dir: Path, source: Path = DEBIAN_WORDNET_DIR, allow_apt: bool = True) -> Path:
    """Copy WordNet 3.0 into ``data_dir/corpora/wordnet`` (installing the Debian packages if needed)."""
    target = wordnet_dir(data_dir)
    if all((target / name).is_file() for name in (*WORDNET_FILES, "lexnames")):
        return target
    if not all((source / name).is_file() for name in WORDNET_FILES):
        if not allow_apt:
            raise RuntimeError(f"WordNet files missing in {source} and apt install disabled")
        _install_debian_packages()
    target.mkdir(parents=True, exist_ok=True)
    for name in WORDNET_FILES:
        with atomic_path(target / name) as tmp:
            shutil.copyfile(source / name, tmp)
    write_text_atomic(target / "lexnames", _lexnames_text())
    return target


class _SetOnlyUnpickler(pickle.Unpickler):
    """The tagger pickle holds dicts, strings, floats and one set: refuse every other global."""

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        if (module, name) in {("__builtin__", "set"), ("builtins", "set")}:
            return set
        raise pickle.UnpicklingError(f"tagger pickle refers to {module}.{name}: refused")


def _tagger_from_wheel(wheel: Path) -> tuple[dict, dict, list]:
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != TAGGER_WHEEL_SHA256:
        raise RuntimeError(f"{wheel.name}: sha256 {digest} does not match the pinned {TAGGER_WHEEL_SHA256}")
    with zipfile.ZipFile(wheel) as archive:
        payload = archive.read(TAGGER_PICKLE_MEMBER)
    weights, tagdict, classes = _SetOnlyUnpickler(io.BytesIO(payload), encoding="latin1").load()
    return weights, tagdict, sorted(classes)


def install_tagger(*, data_dir: Path, wheel: Path | None = None) -> Path:
    """Store the perceptron tagger model as JSON in ``data_dir/taggers/``; downloads the wheel with pip."""
    target = tagger_dir(data_dir)
    if (target / "model.json").is_file():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                            "-d", tmp, TAGGER_WHEEL], check=True)
            wheel = next(Path(tmp).glob("*.whl"))
        weights, tagdict, classes = _tagger_from_wheel(wheel)
    target.mkdir(parents=True, exist_ok=True)
    write_json_atomic(target / "model.json", {"source": TAGGER_WHEEL, "weights": weights, "tagdict": tagdict,
                                              "classes": classes}, indent=None)
    return target


def verify_wordnet(*, data_dir: Path) -> float:
    """Load WordNet from ``data_dir`` the way the scorer does and return wup(dog.n.01, cat.n.01)."""
    from llava_video.evaluation.wups import load_wordnet

    wordnet = load_wordnet(data_dir=data_dir)
    similarity = wordnet.synset("dog.n.01").wup_similarity(wordnet.synset("cat.n.01"))
    if abs(similarity - DOG_CAT_WUP) > 1e-9:
        raise RuntimeError(f"WordNet check failed: wup(dog, cat) = {similarity}, expected {DOG_CAT_WUP:.4f}")
    return similarity


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help=f"target NLTK data folder (default: ${DATA_DIR_ENV} or .nltk_data in the checkout)")
    parser.add_argument("--no-apt", action="store_true", help="never call apt-get")
    parser.add_argument("--skip-tagger", action="store_true", help="do not install the lemmatiser's tagger")
    args = parser.parse_args(argv)
    data_dir = (args.data_dir or nltk_data_dir()).resolve()
    try:
        install_wordnet(data_dir=data_dir, allow_apt=not args.no_apt)
        similarity = verify_wordnet(data_dir=data_dir)
        if not args.skip_tagger:
            install_tagger(data_dir=data_dir)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        print(f"wordnet_setup: {exc}", file=sys.stderr)
        return 2
    print(f"NLTK data ready in {data_dir} (WordNet 3.0, wup(dog, cat) = {similarity:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
