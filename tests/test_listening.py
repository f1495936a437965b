"""The listening table (train/listening.py) on tiny synthetic data: the floor, the probe ceiling, audio
sensitivity, and a whole report for a captioner that ignores its audio (Random) and one that hears it
(Nearest, over a tiny CLAP), on a tiny corpus of tones."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from musiccap.encoders.embedded import AudioFeatures
from musiccap.encoders.musicnn import MTT_LABELS
from musiccap.metrics.attributes import read_caption
from musiccap.metrics.listening import ATTRIBUTES, gap_closed, listening_table, sensitivity_table
from tests.toy import TEMPLATES, clip_of, save_tiny_clap, save_tiny_htsat_clap, toy_mel_items, toy_waveform
from train import listening
from train.data import FeatureItem, load_items

# What each toy template is, as corpus attributes (its caption states all of it but the mode where noted).
TRUTHS = [
    dict(families=["piano"], drums=False, tempo_class="slow", mode="minor", mood="melancholic"),
    dict(families=["guitar", "drums"], drums=True, tempo_class="fast", mode="major", mood="energetic"),
    dict(families=["strings"], drums=False, tempo_class="slow", mode="major", mood="calm"),
    dict(families=["bass"], drums=False, tempo_class="fast", mode="minor", mood="dramatic"),
]
BAND_EDGES_HZ = (
    0,
    150,
    330,
    660,
    1320,
    2640,
    4000,
    6000,
    8000,
)  # the toy tones (220 Hz x 2**kind) fall in bands 1..4
N_BANDS = len(BAND_EDGES_HZ) - 1


class ToneEncoder:
    """A stand-in feature encoder: log energy in 8 octave-ish bands per 0.5 s frame. Tones of different
    pitch, noise and silence all come out different, as with the real encoder, but in milliseconds."""

    version = "toy-tone-bands-1"
    features_class = AudioFeatures

    def __call__(self, samples: np.ndarray, sample_rate: int) -> AudioFeatures:
        hop = sample_rate // 2
        frames = []
        for start in range(0, max(len(samples) - hop + 1, 1), hop):
            spectrum = np.abs(np.fft.rfft(samples[start : start + hop], n=2048)) ** 2
            edges = [int(hz * 2048 / sample_rate) for hz in BAND_EDGES_HZ]
            frames.append(np.log1p([spectrum[a:b].sum() for a, b in zip(edges[:-1], edges[1:])]))
        frames = np.asarray(frames, dtype=np.float32)
        return AudioFeatures(
            frames=frames,
            frame_times=(np.arange(len(frames), dtype=np.float32) + 0.5) * 0.5,
            chunks=frames[:1].repeat(25, axis=1)[:, :200],
            chunk_times=np.array([[0.0, 3.0]], dtype=np.float32),
            pooled=frames.mean(0),
            tags=dict.fromkeys(MTT_LABELS, 0.0),
        )


def write_tone_corpus(root, sizes: dict[str, int]):
    """Tones of the four toy kinds under ``root``, ``sizes[split]`` clips per split, captions = the templates."""
    import soundfile

    (root / "audio").mkdir()
    index = 0
    for split, size in sizes.items():
        rows = []
        for _ in range(size):
            kind = index % len(TEMPLATES)
            audio = f"audio/{split}_{index:02d}.wav"
            soundfile.write(root / audio, toy_waveform(index), 16000)
            rows.append({"id": f"{split}{index:02d}", "audio": audio, "caption": TEMPLATES[kind],
                         "lyrics": None, "piece": f"p{index}", "attributes": TRUTHS[kind]})  # fmt: skip
            index += 1
        (root / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root


def tiny_tone_muscaps(corpus, monkeypatch, cache, **overrides):
    """An untrained tiny MusCaps over the tone features of ``corpus`` (the tone encoder stands in for the
    embedded one, features cached under ``cache``): its captions are the templates' words in some order."""
    import torch

    import musiccap.features
    from musiccap.models.muscaps import MusCaps

    monkeypatch.setenv("MUSICCAP_CACHE", str(cache))
    monkeypatch.setattr(musiccap.features, "embedded_encoder", ToneEncoder)
    torch.manual_seed(0)
    context = SimpleNamespace(feature_dims=(N_BANDS, N_BANDS, 200), clap_path="", corpus_dir="")
    tiny = {"hidden_dim": 16, "attention_dim": 8, "word_embedding_dim": 8, "min_word_count": 1}
    return MusCaps.build(tiny | overrides, load_items(corpus, "train"), context)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """24 train, 8 validation, 8 test clips."""
    return write_tone_corpus(tmp_path_factory.mktemp("listening"), {"train": 24, "validation": 8, "test": 8})


