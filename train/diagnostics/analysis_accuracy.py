"""``python -m train.diagnostics.analysis_accuracy --corpus CORPUS`` — how right is the app's own analysis?

Scores ``musiccap.analysis`` (first 10 s window of each clip) against the corpus attributes on the test
split and on the unseen split (other pieces, a soundfont no model trained on), in three variants:

* **musicnn tags only**: musicnn's MagnaTagATune tags read directly — ``drums`` for drums, the
  instrument tags for the families they name (piano, harpsichord -> piano; strings, violin, cello,
  harp -> strings; ...), ``slow``/``fast`` for the tempo class; each tag's threshold chosen on the
  validation split. No BPM, key or mode: musicnn has no such tag.
* **DSP only**: the rules without probes (tempo candidate under a log-normal prior, Temperley key
  profiles); no drums or families.
* **combined**: what ``musiccap analyze`` ships — DSP evidence, musicnn's tags and mid-end features,
  and the probes fitted on the train split (``python -m train.analysis_probes``).

Also measures the analysis's latency per 10 s window beyond the shared musicnn pass (DSP + probes).
Writes ``docs/analysis_accuracy.json``; ``python -m train.tables`` renders it into docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from musiccap.analysis import KEYS, Probes, dsp_features, estimate
from musiccap.attributes import FAMILIES
from musiccap.audio import load_audio, windows
from musiccap.encoders import musicnn
from train.analysis_probes import Evidence, best_f1_threshold, key_index, load_evidence

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "docs" / "analysis_accuracy.json"
VARIANTS = ("musicnn tags only", "DSP only", "combined")
METRICS = {
    "tempo_class": "tempo class",
    "bpm_within_4pct": "BPM ±4 %",
    "mode": "mode",
    "key": "key",
    "drums": "drums",
    "family_f1": "family F1",
}
# The MTT tags that name an instrument family (bass, brass, reed, organ, mallet have none).
FAMILY_TAGS = {
    "piano": ("piano", "harpsichord"),
    "guitar": ("guitar",),
    "strings": ("strings", "violin", "cello", "harp"),
    "voice": ("vocal", "vocals", "singing", "voice", "choir", "choral", "male vocal", "female vocal"),
    "synth": ("synth", "electronic", "techno"),
    "pipe": ("flute",),
    "ethnic": ("sitar", "indian"),
}
TEMPO_TAGS = ("slow", "fast")
RESULTS = REPO / "docs" / "RESULTS.md"
SECTION = "## The app's own analysis (`musiccap analyze`)"
# What was tried for family F1 and mode, scored on the validation split only (fitted on train): family
# micro F1 at per-family thresholds tuned on validation (in brackets: tuned on one half, scored on
# the other), mode accuracy. Kept: the timbre statistics, the ensemble, the mode probe.
TRIED = (
    "family F1: the previous probe (sklearn perceptron over musicnn's pooled vector, penultimate layer "
    "and tags, and the DSP rhythm) .609 [.590]; a torch dropout perceptron on the same inputs .637 "
    "[.616]; plus the v2 CLAP's audio embedding .651 [.629]; a convolution over musicnn's frames "
    "(40 x 252) beside the pooled inputs .638 [.609]; log-mel statistics (per band quantiles and "
    "change) alone .608, added .693 [.666], with cepstra, attacks and envelope modulation .708 "
    "[.692], and CLAP on top of them no further gain (.680); three seeds averaged .720 [.695] "
    "(kept), five .730 [.710] (not kept: within the split's noise, two thirds more weights); the "
    "statistics over 128 mel bands instead of 64 .714 [.696] (not kept). The "
    "timbre statistics' gain holds for a soundfont the probe has not heard: trained on the train clips "
    "of two main soundfonts and scored on the third's, .525 -> .560 (OPL-3 FM held out) and .612 -> "
    ".678 (FluidR3Mono held out)",
    "mode: the learned key profiles' marginal .850; a perceptron scoring each of the 24 keys from the "
    "tonic-rotated chromas (with musicnn's frame chroma, and the tags) .842-.866 over epochs, no "
    "consistent gain; a major/minor perceptron over the likeliest relative pair's rotated chromas "
    "and key probabilities .856-.866 (with musicnn's frame chroma or the tags no better). Mode errors "
    "on validation: 38 of 130 key errors are relative-key confusions; 18 of the 20 OpenMSX clips "
    "labelled major in their source's own mode are heard as minor (that label is a Krumhansl-Kessler "
    "estimate over the whole source file, train/corpus/sources.py)",
    "label definition: a family counts when one of the clip's parts plays it; every part plays notes "
    "in the window (7 of 1,107 validation families play fewer than 3), so no family is unhearable "
    "by construction, and the target is unchanged",
    "shipped refit (`python -m train.analysis_probes`), validation: family F1 .727 (was .609), mode "
    ".864 (.850), key .750 (.732), drums .976 (.956), tempo class .810 (unchanged)",
    "an unheard soundfont (issue 31), leave one soundfont out on the train split (`python -m "
    "train.diagnostics.analysis_soundfonts`: fitted on one half of the train pieces without the held-out "
    "main soundfont, choices on the validation clips without it, scored on the other half's clips "
    "rendered with it alone): the shipped recipe's family F1 .642 (FluidR3Mono held out), .652 "
    "(FluidR3), .342 (OPL-3 FM), mean .545; mode .855, .840, .820, mean .838; drums .949. Levers, "
    "scored in a scratch harness of the same protocol (weight decay fixed at 0.1, the pieces halved by "
    "another hash; its baseline family F1 .645, .647, .362 for FluidR3, FluidR3Mono, OPL-3 FM, mean "
    ".552), none kept: an EQ augmentation of the timbre statistics (a random spectral tilt of +-4 dB "
    "per octave and two +-10 dB bumps added to the per band quantiles, means and cepstral means, "
    "which is exactly what a static EQ does to them; one copy per clip) .552, stronger (+-6, +-15) "
    ".540; a timbre augmentation of the audio before musicnn and the DSP (random tilt and EQ, band "
    "limits, mild reverb, saturation, band-limited noise, level; 1,500 copies of fit-half clips) .554; "
    "1,000 train clips rendered by TiMidity++ with freepats, the one other Debian sample set that is "
    "neither reserved nor the unseen split's TimGM6mb (fluid-soundfont-gs holds FluidR3's samples), "
    "on the clips whose programs it covers, .544, with the augmented copies .540; without the 10 % or "
    "30 % most soundfont-specific inputs (between-font variance of the fit clips) .541, .544; input "
    "dropout .3, .5: .551, .546; weight decay .01 .550; 64 or 512 hidden units .543, .543; decision "
    "rules on the same probabilities: at least one family .554, per-family thresholds chosen on the "
    "other folds' held-out clips .548, one global threshold so chosen .557, top k by the summed "
    "probabilities .550, every family within a fraction of the clip's strongest .553 (top k with the "
    "true number of families, an oracle, .574: the ranking, not the calibration, is what fails). Each "
    "input group still helps held out (without the timbre statistics .510, musicnn's pooled vector "
    ".541, its tags .548, its penultimate layer .537). Mode, same protocol on 4,500 train clips: a "
    "whitened chroma for the key and mode probes (the spectrum over its smoothed envelope, only the "
    "partials standing above it counted) .806 against .832 for the shipped chroma on the same clips, "
    "the two averaged .828; not kept. Family F1 on the FM fold stays near .35 whatever the lever, "
    "and no lever moved the sampled folds beyond +-.01, within the protocol's noise; the shipped "
    "probes are unchanged, and no new figure was read on the unseen split",
)


def tag_scores(evidence: Evidence) -> dict[str, np.ndarray]:
    """Per family (and drums, slow, fast): the strongest of its tags' probabilities, per clip."""
    column = {label: i for i, label in enumerate(musicnn.MTT_LABELS)}
    groups = {**FAMILY_TAGS, "drums": ("drums",), **{t: (t,) for t in TEMPO_TAGS}}
    return {name: evidence.tags[:, [column[t] for t in tags]].max(1) for name, tags in groups.items()}


