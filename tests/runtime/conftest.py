"""Session-wide avatars for the runtime tests, each test run on both:

- "tiny": structured random Gaussians with seeded networks (export once, pack once);
- "trained": a bundle made by the training pipeline from a fitted synthetic clip
  (tests/_trained_bundle.py: clip -> static fit -> deformer -> train/pack_avatar), built once
  per session (~1 min on the shared 2-core machine) and skipped where the training tools are
  missing. Issue 14: the trained bundle passes every runtime test the other bundles pass.
"""

from __future__ import annotations

import pytest
from _runtime_avatar import pack_small, renderer_arg, shared_export

from huma_rt.runtime import Avatar


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory):
    return shared_export(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory):
    from _trained_bundle import trained_case

    return trained_case(tmp_path_factory).bundle


@pytest.fixture(scope="session", params=["tiny", "trained"])
def bundle_dir(request, tmp_path_factory):
    if request.param == "trained":
        return request.getfixturevalue("trained_bundle")
    return pack_small(request.getfixturevalue("export_dir"), tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="session")
def avatar(bundle_dir):
    return Avatar.load(bundle_dir, device="cpu", renderer=renderer_arg(), threads=1)