@pytest.fixture(autouse=True)
def feature_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICCAP_CACHE", str(tmp_path / "cache"))


def test_templates_state_nothing_false_about_their_clips():
    """The toy corpus is consistent: what each template states is true of its clips."""
    for template, truth in zip(TEMPLATES, TRUTHS, strict=True):
        read = read_caption(template)
        assert read.families == set(truth["families"]) - {"drums"}
        for field in ("drums", "tempo_class", "mode", "mood"):
            assert getattr(read, field) in (None, truth[field])


def test_floor_is_the_best_constant_caption_on_train():
    captions = [
        "a slow piano piece",
        "a fast guitar song with drums",
        "a slow calm piano tune in a minor key",
    ]
    truths = [TRUTHS[0], TRUTHS[0], TRUTHS[2], TRUTHS[1]]  # slow x3, no drums x3, minor x2
    chosen = listening.choose_floor(captions, truths)
    assert chosen["tempo"] == "a slow piano piece"  # the first caption stating the best value
    assert chosen["drums"] == "a fast guitar song with drums"  # the only caption stating drums at all
    assert chosen["mode"] == "a slow calm piano tune in a minor key"
    scores = listening.floor_scores(chosen, truths)
    assert scores["tempo"] == pytest.approx(3 / 4) and scores["drums"] == pytest.approx(1 / 4)
    # the fast constant score agrees with the real scorer for every candidate statement
    for caption in captions:
        read = read_caption(caption)
        real = listening.attribute_scores([read] * len(truths), truths)
        for attribute in ATTRIBUTES:
            value = listening.statement(read, attribute)
            if value is not None:
                assert listening._constant_score(attribute, value, truths) == pytest.approx(real[attribute])


def test_probe_reaches_the_ceiling_on_separable_features_and_not_on_noise():
    rng = np.random.default_rng(0)
    kinds = np.arange(160) % 4
    truths = [TRUTHS[k] for k in kinds]
    informative = np.eye(4)[kinds] * 3 + 0.3 * rng.standard_normal((160, 4))
    noise = rng.standard_normal((160, 4))
    train, val, test = slice(0, 100), slice(100, 130), slice(130, 160)
    heard = listening.fit_probe(informative[train], truths[train], informative[val], truths[val])
    scores = listening.attribute_scores(heard.reads(informative[test]), truths[test])
    assert min(scores.values()) == pytest.approx(1.0)
    assert set(heard.strengths) == set(ATTRIBUTES) and all(
        c in listening.PROBE_CS for c in heard.strengths.values()
    )
    deaf = listening.fit_probe(noise[train], truths[train], noise[val], truths[val])
    assert listening.attribute_scores(deaf.reads(noise[test]), truths[test])["tempo"] < 0.9


def test_derangement_moves_every_clip():
    rng = np.random.default_rng(3)
    for n in (2, 3, 10):
        donor = listening.derangement(n, rng)
        assert sorted(donor) == list(range(n)) and all(donor != np.arange(n))


def _tone_items(count: int) -> list[FeatureItem]:
    encoder = ToneEncoder()
    return [
        FeatureItem(
            id=f"c{i}",
            caption=TEMPLATES[i % 4],
            lyrics=None,
            attributes=TRUTHS[i % 4],
            piece=f"p{i}",
            features=encoder(toy_waveform(i), 16000),
        )  # fmt: skip
        for i in range(count)
    ]


def _by_loudest_band(items: list) -> list[str]:
    """A captioner that hears: the template whose tone falls in the band with the most energy."""
    return [TEMPLATES[min(max(int(np.argmax(item.features.frames.mean(0))) - 1, 0), 3)] for item in items]


def test_sensitivity_is_zero_for_a_captioner_that_ignores_its_audio_and_positive_for_one_that_hears():
    items = _tone_items(12)
    deaf = lambda batch: [TEMPLATES[int(item.id[1:]) % 4] for item in batch]  # noqa: E731  (the clip id only)
    ignored = listening.audio_sensitivity(items, deaf(items), deaf, ToneEncoder(), n_clips=8, seed=1)
    assert ignored["n"] == 8 and set(ignored["swap_changed"]) == {*ATTRIBUTES, "overall"}
    assert all(share == 0.0 for share in ignored["swap_changed"].values())
    assert ignored["noise"] == ignored["original"] == ignored["silence"]

    assert _by_loudest_band(items) == [item.caption for item in items]
    heard = listening.audio_sensitivity(items, _by_loudest_band(items), _by_loudest_band, ToneEncoder(), 8, 1)
    assert heard["swap_changed"]["overall"] > 0
    assert heard["swap"]["tempo"] < heard["original"]["tempo"]
    assert len(heard["noise_bank"]) == 6
    for key in ("original", "swap", "noise", "silence"):
        assert all(0.0 <= heard[key][a] <= 1.0 for a in ATTRIBUTES)


