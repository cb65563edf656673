"""Avatar bundles: ``pack(AvatarSource, out)`` writes one, ``open_bundle(path)`` verifies and maps one.

See huma_rt/bundle/manifest.py for the layout, manifest.schema.json for every manifest field,
signing.py for signed bundles. No pickles anywhere.
"""

from __future__ import annotations

from huma_rt.bundle.load import Bundle, open_bundle
from huma_rt.bundle.manifest import SCHEMA_VERSION
from huma_rt.bundle.pack import AvatarSource, pack
from huma_rt.bundle.signing import SignatureError, generate_keypair

__all__ = ["SCHEMA_VERSION", "AvatarSource", "Bundle", "SignatureError", "generate_keypair", "open_bundle", "pack"]
