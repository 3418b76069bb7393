"""Parity with Modal's client (v1.5): the client-visible cases of Modal's
``py/test/volume_test.py``, named as there where a case exists, on both store kinds,
plus the behaviours issue 15 asks for (environments, names, ids, pickling, ...).
"""

from __future__ import annotations

from typing import Any

import pytest

from jupyter_volume.errors import InvalidError
from jupyter_volume.store import (
    ENV_ENVIRONMENT,
    PrefixedStore,
    environment_store,
    open_store,
    resolve_environment,
)


# -- environments: the store layer ------------------------------------------------------------
def test_environment_store_default_is_the_store_itself(store: Any) -> None:
    assert environment_store(store, None) is store
    assert environment_store(store, "") is store


def test_environment_store_keeps_keys_apart(store: Any) -> None:
    dev = environment_store(store, "dev")
    prod = environment_store(store, "prod")
    assert isinstance(dev, PrefixedStore)
    assert len({store.url, dev.url, prod.url}) == 3
    dev.put("names/x", b"dev")
    store.put("names/x", b"default")
    assert dev.get("names/x") == b"dev"
    assert store.get("names/x") == b"default"
    assert [o.key for o in dev.list("names/")] == ["names/x"]
    assert [o.key for o in store.list("names/")] == ["names/x"]
    assert [o.key for o in prod.list("")] == []
    assert [o.key for o in store.list("envs/")] == ["envs/dev/names/x"]
    assert dev.put_if_absent("names/x", b"again") is False
    assert dev.stat("names/x").size == 3
    dev.delete(["names/x"])
    assert not dev.exists("names/x")
    assert store.get("names/x") == b"default"


def test_environment_store_url_opens_the_same_place(local_store: Any) -> None:
    dev = environment_store(local_store, "dev")
    dev.put("k", b"v")
    assert open_store(dev.url).get("k") == b"v"


@pytest.mark.parametrize("bad", ["-x", ".", "..", "a" * 65, "a/b", "é", "a b"])
def test_environment_names_follow_the_volume_rule(local_store: Any, bad: str) -> None:
    with pytest.raises(InvalidError, match="1-64 characters"):
        environment_store(local_store, bad)


def test_resolve_environment_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.delenv(ENV_ENVIRONMENT, raising=False)
    assert resolve_environment(None) == ""
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "jupyter_volume_config.py").write_text(
        'c.VolumeConfig.environment = "from-config"\n'
    )
    assert resolve_environment(None) == "from-config"
    monkeypatch.setenv(ENV_ENVIRONMENT, "from-env")
    assert resolve_environment(None) == "from-env"
    assert resolve_environment("explicit") == "explicit"
    monkeypatch.setenv(ENV_ENVIRONMENT, "-bad")
    with pytest.raises(InvalidError, match="environment"):
        resolve_environment(None)
