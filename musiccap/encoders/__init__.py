"""Pretrained parts that work offline: musicnn (PyTorch port), key/tempo features, the embedded audio
representation, MiniLM text encoder, LAION CLAP wrappers (full profile) and GPT-2's BPE.

Submodules are imported explicitly (``from musiccap.encoders.embedded import EmbeddedAudioEncoder``);
nothing loads weights or prints at import time.
"""
