"""Is it listening? A window captioned again with its audio replaced by noise and by another clip."""

import gradio as gr
import numpy as np
import pytest
import soundfile as sf

from musiccap.audio import from_array, load_audio, windows
from musiccap.clip import LYRICS
from musiccap.decoding import DecodingConfig
from musiccap.listening_check import (
    NOISE,
    OTHER_CLIP,
    Replacement,
    attribute_changes,
    listening_check,
    other_clip,
    pink_noise_like,
    replacements,
    text_change,
)
from musiccap.metrics.attributes import read_caption
from musiccap.models.base import CaptionResult
from musiccap.registry import CHECKPOINTS
from musiccap.studio import Studio
from musiccap.ui.compare import listening_cards, run_listening_check

RATE = 16000
EXAMPLES = sorted(
    str(p) for p in (CHECKPOINTS.parent / "examples").iterdir() if p.suffix in {".ogg", ".flac"}
)
EXAMPLE = CHECKPOINTS.parent / "examples" / "real-parrotte-desert.ogg"


class Deaf:
    """Writes the same caption whatever it hears."""

    default_decoding = DecodingConfig()

    def caption(self, clip, decoding=None):
        return CaptionResult(model="deaf", text="A slow sad piano ballad in a minor key with soft drums.")


class Brightness:
    """Hears one thing: whether the window's energy sits above or below 1 kHz (its spectral centroid)."""

    default_decoding = DecodingConfig()

    def caption(self, clip, decoding=None):
        window = clip.window
        power = np.abs(np.fft.rfft(window.samples)) ** 2
        frequencies = np.fft.rfftfreq(len(window.samples), 1 / window.sample_rate)
        if (power * frequencies).sum() / power.sum() > 1000:
            return CaptionResult(model="brightness", text="A fast happy flute tune in a major key.")
        return CaptionResult(model="brightness", text="A slow sad cello lament in a minor key.")


class LyricsEcho:
    default_decoding = DecodingConfig()

    def caption(self, clip, decoding=None):
        return CaptionResult(model="echo", text=f"A song about {clip.features.get(LYRICS, 'nothing')}.")


class Hostile:
    """Model output is text, not markup: whatever it writes must reach the page inert."""

    default_decoding = DecodingConfig()

    def caption(self, clip, decoding=None):
        return CaptionResult(
            model="hostile", text=f"<script>alert(1)</script> ${{x}} {clip.window.samples[0]:.3f}"
        )


class OnlyTones:
    """Captions the tone (it starts at zero), fails on anything else."""

    default_decoding = DecodingConfig()

    def caption(self, clip, decoding=None):
        if clip.window.samples[0] != 0.0:
            raise RuntimeError("not a tone")
        return CaptionResult(model="tones", text="A tone.")


class Broken:
    default_decoding = DecodingConfig()

    def caption(self, clip, decoding=None):
        raise RuntimeError("out of order")


def studio_of(tmp_path, **captioners) -> Studio:
    studio = Studio(tmp_path)  # no checkpoints there: the captioners are the test's own
    studio.captioners = dict(captioners)
    return studio


def tone(frequency: float, seconds: float = 10.0, level: float = 0.3):
    t = np.arange(int(seconds * RATE)) / RATE
    return from_array((level * np.sin(2 * np.pi * frequency * t)).astype(np.float32), RATE, source="tone.wav")


def test_text_change_is_one_minus_word_set_jaccard():
    assert text_change("A slow piano.", "a SLOW piano") == 0.0
    assert text_change("slow piano", "fast piano") == pytest.approx(1 - 1 / 3)
    assert text_change("slow", "fast") == 1.0
    assert text_change("", "") == 0.0


def test_attribute_changes_count_only_what_either_caption_states():
    original = read_caption("A slow piano piece in a minor key.")
    replaced = read_caption("A fast piano piece in a minor key with drums.")
    stated, changed = attribute_changes(original, replaced)
    assert stated == ["instruments", "tempo", "mode", "drums"]  # no mood either way
    assert changed == ["tempo", "drums"]
    assert attribute_changes(read_caption("Music."), read_caption("Some music.")) == ([], [])


def test_pink_noise_matches_the_windows_loudness_and_keeps_its_padding_silent():
    window = windows(tone(220.0, seconds=6.0), "first")[0]  # 6 s of audio, 4 s of padding
    noise = pink_noise_like(window)
    real = int(6.0 * RATE)
    rms = lambda x: float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))  # noqa: E731
    assert rms(noise.samples[:real]) == pytest.approx(rms(window.samples[:real]), rel=0.02)
    assert not noise.samples[real:].any() and (noise.start_s, noise.end_s) == (window.start_s, window.end_s)
    assert np.array_equal(noise.samples, pink_noise_like(window).samples)  # seeded
    assert not np.array_equal(noise.samples, pink_noise_like(window, seed=1).samples)
    # pink: each octave carries about the same power, so the low end dominates per hertz
    power = np.abs(np.fft.rfft(noise.samples[:real])) ** 2
    frequencies = np.fft.rfftfreq(real, 1 / RATE)
    low = power[(frequencies >= 100) & (frequencies < 200)].sum()
    high = power[(frequencies >= 3200) & (frequencies < 6400)].sum()
    assert 0.5 < low / high < 2.0


def test_a_silent_window_has_no_loudness_to_match():
    silent = windows(from_array(np.zeros(RATE * 10, dtype=np.float32), RATE), "first")[0]
    with pytest.raises(ValueError, match="silent"):
        pink_noise_like(silent)