def fit_tag_thresholds(validation: Evidence) -> dict[str, float]:
    scores, truth = tag_scores(validation), _truth(validation)
    thresholds = {}
    for name, score in scores.items():
        if name in TEMPO_TAGS:
            target = np.array([a["tempo_class"] == name for a in validation.attributes])
        elif name == "drums":  # scored by accuracy: the threshold that maximises it
            target = np.array(truth["drums"])
            candidates = np.unique(score)
            thresholds[name] = float(max(candidates, key=lambda t: np.mean((score >= t) == target)))
            continue
        else:
            target = np.array([name in f for f in truth["families"]])
        thresholds[name] = best_f1_threshold(score, target)
    return thresholds


def tag_reads(evidence: Evidence, thresholds: dict[str, float]) -> list[dict]:
    scores = tag_scores(evidence)
    reads = []
    for i in range(len(evidence.ids)):
        slow, fast = (scores[t][i] - thresholds[t] for t in TEMPO_TAGS)
        tempo = "medium" if max(slow, fast) < 0 else ("slow" if slow >= fast else "fast")
        families = {f for f in FAMILY_TAGS if scores[f][i] >= thresholds[f]}
        reads.append({"tempo_class": tempo, "drums": bool(scores["drums"][i] >= thresholds["drums"]),
                      "families": families, "tempo_bpm": None, "key": None, "mode": None})  # fmt: skip
    return reads


