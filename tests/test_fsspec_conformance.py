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


class _VolumeS3Fixtures(_VolumeFixtures):
    store_fixture = "s3_store"


_SUBSET = {
    abstract.AbstractCopyTests: [
        "test_copy_file_to_existing_directory",
        "test_copy_directory_to_new_directory",
        "test_copy_list_of_files_to_new_directory",
        "test_copy_with_source_and_destination_as_list",
    ],
    abstract.AbstractGetTests: [
        "test_get_file_to_new_directory",
        "test_get_directory_recursive",
    ],
    abstract.AbstractPutTests: [
        "test_put_file_to_file_in_new_directory",
        "test_put_directory_recursive",
        "test_put_list_of_files_to_existing_directory",
    ],
    abstract.AbstractPipeTests: ["test_pipe_exclusive"],
    abstract.AbstractOpenTests: ["test_open_exclusive"],
}


class TestVolumeS3Subset(_VolumeS3Fixtures):
    """A representative subset on SeaweedFS: files, folders, lists, exclusive writes, one
    or more of each suite (the full suites run on the local store above)."""

    locals().update(
        {name: getattr(suite, name) for suite, names in _SUBSET.items() for name in names}
    )
