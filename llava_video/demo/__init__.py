"""The embedded demo model: a tiny LLaVA-NeXT-Video trained from scratch on the synthetic world
(``tools/train_demo.py``, ``configs/demo/``, ``docs/demo.md``)."""
