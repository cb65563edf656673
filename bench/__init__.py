"""The benchmark suite (``huma-rt bench`` / ``python -m bench``)."""
