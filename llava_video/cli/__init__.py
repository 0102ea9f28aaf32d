"""Command-line entry points; ``tools/*.py`` are thin wrappers over the ``main`` functions here."""
