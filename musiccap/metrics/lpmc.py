"""LP-MusicCaps-compatible BLEU, METEOR and ROUGE-L, written without Hugging Face `evaluate`.

The LP-MusicCaps authors (Doh et al. 2023) scored their systems with `evaluate.load("bleu" |
"meteor" | "rouge")`. `evaluate` downloads its metric scripts at run time, which this machine
cannot do, so the three computations are reproduced here from the libraries underneath them:

- BLEU-n: the tensorflow-nmt corpus BLEU (`compute_bleu`, maximum order n, no smoothing) over
  sacrebleu's 13a tokens, the tokenizer `evaluate`'s BLEU uses by default.
- METEOR: mean of nltk's `single_meteor_score(ref, hyp, alpha=0.9, beta=3, gamma=0.5)` (METEOR 1.0:
  exact, Porter-stem and WordNet-synonym matches). Each caption is first split into sentences, then
  word-tokenized, as nltk's `word_tokenize` does (see `sentence_split`). With several references
  the best one counts, as `evaluate` does through nltk's `meteor_score`.
- ROUGE-L: mean `rouge_score` rougeL F-measure without stemming (the best reference when there are
  several). `evaluate` reports the median of bootstrap means, within 1e-4 of the mean here.

WordNet 3.0 comes from Debian's `wordnet-base` and `wordnet-sense-index` (`/usr/share/wordnet`);
`wordnet_reader` copies those files into an nltk_data folder in a cache directory and writes the
`lexnames` file Debian does not ship. Nothing is downloaded.

`../shared/data/lp-music-caps-eval` holds the published numbers; tests/test_metrics_lpmc.py checks
all seven systems against them.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")

# The 45 WordNet 3.0 lexicographer files (lexnames(5WN)): number = position, then the syntactic
# category nltk expects in the third column (1 noun, 2 verb, 3 adjective, 4 adverb).
WORDNET_LEXNAMES: tuple[str, ...] = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event",
    "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object",
    "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
    "verb.body", "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)  # fmt: skip
_LEXNAME_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


@dataclass
class LpmcScores:
    bleu1: float
    bleu2: float
    bleu3: float
    bleu4: float
    meteor: float
    rouge_l: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "musiccap"


# ----------------------------------------------------------------------------- tokenization


# Abbreviations whose period does not end a sentence. nltk's pretrained English punkt model
# (not installable here) knows these among many others; these are the ones captions use.
_ABBREVIATIONS = frozenset({"e.g", "i.e", "etc", "vs", "approx", "mr", "mrs", "ms", "dr", "st", "no", "ft"})


@lru_cache(maxsize=1)
def _punkt() -> object:
    """An untrained punkt splitter with a short abbreviation list.

    nltk's `word_tokenize` first splits text into sentences with the pretrained English punkt model,
    and the Treebank tokenizer then separates only the final period of each sentence: without the
    split, "guitar. The" stays one token "guitar." and METEOR comes out ~0.007 low on LP-MusicCaps.
    Punkt's algorithm ships in nltk; only its trained parameters are a download. Untrained it breaks
    after every . ? ! that is not an initial, ellipsis or listed abbreviation, which on all seven
    LP-MusicCaps systems matches the published METEOR to within 2e-4.
    """
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    parameters = PunktParameters()
    parameters.abbrev_types = set(_ABBREVIATIONS)
    return PunktSentenceTokenizer(parameters)


def sentence_split(text: str) -> list[str]:
    return _punkt().tokenize(text)


@lru_cache(maxsize=1)
def _treebank() -> object:
    from nltk.tokenize.destructive import NLTKWordTokenizer

    return NLTKWordTokenizer()


def word_tokenize(text: str) -> list[str]:
    """nltk `word_tokenize`: punkt sentences, then the improved Treebank tokenizer on each."""
    treebank = _treebank()
    return [token for sentence in sentence_split(text) for token in treebank.tokenize(sentence)]


@lru_cache(maxsize=1)
def _tokenizer_13a() -> object:
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    return Tokenizer13a()


def tokenize_13a(text: str) -> list[str]:
    return _tokenizer_13a()(text).split()


# ----------------------------------------------------------------------------- BLEU


def _ngram_counts(tokens: Sequence[str], max_order: int) -> Counter:
    counts: Counter = Counter()
    for order in range(1, max_order + 1):
        for start in range(len(tokens) - order + 1):
            counts[tuple(tokens[start : start + order])] += 1
    return counts


def corpus_bleu(
    predictions: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]], max_order: int = 4
) -> list[float]:
    """tensorflow-nmt `compute_bleu` without smoothing on tokenized text: [BLEU-1, ..., BLEU-max_order].

    Clipped n-gram matches and candidate n-grams are summed over the corpus before the precisions
    are taken; the brevity penalty compares the corpus candidate length with the sum of each
    segment's shortest reference. The counts for order n do not depend on the maximum order, so one
    pass gives every BLEU-n.
    """
    matches = [0] * max_order
    possible = [0] * max_order
    reference_length = 0
    prediction_length = 0
    for prediction, segment_references in zip(predictions, references):
        reference_length += min(len(reference) for reference in segment_references)
        prediction_length += len(prediction)
        reference_counts: Counter = Counter()
        for reference in segment_references:
            reference_counts |= _ngram_counts(reference, max_order)
        overlap = _ngram_counts(prediction, max_order) & reference_counts
        for ngram, count in overlap.items():
            matches[len(ngram) - 1] += count
        for order in range(1, max_order + 1):
            possible[order - 1] += max(len(prediction) - order + 1, 0)

    precisions = [m / p if p > 0 else 0.0 for m, p in zip(matches, possible)]
    ratio = prediction_length / reference_length if reference_length else 0.0
    brevity_penalty = 1.0 if ratio > 1.0 else (math.exp(1.0 - 1.0 / ratio) if ratio > 0 else 0.0)
    scores = []
    for order in range(1, max_order + 1):
        if min(precisions[:order]) <= 0:
            scores.append(0.0)
            continue
        geometric_mean = math.exp(sum(math.log(p) for p in precisions[:order]) / order)
        scores.append(geometric_mean * brevity_penalty)
    return scores


# ----------------------------------------------------------------------------- WordNet + METEOR


def build_wordnet_data(cache_dir: Path | None = None, source: Path = DEBIAN_WORDNET_DIR) -> Path:
    """An nltk_data folder holding WordNet 3.0 copied from Debian's files; returns the folder."""
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    nltk_data = (cache_dir or default_cache_dir()) / "nltk_data"
    corpus = nltk_data / "corpora" / "wordnet"
    lexnames = corpus / "lexnames"
    if lexnames.exists():
        return nltk_data
    missing = [
        name for name in WordNetCorpusReader._FILES if name != "lexnames" and not (source / name).exists()
    ]
    if missing:
        raise FileNotFoundError(
            f"WordNet files {missing} not in {source}: install Debian's wordnet-base and wordnet-sense-index"
        )
    corpus.mkdir(parents=True, exist_ok=True)
    for name in WordNetCorpusReader._FILES:
        if name != "lexnames":
            shutil.copyfile(source / name, corpus / name)
    lines = [
        f"{number:02d}\t{name}\t{_LEXNAME_CATEGORY[name.split('.')[0]]}\n"
        for number, name in enumerate(WORDNET_LEXNAMES)
    ]
    # Written last and atomically: its presence marks a complete folder for the next process.
    partial = corpus / f"lexnames.{os.getpid()}.tmp"
    partial.write_text("".join(lines))
    partial.replace(lexnames)
    return nltk_data