def test_report_for_random_and_nearest_on_a_tiny_corpus(corpus, tmp_path):
    from musiccap.models.baselines import RandomCaptioner
    from musiccap.models.nearest import NearestCaptioner
    from train.evaluate import caption_items

    encoder = ToneEncoder()
    train_items = load_items(corpus, "train", encoder=encoder)
    test_items = load_items(corpus, "test", encoder=encoder)
    clap = save_tiny_clap(tmp_path / "clap", frame_dim=N_BANDS, pooled_dim=N_BANDS)
    blocks = {}
    for captioner in (RandomCaptioner(TEMPLATES), NearestCaptioner.from_items(clap, train_items)):

        def caption(items, captioner=captioner):
            return [r.text for r in caption_items(captioner, items)]

        report = listening.listening_report(
            captioner,
            corpus,
            "test",
            test_items,
            caption(test_items),
            caption,
            encoder=encoder,
            sensitivity_clips=6,
        )
        assert set(report) == {"listening"}  # the corpus has no unseen split
        block = blocks[captioner.name] = report["listening"]
        assert block["split"] == "test" and block["n"] == 8
        assert set(block["attributes"]) == set(ATTRIBUTES) and set(block["floor_captions"]) == set(ATTRIBUTES)
        for scores in block["attributes"].values():
            assert all(0.0 <= value <= 1.0 for value in scores.values())
        assert block["audio_sensitivity"]["n"] == 6
        json.dumps(block)  # results.json material

    random, nearest = blocks["random"], blocks["nearest"]
    assert random["ceiling_input"] is None and "ceiling" not in random["attributes"]["tempo"]
    assert random["audio_sensitivity"]["swap_changed"]["overall"] == 0.0
    assert "clip embedding" in nearest["ceiling_input"]
    assert nearest["attributes"]["drums"]["ceiling"] == pytest.approx(1.0)  # tones are linearly separable
    assert nearest["audio_sensitivity"]["swap_changed"]["overall"] > 0
    # the floor: "slow" and "energetic" are each half of train; the same captions for both captioners
    assert random["floor_captions"] == nearest["floor_captions"]
    assert random["attributes"]["tempo"]["floor"] == pytest.approx(0.5)

    table = listening_table(blocks)
    assert "| random |" in table and "| nearest |" in table and "instr. F1" in table
    assert "| nearest | 6 |" in sensitivity_table(blocks)


def test_unseen_split_gets_its_own_block(corpus, tmp_path):
    import shutil

    from musiccap.models.baselines import RandomCaptioner

    copy = tmp_path / "corpus"
    shutil.copytree(corpus, copy)
    shutil.copy(copy / "test.jsonl", copy / "unseen.jsonl")
    captioner = RandomCaptioner(TEMPLATES)
    encoder = ToneEncoder()
    items = load_items(copy, "test", encoder=encoder)

    def caption(batch):
        return [captioner.caption(clip_of(item)).text for item in batch]

    report = listening.listening_report(captioner, copy, "test", items, caption(items), caption, encoder=encoder,
                                        sensitivity_clips=4)  # fmt: skip
    assert report["listening_unseen"]["split"] == "unseen"
    assert report["listening_unseen"]["attributes"] == report["listening"]["attributes"]
    assert report["listening_unseen"]["corpus"] == "corpus"

    # a corpus without an unseen split (v1) takes another corpus's: same clips, so the same block
    (copy / "unseen.jsonl").unlink()
    other = tmp_path / "other"
    other.mkdir()
    for name in ("unseen.jsonl", "audio"):
        (other / name).symlink_to(copy / ("test.jsonl" if name == "unseen.jsonl" else name))
    elsewhere = listening.listening_report(captioner, copy, "test", items, caption(items), caption, encoder=encoder,
                                           sensitivity_clips=4, unseen_corpus=other)  # fmt: skip
    assert elsewhere["listening_unseen"]["corpus"] == "other"
    assert elsewhere["listening_unseen"]["attributes"] == report["listening_unseen"]["attributes"]


def test_gap_closed():
    assert gap_closed({"floor": 0.5, "ceiling": 0.9, "caption": 0.7}) == pytest.approx(0.5)
    assert gap_closed({"floor": 0.5, "caption": 0.7}) is None  # no ceiling (Random)
    assert gap_closed({"floor": 0.49, "ceiling": 0.495, "caption": 0.2}) is None  # no real gap to close
    assert (
        gap_closed({"floor": 0.9, "ceiling": 0.8, "caption": 0.7}) is None
    )  # the probe does not beat the floor


