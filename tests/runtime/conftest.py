"""Session-wide small avatar: export once (seeded), pack once, load per test as needed."""

from __future__ import annotations

import pytest
from _runtime_avatar import pack_small, renderer_arg, shared_export

from huma_rt.runtime import Avatar


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory):
    return shared_export(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="session")
def bundle_dir(export_dir, tmp_path_factory):
    return pack_small(export_dir, tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="session")
def avatar(bundle_dir):
    return Avatar.load(bundle_dir, device="cpu", renderer=renderer_arg(), threads=1)
