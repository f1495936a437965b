"""Toy data shared by the architecture tests: four caption templates, each tied to a feature direction.

An item of template k has frames centred on axis k (plus noise, uneven lengths to exercise the
padding), so a model that learns anything maps the audio to the right caption.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from musiccap.clip import AUDIO_FEATURES, Clip
from musiccap.encoders.embedded import AudioFeatures
from musiccap.encoders.embedded_clap import EmbeddedClap, EmbeddedClapConfig
from train.data import FeatureItem

TEMPLATES = [
    "a slow piano ballad in a minor key",
    "an upbeat rock song with drums and electric guitar",
    "a calm string quartet playing a major melody",
    "a fast techno track with a heavy bass",
]


def toy_item(
    index: int,
    rng: np.random.Generator,
    *,
    frame_dim: int,
    pooled_dim: int,
    lyrics: list[str | None] | None = None,
    random_pooled: bool = True,
) -> FeatureItem:
    kind = index % len(TEMPLATES)
    n_frames = 6 + index % 3  # uneven lengths exercise the padding
    centre = np.zeros(frame_dim, dtype=np.float32)
    centre[kind] = 3.0
    frames = (centre + 0.3 * rng.standard_normal((n_frames, frame_dim))).astype(np.float32)
    pooled = rng.standard_normal(pooled_dim) if random_pooled else np.zeros(pooled_dim)
    features = AudioFeatures(
        frames=frames,
        frame_times=np.arange(n_frames, dtype=np.float32) * 0.25 + 0.125,
        chunks=np.zeros((1, 200), dtype=np.float32),
        chunk_times=np.array([[0.0, 3.0]], dtype=np.float32),
        pooled=pooled.astype(np.float32),
        tags={},
    )
    return FeatureItem(
        id=f"clip{index:02d}",
        caption=TEMPLATES[kind],
        lyrics=lyrics[kind] if lyrics else None,
        attributes=None,
        piece=f"p{index}",
        features=features,
    )


def save_tiny_clap(path: Path, frame_dim: int, pooled_dim: int) -> Path:
    """A tiny random embedded CLAP (real frozen MiniLM text tower) saved as a checkpoint folder."""
    torch.manual_seed(0)
    config = EmbeddedClapConfig(
        frame_dim=frame_dim, pooled_dim=pooled_dim, d_audio=16, n_layers=1, n_heads=2, ff_dim=32, embed_dim=16
    )
    EmbeddedClap(config).save_pretrained(path)
    return path


def save_tiny_htsat_clap(path: Path) -> Path:
    """A tiny random LAION-style CLAP folder (transformers ClapModel: 4-stage HTSAT, 2-layer RoBERTa),
    with a byte-level BPE tokenizer trained on the toy captions and a ClapFeatureExtractor, as
    ``save_pretrained`` writes them: what ``laion/larger_clap_music`` looks like, in miniature."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import (
        ClapAudioConfig,
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapTextConfig,
        RobertaTokenizerFast,
    )

    bpe = ByteLevelBPETokenizer()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's ids 0..4
    bpe.train_from_iterator(TEMPLATES * 5, vocab_size=300, special_tokens=specials, show_progress=False)
    tokenizer = RobertaTokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        unk_token="<unk>", mask_token="<mask>", model_max_length=64,
    )  # fmt: skip
    text = ClapTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=70, projection_dim=16,
    )  # fmt: skip
    # HTSAT: hidden_size = patch_embeds_hidden_size * 2 ** (len(depths) - 1)
    audio = ClapAudioConfig(
        patch_embeds_hidden_size=16, hidden_size=128, depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 2, 2],
        num_hidden_layers=4, projection_dim=16,
    )  # fmt: skip
    torch.manual_seed(0)
    model = ClapModel(ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=16))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    ClapFeatureExtractor(truncation="rand_trunc").save_pretrained(path)  # as the non-fusion LAION checkpoints
    return path


def toy_waveform(index: int, sample_rate: int = 16000) -> np.ndarray:
    """A few seconds (uneven: 3 to 5 s) of a tone whose pitch depends on the item's template."""
    kind = index % len(TEMPLATES)
    seconds = 3.0 + index % 3
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    rng = np.random.default_rng(index)
    tone = np.sin(2 * np.pi * 220.0 * 2**kind * t) + 0.05 * rng.standard_normal(len(t))
    return (0.3 * tone).astype(np.float32)


def toy_mel_items(clap_dir: Path, count: int) -> list[FeatureItem]:
    """Toy tones as the training cache holds them for an HTSAT CLAP: that CLAP's log-mels."""
    from musiccap.encoders.clap_loader import feature_encoder

    mel = feature_encoder(clap_dir)
    return [
        FeatureItem(
            id=f"clip{i:02d}",
            caption=TEMPLATES[i % len(TEMPLATES)],
            lyrics=None,
            attributes=None,
            piece=f"p{i}",
            features=mel(toy_waveform(i), 16000),
        )  # fmt: skip
        for i in range(count)
    ]


def save_tiny_flan_t5(path: Path, extra_texts: list[str]) -> Path:
    """A tiny random T5 with a Flan-T5-shaped tokenizer (unigram; <pad> 0, </s> 1, <unk> 2; a
    post-processor appending </s>; <extra_id_N> sentinels at the end of the vocabulary), as
    ``save_pretrained`` writes a Flan-T5 folder. The model's vocabulary is padded past the
    tokenizer's, as Flan-T5's (32,128 rows for 32,100 tokens)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=80, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False
    )
    tokenizer.train_from_iterator(TEMPLATES + extra_texts, trainer)
    tokenizer.add_special_tokens([f"<extra_id_{i}>" for i in reversed(range(3))])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=tokenizer.get_vocab_size() + 5, d_model=32, d_kv=16, d_ff=48, num_layers=1,
        num_decoder_layers=1, num_heads=2, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
        dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )  # fmt: skip
    T5ForConditionalGeneration(config).save_pretrained(path)
    wrapped.save_pretrained(path)
    return path


def clip_of(item: FeatureItem, **extra) -> Clip:
    return Clip(None, clip_id=item.id, features={AUDIO_FEATURES: item.features, **extra})
