"""musiccap: compare published music-captioning architectures side by side.

``musiccap.load("csa")`` is a captioner from the registry (musiccap/registry.py);
``musiccap.caption("song.ogg", "csa")`` captions a file's first 10 s with it. docs/ARCHITECTURE.md
describes the layers and the path from an uploaded file to the rendered comparison.
"""

from musiccap.registry import caption, load

__version__ = "0.1.0"
__all__ = ["caption", "load"]
