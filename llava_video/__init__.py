"""llava-video: an open toolkit for LLaVA-NeXT-Video models."""

__version__ = "0.1.0"
