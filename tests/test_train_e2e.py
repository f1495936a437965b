"""The training package end to end at tiny scale: corpus → features → CLAP → baselines → a captioner.

Builds a real (tiny) corpus with FluidSynth, trains the embedded CLAP and MusCaps for a few
steps through ``python -m train``, evaluates them, reloads them from their folders and captions
a file through the CLI — the same commands that produce the shipped checkpoints.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="FluidSynth is not installed")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    corpus = root / "corpus"
    from train.corpus.__main__ import main as corpus_main

    assert corpus_main(["--out", str(corpus), "--size", "tiny", "--seed", "0"]) in (0, None)
    return root, corpus


def test_tiny_pipeline_trains_evaluates_reloads_and_captions(workspace, monkeypatch):
    root, corpus = workspace
    monkeypatch.setenv("MUSICCAP_CACHE", str(root / "cache"))
    ckpt = root / "checkpoints"
    from train.__main__ import main as train_main
    from train.baselines import main as baselines_main
    from train.evaluate import main as evaluate_main

    tiny_clap = [
        "model.d_audio=32",
        "model.n_layers=1",
        "model.ff_dim=64",
        "model.embed_dim=32",
        "model.head_hidden=0",
        "train.epochs=3",
        "train.batch_size=8",
        "train.warmup_steps=0",
    ]
    assert (
        train_main(
            [
                "clap",
                "--config",
                "train/configs/clap.yaml",
                "--corpus",
                str(corpus),
                "--out",
                str(ckpt / "clap"),
                *tiny_clap,
            ]
        )
        == 0
    )
    clap_results = json.loads((ckpt / "clap" / "results.json").read_text())
    assert 0 <= clap_results["metrics"]["t2a_r1"] <= 1 and "baseline_random" in clap_results

    assert baselines_main(["--corpus", str(corpus), "--out", str(ckpt / "random")]) == 0
    assert evaluate_main([str(ckpt / "random"), "--corpus", str(corpus), "--clap", str(ckpt / "clap")]) == 0

    tiny_muscaps = [
        "model.hidden_dim=32",
        "model.attention_dim=32",
        "model.word_embedding_dim=32",
        "model.min_word_count=1",
        "train.epochs=6",
        "train.batch_size=4",
        "train.lr=3e-3",
        "decoding.num_beams=2",
        "decoding.max_new_tokens=20",
    ]
    assert (
        train_main(
            [
                "muscaps",
                "--config",
                "train/configs/muscaps.yaml",
                "--corpus",
                str(corpus),
                "--out",
                str(ckpt / "muscaps"),
                "--clap",
                str(ckpt / "clap"),
                *tiny_muscaps,
            ]
        )
        == 0
    )
    log = [json.loads(line) for line in (ckpt / "muscaps" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["train"]["loss"] < log[0]["train"]["loss"]
    training = json.loads((ckpt / "muscaps" / "training.json").read_text())
    assert training["git_commit"] and training["n_train"] > 0
    results = json.loads((ckpt / "muscaps" / "results.json").read_text())
    for key in ("bleu1", "bleu4", "meteor", "rouge_l", "cider_d", "clap_at", "vocab", "attr_tempo_acc"):
        assert key in results["metrics"], key
    # the listening table: floor, probe ceiling and caption per attribute, and audio sensitivity
    listening = results["listening"]
    assert set(listening["attributes"]) == {"instrument_f1", "tempo", "mode", "drums", "mood"}
    for scores in listening["attributes"].values():
        assert set(scores) == {"floor", "ceiling", "caption"} and all(0 <= v <= 1 for v in scores.values())
    assert "chunks" in listening["ceiling_input"] and listening["audio_sensitivity"]["n"] == results["n"]
    assert listening["attributes"]["tempo"]["caption"] == results["metrics"]["attr_tempo_acc"]

    # python -m train.evaluate regenerates the same results.json from the checkpoint alone
    before = results["metrics"]
    assert evaluate_main([str(ckpt / "muscaps"), "--corpus", str(corpus), "--clap", str(ckpt / "clap")]) == 0
    after = json.loads((ckpt / "muscaps" / "results.json").read_text())["metrics"]
    assert after == pytest.approx(before)

    clip = next((corpus / "audio").rglob("*.flac"))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "musiccap",
            "caption",
            str(clip),
            "--model",
            "random,muscaps",
            "--checkpoints",
            str(ckpt),
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env={**__import__("os").environ, "MUSICCAP_CACHE": str(root / "cache")},
    )
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["model"] for r in records] == ["random", "muscaps"]
    muscaps = records[1]
    assert muscaps["text"] and muscaps["attention_shape"][0] == len(muscaps["tokens"])
    assert muscaps["clap_similarity"] is not None


def test_scratch_cnn_muscaps_trains_on_log_mels_and_captions_a_file(workspace, monkeypatch):
    """The "without pre-training" ablation: musicnn from a random start, fed log-mel patches of the corpus audio."""
    root, corpus = workspace
    monkeypatch.setenv("MUSICCAP_CACHE", str(root / "cache"))
    from musiccap.audio import load_audio, windows
    from musiccap.models.base import Clip, load_captioner
    from train.__main__ import main as train_main

    out = root / "checkpoints" / "muscaps_scratch"
    tiny = [
        "model.hidden_dim=16",
        "model.attention_dim=16",
        "model.word_embedding_dim=16",
        "model.min_word_count=1",
    ]
    steps = ["train.epochs=2", "train.batch_size=4", "decoding.num_beams=2", "decoding.max_new_tokens=8"]
    args = [
        "muscaps",
        "--config",
        "train/configs/muscaps_scratch.yaml",
        "--corpus",
        str(corpus),
        "--out",
        str(out),
    ]
    assert train_main([*args, "--no-eval", *tiny, *steps]) == 0
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(entry["train"]["loss"] > 0 for entry in log)

    # cut off after its training (in the evaluation), the resumed command does what is left and trains nothing
    weights = (out / "model.safetensors").read_bytes()
    (out / "README.md").unlink()

    def no_training(*_args, **_kwargs):
        raise AssertionError("a finished training was started again")

    monkeypatch.setattr("train.__main__.fit", no_training)
    assert train_main([*args, "--no-eval", "--resume", *tiny, *steps]) == 0
    assert (out / "README.md").is_file() and (out / "model.safetensors").read_bytes() == weights
    with pytest.raises(SystemExit, match="another configuration"):
        train_main([*args, "--no-eval", "--resume", *tiny, "train.epochs=3", *steps[1:]])
    captioner = load_captioner(out)
    assert captioner.config.audio_encoder == "scratch"
    clip = next((corpus / "audio").rglob("*.flac"))
    result = captioner.caption_batch([Clip(windows(load_audio(clip), "first")[0])])[0]
    assert result.text.strip()


def test_scratch_cnn_row_trains_from_a_pack_of_log_mels_as_from_the_corpus(workspace, monkeypatch):
    """The accelerator's inputs (train.muscaps_scratch): the pack's 8-bit log-mels are the corpus' own within a
    quantisation step, its pretrained chunks are the feature cache's, and both rows train from it."""
    import numpy as np

    root, corpus = workspace
    monkeypatch.setenv("MUSICCAP_CACHE", str(root / "cache"))
    from musiccap.models.base import load_captioner
    from musiccap.models.muscaps import audio_file_mel_patches
    from train.muscaps_scratch import main as row_main
    from train.muscaps_scratch import read_pack

    pack = root / "pack.npz"
    assert (
        row_main(
            ["pack", "--corpus", str(corpus), "--out", str(pack), "--clips", "6", "--validation-clips", "2"]
        )
        == 0
    )
    meta, items = read_pack(str(pack))
    assert [len(items["train"]), len(items["validation"])] == [6, 2]
    low, high = meta["log_mel_range"]
    for item, row in zip(items["train"], meta["manifest"]["train"], strict=True):
        assert item.id == row["id"] and item.captions == tuple(row["captions"])
        original = audio_file_mel_patches(corpus / row["audio"])
        assert item.mel_patches.shape == original.shape
        assert np.abs(item.mel_patches - original).max() <= (high - low) / 255 / 2 + 1e-5
        assert item.features.chunks.shape[0] == original.shape[0]
    tiny = [
        "model.hidden_dim=16",
        "model.attention_dim=16",
        "model.word_embedding_dim=16",
        "train.max_steps=2",
    ]
    for row in ("scratch", "pretrained"):
        out = root / f"row_{row}"
        assert row_main(["train", "--pack", str(pack), "--row", row, "--out", str(out), "--", *tiny]) == 0
        training = json.loads((out / "training.json").read_text())
        assert (
            training["n_train"] == 6
            and training["device"] == "cpu"
            and training["stopped_by"] == "max_steps=2"
        )
        captioner = load_captioner(out)
        assert captioner.config.audio_encoder == ("scratch" if row == "scratch" else "pretrained")
    # the listening probe reads the trained CNN on the corpus' clips, computing their log-mels one at a time
    from train.data import load_items
    from train.listening import scratch_cnn_input

    clips = load_items(corpus, "train", limit=3)
    pooled = scratch_cnn_input(load_captioner(root / "row_scratch")).features(clips)
    assert pooled.shape[0] == 3 and np.isfinite(pooled).all()
    assert all(item.mel_patches is None for item in clips)  # not kept on the items: 10,000 clips would be GBs


def test_feature_workers_each_cache_their_share_and_together_every_clip(workspace, tmp_path):
    """``train.features --workers 2``: two processes whose shares (by file name) are disjoint and cover the
    corpus, so the cache ends whole with each clip computed once."""
    from musiccap.features import embedded_encoder
    from train.data import clip_cache_path
    from train.features import in_share

    _, corpus = workspace
    clips = sorted(corpus.rglob("*.flac"))
    shares = [[clip for clip in clips if in_share(clip, (k, 2))] for k in range(2)]
    assert shares[0] and shares[1] and sorted(shares[0] + shares[1]) == clips  # disjoint, whole
    cache = tmp_path / "cache"
    command = [
        sys.executable,
        "-m",
        "train.features",
        str(corpus),
        "--cache-dir",
        str(cache),
        "--workers",
        "2",
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    version = embedded_encoder().version
    assert all(clip_cache_path(clip, version, cache).is_file() for clip in clips)
    reported = [line for line in done.stdout.splitlines() if "clips cached in" in line]
    assert sorted(int(line.split()[0]) for line in reported) == sorted(len(share) for share in shares)
