"""Avatar bundles: ``pack(AvatarSource, out)`` writes one, ``open_bundle(path)`` verifies and maps one.

See huma_rt/bundle/manifest.py for the layout. No pickles anywhere.
"""

from __future__ import annotations

from huma_rt.bundle.load import Bundle, open_bundle
from huma_rt.bundle.manifest import SCHEMA_VERSION
from huma_rt.bundle.pack import AvatarSource, pack

__all__ = ["SCHEMA_VERSION", "AvatarSource", "Bundle", "open_bundle", "pack"]
