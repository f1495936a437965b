"""Hugging Face Spaces entry point: the musiccap studio on the embedded checkpoints."""

import os

from musiccap.ui.app import launch

if __name__ == "__main__":
    launch(host=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), port=int(os.environ.get("PORT", "7860")))