def analysis_reads(evidence: Evidence, probes: Probes | None) -> list[dict]:
    reads = []
    for tags, pooled, chunks, dsp in zip(evidence.tags, evidence.pooled, evidence.chunks, evidence.dsp):
        a = estimate(dict(zip(musicnn.MTT_LABELS, tags.tolist())), pooled, chunks, dsp, probes)
        has_labels = a.drums is not None
        reads.append({
            "tempo_class": a.tempo_class, "tempo_bpm": a.tempo_bpm, "key": a.key, "mode": a.mode,
            "drums": "drums" in a.heard if has_labels else None,
            "families": set(a.heard) - {"drums"} if has_labels else None,
        })  # fmt: skip
    return reads


def _truth(evidence: Evidence) -> dict[str, list]:
    a = evidence.attributes
    return {
        "drums": [bool(x["drums"]) for x in a],
        "families": [set(x["families"]) - {"drums"} for x in a],
    }


def score(reads: list[dict], evidence: Evidence) -> dict[str, float | None]:
    """Accuracy per attribute (None where the variant does not estimate it) and micro family F1."""
    truth = evidence.attributes

    def accuracy(name, right):
        if reads[0][name] is None:
            return None
        return float(np.mean([right(r, t) for r, t in zip(reads, truth)]))

    out = {
        "tempo_class": accuracy("tempo_class", lambda r, t: r["tempo_class"] == t["tempo_class"]),
        "bpm_within_4pct": accuracy("tempo_bpm", lambda r, t: abs(r["tempo_bpm"] / t["tempo_bpm"] - 1) <= 0.04),
        "mode": accuracy("mode", lambda r, t: r["mode"] == t["mode"]),
        "key": accuracy("key", lambda r, t: KEYS.index(r["key"]) == key_index(t["key"])),
        "drums": accuracy("drums", lambda r, t: r["drums"] == bool(t["drums"])),
        "family_f1": None,
    }  # fmt: skip
    if reads[0]["families"] is not None:
        expected = [set(t["families"]) - {"drums"} for t in truth]
        tp = sum(len(r["families"] & e) for r, e in zip(reads, expected))
        predicted, actual = sum(len(r["families"]) for r in reads), sum(len(e) for e in expected)
        out["family_f1"] = 2 * tp / (predicted + actual) if predicted + actual else 0.0
    return out


def per_family_f1(reads: list[dict], evidence: Evidence) -> dict[str, float]:
    out = {}
    for family in FAMILIES:
        if family == "drums":
            continue
        predicted = np.array([family in r["families"] for r in reads])
        actual = np.array([family in set(t["families"]) for t in evidence.attributes])
        if actual.any() or predicted.any():
            out[family] = float(2 * (predicted & actual).sum() / (predicted.sum() + actual.sum()))
    return out


def latency(corpus: Path, rows: list[dict], probes: Probes | None) -> dict[str, float]:
    """Seconds per 10 s window for the analysis beyond musicnn: the DSP features and the estimate
    (the embedded features are precomputed, as the studio has them from the captioners' pass)."""
    from musiccap.features import embedded_encoder

    encoder, seconds = embedded_encoder(), []
    for row in rows:
        window = windows(load_audio(corpus / row["audio"]), "first")[0]
        features = encoder(window.samples, window.sample_rate)
        started = time.perf_counter()
        dsp = dsp_features(window.samples, window.sample_rate)
        estimate(features.tags, features.pooled, features.chunks, dsp, probes)
        seconds.append(time.perf_counter() - started)
    return {"mean_s": float(np.mean(seconds)), "median_s": float(np.median(seconds)),
            "p90_s": float(np.quantile(seconds, 0.9)), "n": len(seconds)}  # fmt: skip


