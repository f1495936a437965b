"""The coco-caption metrics: BLEU-1..4, METEOR 1.5, ROUGE-L and CIDEr-D from `pycocoevalcap`.

These are the numbers captioning papers (MusCaps, RGMC, BLAP, ALCAP, ...) report. Captions and
references are lower-cased and tokenized by the Stanford PTB tokenizer jar that `pycocoevalcap`
ships, with punctuation tokens removed, exactly as `pycocoevalcap.tokenizer.PTBTokenizer` does;
it is run here on stdin instead of a temporary file written into site-packages. METEOR is the
METEOR 1.5 jar (English, `-norm`, with its paraphrase table). `pycocoevalcap`'s "CIDEr" is CIDEr-D
(clipped counts, Gaussian length penalty, sigma 6, x10) with document frequencies from the
references of the scored set. SPICE needs Stanford CoreNLP models that no registry carries, so it
is not computed (and neither is SPIDEr, the mean of SPICE and CIDEr-D).

Java 17 must be on PATH.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

# What pycocoevalcap's PTBTokenizer drops after tokenizing.
PTB_PUNCTUATION = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)


@dataclass
class CocoScores:
    bleu1: float
    bleu2: float
    bleu3: float
    bleu4: float
    meteor: float | None
    rouge_l: float
    cider_d: float

    def to_dict(self) -> dict[str, float]:
        return {name: value for name, value in asdict(self).items() if value is not None}


def _pycocoevalcap_dir() -> Path:
    import pycocoevalcap.bleu.bleu

    return Path(pycocoevalcap.bleu.bleu.__file__).resolve().parents[1]


def java_available() -> bool:
    return shutil.which("java") is not None


def ptb_tokenize(texts: Sequence[str]) -> list[str]:
    """Lower-cased PTB tokens joined by spaces, punctuation removed; one output per input text."""
    jar = _pycocoevalcap_dir() / "tokenizer" / "stanford-corenlp-3.4.1.jar"
    command = [
        "java",
        "-cp",
        str(jar),
        "edu.stanford.nlp.process.PTBTokenizer",
        "-preserveLines",
        "-lowerCase",
    ]
    # One caption per line: newlines inside a caption would shift every later line.
    lines = "\n".join(" ".join(text.split()) for text in texts) + "\n"
    result = subprocess.run(command, input=lines.encode(), capture_output=True, check=True)
    tokenized = result.stdout.decode().split("\n")[: len(texts)]
    if len(tokenized) != len(texts):
        raise RuntimeError(f"PTB tokenizer returned {len(tokenized)} lines for {len(texts)} captions")
    return [
        " ".join(w for w in line.rstrip().split(" ") if w and w not in PTB_PUNCTUATION) for line in tokenized
    ]


def coco_scores(
    predictions: Sequence[str], references: Sequence[Sequence[str]], *, with_meteor: bool = True
) -> CocoScores:
    """Corpus BLEU-1..4, mean METEOR 1.5, mean ROUGE-L and CIDEr-D; any number of references per caption.

    `with_meteor=False` skips the METEOR jar (its JVM loads a 60 MB paraphrase table) and leaves it None.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge

    if len(predictions) != len(references) or not predictions:
        raise ValueError(f"{len(predictions)} predictions for {len(references)} reference lists")
    # Start the METEOR JVM first: loading its paraphrase table overlaps with the tokenizer's JVM.
    meteor = Meteor() if with_meteor else None
    try:
        flat_references = [reference for refs in references for reference in refs]
        tokens = ptb_tokenize(list(predictions) + flat_references)
        res = {i: [tokens[i]] for i in range(len(predictions))}
        gts, cursor = {}, len(predictions)
        for i, refs in enumerate(references):
            gts[i] = tokens[cursor : cursor + len(refs)]
            cursor += len(refs)
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        meteor_score = float(meteor.compute_score(gts, res)[0]) if meteor else None
    finally:
        if meteor:
            # pycocoevalcap stops its JVM only in __del__; stop it now rather than at garbage collection.
            meteor.meteor_p.stdin.close()
            meteor.meteor_p.kill()
            meteor.meteor_p.wait()
    rouge_score, _ = Rouge().compute_score(gts, res)
    cider_score, _ = Cider().compute_score(gts, res)
    return CocoScores(*[float(b) for b in bleu], meteor_score, float(rouge_score), float(cider_score))
