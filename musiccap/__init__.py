"""musiccap: compare published music-captioning architectures side by side."""

__version__ = "0.1.0"