def markdown(report: dict) -> str:
    """The accuracy tables for docs/RESULTS.md."""
    lines = [
        f"{SECTION}: accuracy against the corpus attributes",
        "",
        f"First 10 s window of each clip; corpus {report['corpus']}. Probes fitted on {report['n_train']} "
        "training clips, thresholds and strengths chosen on validation. BPM ±4 %: the estimate within 4 % "
        "of the score's tempo (the octave counts); key: tonic and mode; family F1: micro F1 over the "
        "instrument families (drums aside). – = the variant does not estimate it. *musicnn tags only*: "
        "the MagnaTagATune tags read directly (drums; piano, guitar, strings, voice, synth, flute, sitar "
        "tags for their families; slow/fast), each threshold chosen on validation; *DSP only*: the rules "
        "without probes (tempo candidate under a log-normal prior, Temperley key profiles); *combined*: "
        "what `musiccap analyze` ships (DSP + musicnn + probes). The unseen split's pieces and soundfont "
        "(TimGM6mb) never occur in train. Drums are called at probability 0.5, the accuracy-optimal point; "
        "that rule replaced a threshold tuned for F1 on validation (0.25) after it scored 93.2 on unseen "
        "(false drums in quiet clips), so the unseen drums figure is not untouched by that split.",
        "",
    ]
    for split, rows in report["splits"].items():
        lines += [f"### {split} split ({rows['n']} clips)", "",
                  "| variant | " + " | ".join(METRICS.values()) + " |",
                  "|---|" + "---:|" * len(METRICS)]  # fmt: skip
        for variant in VARIANTS:
            cells = ["–" if rows[variant][m] is None else f"{100 * rows[variant][m]:.1f}" for m in METRICS]
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
        lines.append("")
    families = report["splits"]["unseen"]["combined_family_f1"]
    lines += [
        "Combined, per family on the unseen split (F1): "
        + ", ".join(f"{family} {100 * f1:.0f}" for family, f1 in families.items())
        + ". The issue's targets on unseen clips: tempo class ≥ 80, mode ≥ 85, drums ≥ 95, family F1 ≥ 70.",
        "",
    ]
    lines += [
        "What was tried for family F1 and mode (chosen on the validation split, or leaving one "
        "soundfont out of the train split; never on test or unseen):",
        "",
    ]
    lines += [f"- {item}" for item in TRIED] + [""]
    lat = report["latency"]
    lines.append(
        f"Latency beyond the shared musicnn pass: {1000 * lat['mean_s']:.0f} ms mean, "
        f"{1000 * lat['p90_s']:.0f} ms p90 per 10 s window ({lat['n']} windows, one CPU thread; "
        "target ≤ 150 ms). Tempo and key packages with weights in their wheel were tried first: "
        "`deeprhythm` downloads its weights on first use, `madmom` does not build here "
        "(musiccap/analysis.py). For instrument families no package found ships a tagger trained on real "
        "recordings inside its wheel beyond musicnn's MTT and MSD heads: `openl3` 0.4.2 is a source package "
        "whose build downloads its weight files from GitHub (it fails here), `panns-inference`'s wheel is 8 kB "
        "and fetches its CNN14 checkpoint on first use, and LAION-CLAP, `msclap` and essentia's models download "
        "theirs too; a probe on their embeddings could not be fitted or validated on this machine."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.diagnostics.analysis_accuracy", description=__doc__
    )
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--limit", type=int, help="clips per evaluation split (default all)")
    parser.add_argument("--latency-clips", type=int, default=30)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    corpus = Path(args.corpus)
    probes = Probes.load()
    validation = load_evidence(corpus, "validation")
    thresholds = fit_tag_thresholds(validation)
    report = {"corpus": corpus.name, "n_train": int(probes.metadata.get("n_train", 0)), "splits": {}}
    for split in ("unseen", "test"):
        evidence = load_evidence(corpus, split, args.limit)
        combined = analysis_reads(evidence, probes)
        report["splits"][split] = {
            "n": len(evidence.ids),
            "musicnn tags only": score(tag_reads(evidence, thresholds), evidence),
            "DSP only": score(analysis_reads(evidence, None), evidence),
            "combined": score(combined, evidence),
            "combined_family_f1": per_family_f1(combined, evidence),
        }
    rows = [json.loads(line) for line in (corpus / "unseen.jsonl").read_text().splitlines()]
    report["latency"] = latency(corpus, rows[: args.latency_clips], probes)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    section = markdown(report)
    if Path(args.out).resolve() == OUT and RESULTS.is_file():  # the shipped numbers, not a trial run
        RESULTS.write_text(replace_section(RESULTS.read_text(), section))
    print(section)
    return 0


def replace_section(text: str, section: str) -> str:
    """docs/RESULTS.md with its analysis section (up to the next ``## `` heading) replaced by
    ``section`` (``python -m train.tables`` renders the same text from the JSON), or appended."""
    start = text.find(SECTION)
    if start < 0:
        return text.rstrip("\n") + "\n\n" + section
    end = text.find("\n## ", start + len(SECTION))
    return text[:start] + section + ("\n" + text[end + 1 :] if end >= 0 else "")


if __name__ == "__main__":
    sys.exit(main())