def _cached_wordnet_class() -> type:
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class CachedWordNet(WordNetCorpusReader):
        """WordNet 3.0 with `synsets(word)` memoized: METEOR looks up every hypothesis word of every pair."""

        def __init__(self, root: str) -> None:
            self._synsets_by_word: dict[str, list] = {}
            super().__init__(root, None)

        def map_wn(self, version: str = "wordnet") -> None:
            # Maps another WordNet version onto this one for Open Multilingual WordNet data, which is
            # not loaded here; skipping it saves ~4 s of reading index.sense twice per process.
            return None

        def synsets(self, lemma, pos=None, lang="eng", check_exceptions=True):
            if pos is not None or lang != "eng" or not check_exceptions:
                return super().synsets(lemma, pos, lang, check_exceptions)
            if lemma not in self._synsets_by_word:
                self._synsets_by_word[lemma] = super().synsets(lemma)
            return self._synsets_by_word[lemma]

    return CachedWordNet


def wordnet_reader(cache_dir: Path | None = None) -> object:
    """nltk's WordNet reader over the Debian files (built on first use, then one reader per process)."""
    return _wordnet_reader(cache_dir or default_cache_dir())


@lru_cache(maxsize=1)
def _wordnet_reader(cache_dir: Path) -> object:
    import warnings

    import nltk

    nltk_data = build_wordnet_data(cache_dir)
    # nltk >= 3.9 opens corpus files only below a folder on nltk.data.path.
    if str(nltk_data) not in nltk.data.path:
        nltk.data.path.append(str(nltk_data))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The multilingual functions are not available")
        return _cached_wordnet_class()(str(nltk_data / "corpora" / "wordnet"))


