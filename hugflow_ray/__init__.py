"""hugflow-ray: Hugging Face audio datasets -> MP3 + JSON on your own machines, distributed with Ray."""

__version__ = "0.1.0"
