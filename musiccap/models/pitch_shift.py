"""Pitch-shift augmentation for captioners that read the embedded features (CSA's training).

Pitch-shift augmentation (paper: +-6 semitones on the audio) is applied **on features**: each
training row gets a shift drawn from -6..6, and every 12-wide pitch-class block of the frames
(chroma, the 12 major- and the 12 minor-key correlations; layout in ``musiccap/encoders/embedded.py``)
is rotated by it. The caption is transposed with it: a key it names ("It is in Ab major.") moves by
the same interval (``transpose_key_names``). MusicCaps' captions seldom name a key, so the paper
could shift the audio alone; the synthetic corpus names one in half its captions, and a key left
unmoved while the chroma moves would teach the decoder that the stated key is noise. The musicnn
mid-end and tempogram blocks are left as they are (a learned timbre representation cannot be
transposed after the fact); the pooled vector only feeds the CLAP's own
embedding, which no loss here uses, so it is not shifted either. An HTSAT CLAP reads log-mels, whose
bins are not pitch classes: with it the shift is refused (``csa_full.yaml`` sets it to 0).
"""

from __future__ import annotations

import re

import torch

PITCH_CLASSES = 12
# How the synthetic corpus spells the twelve tonics (``train/corpus/sources.py``); a transposed key is
# written so. Reading also accepts the other enharmonic spellings (user captions may say D# or Gb).
TONIC_SPELLINGS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
TONIC_PITCH_CLASS = {
    **{name: pc for pc, name in enumerate(TONIC_SPELLINGS)},
    **{"Db": 1, "D#": 3, "Gb": 6, "G#": 8, "A#": 10, "Cb": 11, "B#": 0, "E#": 5, "Fb": 4},
}
# A capitalised tonic directly before "major"/"minor": "Ab major", "F# minor"; not the article in
# "a major key" (lower case). A sentence opening "A major ..." would read as the key A major; the
# corpus never writes one (checked over all three splits).
KEY_NAME = re.compile(r"\b([A-G][#b]?)(?=[ -](?:major|minor)\b)")


def embedded_pitch_class_blocks(frame_dim: int) -> list[list[int]]:
    """Chroma, major-key and minor-key correlation columns of the embedded frames (pitch-class indexed).

    ``musiccap/encoders/embedded.py``: frames = musicnn mid-end | chroma (12) | key (12 major, then
    12 minor, tonic C first) | tempogram. Each block is scaled by one constant, so rotating its
    columns is exactly what transposing the audio would do to it.
    """
    from musiccap.encoders.embedded import EmbeddedConfig

    layout = EmbeddedConfig()
    if layout.chroma_dim != PITCH_CLASSES or layout.key_dim != 2 * PITCH_CLASSES:
        raise ValueError("the embedded frame layout no longer has 12 chroma and 24 key columns")
    chroma_start = frame_dim - layout.tempo_dim - layout.key_dim - layout.chroma_dim
    return [[chroma_start + PITCH_CLASSES * i, chroma_start + PITCH_CLASSES * (i + 1)] for i in range(3)]


def pitch_shift_frames(
    frames: torch.Tensor, semitones: torch.Tensor, blocks: list[list[int]]
) -> torch.Tensor:
    """Transpose each row of ``frames`` [B, T, D] by ``semitones`` [B]: rotate every pitch-class block.

    Column c of a block moves to column (c + n) mod 12, as ``np.roll(block, n)`` does: energy at C
    shifted up two semitones lands on D, and the C-major correlation becomes the D-major one.
    """
    if not blocks:
        return frames
    source = (torch.arange(PITCH_CLASSES)[None, :] - semitones[:, None]) % PITCH_CLASSES  # [B, 12]
    source = source[:, None, :].expand(frames.shape[0], frames.shape[1], PITCH_CLASSES)
    shifted = frames.clone()
    for start, end in blocks:
        shifted[..., start:end] = frames[..., start:end].gather(-1, source)
    return shifted


def transpose_key_names(caption: str, semitones: int) -> str:
    """``caption`` with every key it names moved by ``semitones``: "It is in Ab major." +3 -> "B major".

    The label side of the pitch-shift augmentation; the mode (major/minor) is kept, as transposing keeps it.
    """
    if semitones % PITCH_CLASSES == 0:
        return caption

    def moved(match: re.Match) -> str:
        return TONIC_SPELLINGS[(TONIC_PITCH_CLASS[match.group(1)] + semitones) % PITCH_CLASSES]

    return KEY_NAME.sub(moved, caption)