@lru_cache(maxsize=1)
def _stemmer() -> object:
    from nltk.stem.porter import PorterStemmer

    class CachedPorterStemmer(PorterStemmer):
        """Porter stems memoized per word (METEOR stems each unmatched word of each pair)."""

        def __init__(self) -> None:
            super().__init__()
            self._stems: dict[tuple[str, bool], str] = {}

        def stem(self, word: str, to_lowercase: bool = True) -> str:
            key = (word, to_lowercase)
            if key not in self._stems:
                self._stems[key] = super().stem(word, to_lowercase)
            return self._stems[key]

    return CachedPorterStemmer()


def _per_caption_chunk(args: tuple[list[str], list[list[str]], Path | None]) -> list[tuple[float, float]]:
    """(METEOR, ROUGE-L F) of each caption, each the best over its references."""
    from nltk.translate.meteor_score import single_meteor_score
    from rouge_score.rouge_scorer import RougeScorer

    predictions, references, cache_dir = args
    wordnet = wordnet_reader(cache_dir)
    stemmer = _stemmer()
    rouge = RougeScorer(["rougeL"], use_stemmer=False)
    scores = []
    for prediction, segment_references in zip(predictions, references):
        hypothesis = word_tokenize(prediction)
        meteor = max(
            single_meteor_score(
                word_tokenize(reference),
                hypothesis,
                stemmer=stemmer,
                wordnet=wordnet,
                alpha=0.9,
                beta=3.0,
                gamma=0.5,
            )  # fmt: skip
            for reference in segment_references
        )
        rouge_l = rouge.score_multi(segment_references, prediction)["rougeL"].fmeasure
        scores.append((meteor, rouge_l))
    return scores


def per_caption_scores(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    workers: int = 1,
    cache_dir: Path | None = None,
) -> list[tuple[float, float]]:
    """(METEOR, ROUGE-L) per caption; `workers` > 1 splits the corpus over forked processes."""
    predictions, references = list(predictions), [list(r) for r in references]
    if workers <= 1 or len(predictions) < 200:
        return _per_caption_chunk((predictions, references, cache_dir))
    # Load WordNet once here; forked workers inherit it instead of each reading it again (~2 s).
    wordnet_reader(cache_dir)
    bounds = [round(i * len(predictions) / workers) for i in range(workers + 1)]
    chunks = [(predictions[a:b], references[a:b], cache_dir) for a, b in zip(bounds, bounds[1:])]
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_own_wordnet_files, initargs=(cache_dir,)
    ) as pool:
        return [score for chunk in pool.map(_per_caption_chunk, chunks) for score in chunk]


def _own_wordnet_files(cache_dir: Path | None) -> None:
    # A forked worker inherits the parent's open WordNet data files; their file offsets are shared
    # between processes, so concurrent seek + read would interleave. Each worker reopens its own.
    wordnet_reader(cache_dir)._data_file_map = {}


# ----------------------------------------------------------------------------- all three


def check_inputs(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    if not predictions:
        raise ValueError("no captions to score")
    for i, segment_references in enumerate(references):
        if isinstance(segment_references, str) or not segment_references:
            raise ValueError(f"references[{i}] must be a non-empty list of captions")


def lpmc_scores(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    workers: int = 1,
    cache_dir: Path | None = None,
) -> LpmcScores:
    """BLEU-1..4, METEOR and ROUGE-L exactly as LP-MusicCaps computed them (corpus BLEU, mean METEOR/ROUGE-L)."""
    check_inputs(predictions, references)
    tokenized_predictions = [tokenize_13a(p) for p in predictions]
    tokenized_references = [[tokenize_13a(r) for r in refs] for refs in references]
    bleu = corpus_bleu(tokenized_predictions, tokenized_references, max_order=4)
    per_caption = per_caption_scores(predictions, references, workers=workers, cache_dir=cache_dir)
    meteor = sum(m for m, _ in per_caption) / len(per_caption)
    rouge_l = sum(r for _, r in per_caption) / len(per_caption)
    return LpmcScores(*bleu, meteor=meteor, rouge_l=rouge_l)
