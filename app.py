"""Hugging Face Spaces entry point: the musiccap studio on the embedded checkpoints.

Listens where Gradio's GRADIO_SERVER_NAME / GRADIO_SERVER_PORT say (PORT as a fallback; default
127.0.0.1:7860). On a Space deployed with `musiccap deploy`, musicnn's weights come from vendor/ (the
musicnn wheel cannot be installed there).
"""

import os
from pathlib import Path

VENDOR = Path(__file__).resolve().parent / "vendor"

if __name__ == "__main__":
    if (VENDOR / "musicnn").is_dir():
        os.environ.setdefault("MUSICCAP_CACHE", str(VENDOR))
    from musiccap.ui.app import launch, server_address

    host, port = server_address()
    launch(host=host, port=port)
