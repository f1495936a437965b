"""musiccap: compare published music-captioning architectures side by side.

``musiccap.load("csa")`` is a captioner by its registry name (musiccap/registry.py);
``musiccap.caption("song.ogg", "csa")`` captions a file's first 10 s with it. docs/ARCHITECTURE.md
describes the layers and the path from an uploaded file to the rendered comparison.
"""

__version__ = "0.1.0"
__all__ = ["caption", "load"]


def load(name_or_path, checkpoints=None):
    """A captioner by registry name or checkpoint folder (``musiccap.studio.load``)."""
    from musiccap.studio import load as load_by_name  # torch and the models load on first use

    return load_by_name(name_or_path, checkpoints)


def caption(audio_file, model="csa", window_mode="first", *, clean_text=True):
    """Caption a file's 10 s windows with one captioner (``musiccap.studio.caption``)."""
    from musiccap.studio import caption as caption_file

    return caption_file(audio_file, model, window_mode, clean_text=clean_text)