def _block(caption: float, with_ceiling: bool = True) -> dict:
    scores = {"floor": 0.4, "caption": caption, **({"ceiling": 0.9} if with_ceiling else {})}
    shares = dict.fromkeys(ATTRIBUTES, 0.25)
    return {
        "split": "test",
        "n": 10,
        "attributes": dict.fromkeys(ATTRIBUTES, scores),
        "audio_sensitivity": {"n": 8, "swap_changed": {**shares, "overall": 0.25}, "original": shares,
                              "swap": shares, "noise": shares, "silence": shares},
    }  # fmt: skip


def test_results_md_and_about_tab_show_the_listening_table(tmp_path):
    from musiccap.ui.about import listening_markdown
    from train.tables import render

    for name, document in {
        "random": {"metrics": {}, "listening": _block(0.4, with_ceiling=False)},
        "muscaps": {"metrics": {}, "listening": _block(0.65), "ablation_listening": {"greedy": _block(0.9)}},
    }.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(document))
    text = render(tmp_path)
    assert "## Listening (test split)" in text and "## Listening (unseen split)" not in text
    assert "| muscaps | 0.40 / 0.90 / 0.65 (0.50) |" in text
    assert "| muscaps: greedy | 0.40 / 0.90 / 0.90 (1.00) |" in text
    assert "| random | 0.40 / – / 0.40 (–) |" in text
    assert "| muscaps | 8 | 0.25 / 0.25 / 0.25 / 0.25 / 0.25 | 0.25 | 0.25 | 0.25 | 0.25 | 0.25 |" in text
    about = listening_markdown(tmp_path, ["random", "muscaps", "csa"])
    assert "| muscaps | 0.40 / 0.90 / 0.65 (0.50) |" in about and "greedy" not in about


def test_ablation_rows_file_their_listening_blocks_and_a_re_evaluation_keeps_them(tmp_path, monkeypatch):
    import train.evaluate as evaluate
    import train.model_card

    def fake_captioner_evaluation(checkpoint, *args):
        return {"metrics": {"bleu4": 0.1}, "listening": _block(0.5), "listening_unseen": _block(0.6)}

    monkeypatch.setattr(evaluate, "evaluate_captioner", fake_captioner_evaluation)
    monkeypatch.setattr(train.model_card, "write_model_card", lambda path: None)
    shipped, variant = tmp_path / "muscaps", tmp_path / "muscaps_greedy"
    for folder in (shipped, variant):
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"architecture": "muscaps", "config": {}}))
    evaluate.evaluate_checkpoint(variant, "corpus", into=shipped, as_name="greedy")
    filed = json.loads((shipped / "results.json").read_text())
    assert filed["ablation_listening"]["greedy"]["attributes"]["tempo"]["caption"] == 0.5
    assert filed["ablation_listening_unseen"]["greedy"]["attributes"]["tempo"]["caption"] == 0.6
    evaluate.evaluate_checkpoint(shipped, "corpus")
    document = json.loads((shipped / "results.json").read_text())
    assert document["listening"]["attributes"]["tempo"]["caption"] == 0.5
    assert document["ablation_listening"] == filed["ablation_listening"]
    assert document["ablation_listening_unseen"] == filed["ablation_listening_unseen"]


@pytest.mark.parametrize("train_encoder", [False, True])
def test_csa_is_probed_on_its_clap_frame_tokens(tmp_path, train_encoder):
    from tests.test_csa import FRAME_DIM, POOLED_DIM, build, make_item

    rng = np.random.default_rng(0)
    items = [make_item(i, rng) for i in range(6)]
    model = build(
        save_tiny_clap(tmp_path / "clap", FRAME_DIM, POOLED_DIM), items, train_encoder=train_encoder
    )
    source = listening.probe_input(model)
    assert source.description.startswith("trained CLAP" if train_encoder else "frozen CLAP")
    assert "frame tokens" in source.description
    features = source.features(items)
    assert features.shape == (6, 3 * model.clap.audio_dim) and np.isfinite(features).all()


def test_full_profile_csa_is_probed_on_the_htsat_tokens_over_real_audio(tmp_path):
    from tests.test_csa import build_full

    items = toy_mel_items(save_tiny_htsat_clap(tmp_path / "htsat"), 4)
    model = build_full(tmp_path / "htsat", items)
    features = listening.probe_input(model).features(items)
    assert features.shape == (4, 3 * model.clap.audio_dim) and np.isfinite(features).all()
