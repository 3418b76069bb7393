"""fsspec's own conformance suites, run against ``volume://``.

The five suites fsspec ships (``fsspec.tests.abstract``) run in full on a local store,
and a representative subset (one or two cases of each kind) on SeaweedFS, as s3fs does
in its ``tests/derived``. Volumes keep empty folders as entries, so
``supports_empty_directories`` is True. No case is skipped; none needed overriding.
"""

from __future__ import annotations

import posixpath
import uuid
from typing import Any

import fsspec.tests.abstract as abstract
import pytest

from jupyter_volume.fsspec import VolumeFileSystem


class _VolumeFixtures(abstract.AbstractFixtures):
    store_fixture = "local_store"

    @pytest.fixture
    def fs(self, request: pytest.FixtureRequest) -> VolumeFileSystem:
        store = request.getfixturevalue(self.store_fixture)
        return VolumeFileSystem(store=store, skip_instance_cache=True)

    @pytest.fixture
    def fs_path(self, fs: VolumeFileSystem) -> str:
        name = f"conf-{uuid.uuid4().hex[:8]}"
        fs.mkdir(name)  # at the top level, mkdir creates a volume
        return name

    @pytest.fixture
    def fs_join(self) -> Any:
        return posixpath.join

    @pytest.fixture
    def supports_empty_directories(self) -> bool:
        return True


class TestVolumeCopy(abstract.AbstractCopyTests, _VolumeFixtures):
    pass


class TestVolumeGet(abstract.AbstractGetTests, _VolumeFixtures):
    pass


class TestVolumePut(abstract.AbstractPutTests, _VolumeFixtures):
    pass


class TestVolumePipe(abstract.AbstractPipeTests, _VolumeFixtures):
    pass


class TestVolumeOpen(abstract.AbstractOpenTests, _VolumeFixtures):
    pass