def test_the_other_clip_is_never_the_clip_itself(tmp_path):
    clip = tone(440.0)
    sf.write(tmp_path / "a-same-audio.wav", clip.samples, RATE, subtype="FLOAT")  # itself, renamed
    sf.write(tmp_path / "b-other.wav", tone(880.0).samples, RATE)
    sf.write(tmp_path / "tone.wav", tone(330.0).samples, RATE)  # the clip's own file name
    candidates = [tmp_path / n for n in ("tone.wav", "b-other.wav", "a-same-audio.wav")]
    name, donor = other_clip(clip, candidates)
    assert name == "b-other.wav" and donor.label == "00:00–00:10"
    with pytest.raises(ValueError, match="no other clip"):
        other_clip(clip, [tmp_path / "a-same-audio.wav"])


def test_a_captioner_that_ignores_its_audio_shows_no_change_and_one_that_hears_does(tmp_path):
    clip = tone(3000.0)  # bright: its noise of the same loudness is dark (pink)
    window = windows(clip, "first")[0]
    sf.write(tmp_path / "low.wav", tone(110.0).samples, RATE)
    replaced = replacements(clip, window, [tmp_path / "low.wav"])
    assert [r.kind for r in replaced] == [NOISE, OTHER_CLIP]
    assert replaced[1].description == "low.wav, 00:00–00:10"
    studio = studio_of(tmp_path, deaf=Deaf(), brightness=Brightness(), broken=Broken())
    check = listening_check(studio, window, replaced)
    deaf, hearing, broken = check.models
    assert deaf.ignores_audio
    for change in deaf.changes:
        assert change.text == deaf.original and change.attribute_change == 0.0 and change.text_change == 0.0
        assert change.attributes_stated == ["instruments", "tempo", "mode", "drums", "mood"]
    assert not hearing.ignores_audio and hearing.original.startswith("A fast happy flute")
    for change in hearing.changes:
        assert change.attributes_changed == ["instruments", "tempo", "mode", "mood"]
        assert change.attribute_change == 1.0 and change.text_change > 0.5
    assert "out of order" in broken.error and not broken.changes
    row = check.to_json("brightness")
    assert set(row) == {NOISE, OTHER_CLIP} and row[OTHER_CLIP]["source"] == "low.wav, 00:00–00:10"
    assert row[NOISE]["attribute_change"] == 1.0 and row[NOISE]["text"].startswith("A slow sad cello")


def test_the_stand_ins_keep_the_clips_id_and_lyrics(tmp_path):
    window = windows(tone(440.0), "first")[0]
    noise = Replacement(NOISE, "noise", pink_noise_like(window))
    studio = studio_of(tmp_path, echo=LyricsEcho())
    check = listening_check(studio, window, [noise], lyrics="  the sea  ")
    assert check.models[0].original == "A song about the sea." and check.models[0].ignores_audio
    if (CHECKPOINTS / "random" / "config.json").is_file():  # seeded by the clip's id: the same draw
        check = listening_check(Studio(models=["random"]), window, [noise])
        assert check.models[0].ignores_audio


def test_given_captions_of_the_window_are_not_captioned_again(tmp_path):
    calls = []

    class Counting(Brightness):
        def caption(self, clip, decoding=None):
            calls.append(clip.window)
            return super().caption(clip, decoding)

    window = windows(tone(3000.0), "first")[0]
    noise = Replacement(NOISE, "noise", pink_noise_like(window))
    check = listening_check(
        studio_of(tmp_path, counting=Counting()), window, [noise], originals={"counting": "x"}
    )
    assert len(calls) == 1 and calls[0] is noise.window and check.models[0].original == "x"


def test_the_cards_escape_model_output(tmp_path):
    window = windows(tone(440.0), "first")[0]
    noise = Replacement(NOISE, "pink <b>noise</b>", pink_noise_like(window))
    studio = studio_of(tmp_path, hostile=Hostile(), broken=Broken(), tones=OnlyTones())
    check = listening_check(studio, window, [noise])
    assert check.models[2].changes[0].error == "RuntimeError: not a tone"
    html = listening_cards(check)
    assert "<script>" not in html and "<b>" not in html and "$" not in html and "{x}" not in html
    assert "&lt;script&gt;" in html and "&#36;&#123;x&#125;" in html and "pink &lt;b&gt;noise" in html
    assert html.count('class="mc-card mc-check"') == 2 and html.count('class="mc-card mc-failed"') == 1
    assert "changes with the audio" in html and "text changed" in html
    assert "failed on the replaced audio" in html and "failed: RuntimeError: not a tone" in html


@pytest.fixture(scope="module")
def shipped():
    if not all((CHECKPOINTS / name / "config.json").is_file() for name in ("random", "csa")):
        pytest.skip("no shipped checkpoints")
    return Studio(models=["random", "csa"])


def test_a_shipped_captioner_hears_the_replacements_and_the_handler_renders_them(shipped):
    html = run_listening_check(shipped, EXAMPLES, str(EXAMPLE), "first", "", 0, 0, -1, False, 0)
    assert html.count('class="mc-card mc-check"') == 2
    assert "real-domina-mountain.ogg, 00:00–00:10" in html  # the first example that is not this clip
    audio = load_audio(EXAMPLE)
    window = windows(audio, "first")[0]
    check = listening_check(shipped, window, replacements(audio, window, EXAMPLES))
    random, csa = check.models
    assert random.ignores_audio
    assert not csa.ignores_audio
    assert any(change.attributes_changed or change.text_change > 0 for change in csa.changes)


def test_the_handler_explains_what_it_cannot_check(shipped, tmp_path):
    with pytest.raises(gr.Error, match="Upload or record"):
        run_listening_check(shipped, EXAMPLES, None, "first", "", 0, 0, -1, False, 0)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(RATE * 10, dtype=np.float32), RATE)
    with pytest.raises(gr.Error, match="silent"):
        run_listening_check(shipped, EXAMPLES, str(silent), "first", "", 0, 0, -1, False, 0)
