"""Fuzz suite: property-based, seeded tests of every input a user or an attacker controls.

The only acceptable outcomes are success or a ``HumaError`` (for the CLI: ``error:`` and exit 1).
Profiles (``HUMA_FUZZ`` environment variable):

- ``ci`` (default): a short, derandomized run that ``make test`` does on every change.
- ``long``: thousands of examples per property with a random seed printed on failure, e.g.
  ``HUMA_FUZZ=long .venv/bin/python -m pytest tests/fuzz -q -p no:cacheprovider``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("ci", max_examples=60, derandomize=True, print_blob=True, **_COMMON)
settings.register_profile("long", max_examples=3000, print_blob=True, **_COMMON)
settings.load_profile(os.environ.get("HUMA_FUZZ", "ci"))
