"""The LP-MusicCaps-shaped speed anchor (musiccap/anchor.py), on a tiny BART: shapes and exact lengths."""

import numpy as np
import torch

from musiccap.anchor import N_MELS, AnchorDecoding, LpMusicCapsAnchor, bart_base_config


def tiny_anchor(new_tokens: int = 7) -> LpMusicCapsAnchor:
    bart = bart_base_config(
        vocab_size=40,
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=128,
    )
    return LpMusicCapsAnchor(bart, AnchorDecoding(num_beams=3, new_tokens=new_tokens))


def test_default_shape_is_bart_base():
    config = bart_base_config()
    assert (config.d_model, config.encoder_layers, config.decoder_layers, config.vocab_size) == (
        768,
        6,
        6,
        50265,
    )
    assert (config.encoder_attention_heads, config.encoder_ffn_dim) == (12, 3072)


def test_front_end_quarters_the_frames_of_a_128_bin_log_mel():
    anchor = tiny_anchor()
    samples = torch.randn(2, 16_000)  # 1 s at 16 kHz: 101 frames at a 10 ms hop
    log_mel = anchor.log_mel(samples)
    assert log_mel.shape == (2, N_MELS, 101)
    assert anchor.encode(samples).shape == (2, 26, 16)  # two stride-2 convs: 101 -> 51 -> 26


def test_generates_exactly_the_asked_tokens_even_where_eos_would_win():
    anchor = tiny_anchor(new_tokens=9)
    with torch.no_grad():  # make EOS the likeliest token at every step
        anchor.bart.final_logits_bias[0, anchor.bart.config.eos_token_id] = 100.0
    ids = anchor.caption_ids(np.random.default_rng(0).standard_normal(22_050).astype(np.float32), 22_050)
    assert ids.shape == (1, 1 + 9)  # the decoder start token, then 9 generated


def test_same_seed_same_weights():
    a, b = tiny_anchor(), tiny_anchor()
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
