"""Model parts: vision tower, projector, frame pooling, AnyRes geometry, language model, composition.

Import the composed model from ``llava_video`` (``from llava_video import LlavaVideo``).
"""

__all__: list[str] = []
