"""CPython's own mapping-protocol tests (``test.mapping_tests``) run against a Dict.

``test.mapping_tests`` ships with CPython in the ``test`` package. Some Linux
distributions split that package off: on Debian and Ubuntu install ``libpython3-testsuite``
(or ``libpython3.X-testsuite`` for your version); a python.org or uv-managed Python has it.
"""

from __future__ import annotations

import uuid

import pytest

try:
    from test import mapping_tests
except ImportError as e:  # fail loudly (never skip) with the way to get it
    raise ImportError(
        "CPython's test package (test.mapping_tests) is missing from this Python: on "
        "Debian/Ubuntu run `apt-get install libpython3-testsuite`, or use a python.org or "
        "uv-managed Python, which include it"
    ) from e

from jupyter_volume import Dict
from jupyter_volume.store.base import Store

pytestmark = pytest.mark.timeout(300)


class _DictProtocol(mapping_tests.BasicTestMappingProtocol):
    """The protocol tests; ``_empty_mapping`` gives a new, empty named Dict each call."""

    __test__ = False  # only the store-specific subclasses below run
    dict_store: Store

    def _empty_mapping(self) -> Dict:
        return Dict.from_name(
            f"m-{uuid.uuid4().hex[:12]}", create_if_missing=True, store=self.dict_store
        )


class TestMappingProtocolLocal(_DictProtocol):
    __test__ = True

    @pytest.fixture(autouse=True)
    def _store(self, local_store: Store) -> None:
        self.dict_store = local_store


@pytest.mark.s3
class TestMappingProtocolS3(_DictProtocol):
    __test__ = True

    @pytest.fixture(autouse=True)
    def _store(self, s3_store: Store) -> None:
        self.dict_store = s3_store
