"""The REST routes for Dicts, through a real Jupyter server (the same setup as
``test_server_api.py``, whose server fixture and client this module reuses)."""

from __future__ import annotations

import json
import os
import re
import uuid
from typing import Any

import pytest
from test_server_api import Api, api, server  # noqa: F401 - fixtures, used by name

from jupyter_volume import Dict
from jupyter_volume.server.dict_handlers import DICT_ROUTES

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def dict_name(server: Any) -> str:  # noqa: F811 - the fixture above
    name = f"d-{uuid.uuid4().hex[:10]}"
    Dict.objects.create(name, store=server.store_url)
    return name


def test_list_page_delete_and_clear(api: Api, server: Any, dict_name: str) -> None:  # noqa: F811
    d = Dict.from_name(dict_name, store=server.store_url)
    d.update({f"key-{i:02d}": i for i in range(7)})
    d["long"] = "x" * 1000
    d[("t", 1)] = {"a": [1, 2]}

    code, body = api("GET", "dicts")
    assert code == 200 and dict_name in [x["name"] for x in body["dicts"]]
    entry = next(x for x in body["dicts"] if x["name"] == dict_name)
    assert set(entry) == {"name", "id", "created_at", "created_by"}

    # pages of 4 in key order, chained by "next", cover every entry exactly once
    seen: list[dict[str, Any]] = []
    after = None
    while True:
        params = {"limit": 4, **({"after": after} if after else {})}
        code, page = api("GET", f"dicts/{dict_name}/entries", params=params)
        assert code == 200, page
        assert len(page["entries"]) <= 4
        seen += page["entries"]
        after = page["next"]
        if after is None:
            break
    assert len(seen) == 9 and len({e["id"] for e in seen}) == 9
    by_key = {e["key"]: e for e in seen}
    assert by_key["'key-03'"]["value"] == "3" and by_key["'key-03'"]["type"] == "int"
    assert by_key["('t', 1)"]["value"] == "{'a': [1, 2]}"
    long = by_key["'long'"]
    assert long["value"].endswith("...") and len(long["value"]) == 200 and long["type"] == "str"
    assert all(e["size"] > 0 and e["error"] is None for e in seen)
    assert all(re.match(r"\d{4}-\d\d-\d\dT", e["updated"]) for e in seen)

    gone = by_key["'key-03'"]["id"]
    code, body = api("DELETE", f"dicts/{dict_name}/entries/{gone}")
    assert code == 204
    assert "key-03" not in d and len(d) == 8
    code, body = api("DELETE", f"dicts/{dict_name}/entries/{gone}")
    assert code == 404 and body["error"] == "NotFoundError"

    code, _ = api("DELETE", f"dicts/{dict_name}/entries")
    assert code == 204 and len(d) == 0
    code, page = api("GET", f"dicts/{dict_name}/entries")
    assert (code, page) == (200, {"entries": [], "next": None})


def test_errors(api: Api, dict_name: str) -> None:  # noqa: F811
    code, body = api("GET", "dicts/no-such-dict/entries")
    assert code == 404 and body["error"] == "NotFoundError"
    code, body = api("DELETE", "dicts/no-such-dict/entries")
    assert code == 404
    code, body = api("GET", f"dicts/{dict_name}/entries", params={"limit": 0})
    assert code == 400 and "limit" in body["message"]
    code, body = api("GET", f"dicts/{dict_name}/entries", params={"after": "../x"})
    assert code == 400
    code, body = api("DELETE", f"dicts/{dict_name}/entries/not-an-id")
    assert code == 400 and body["error"] == "InvalidError"
    code, body = api("GET", "dicts/bad%20name/entries")
    assert code == 400 and "invalid Dict name" in body["message"]


def test_every_dict_route_is_authenticated(api: Api, server: Any, dict_name: str) -> None:  # noqa: F811
    d = Dict.from_name(dict_name, store=server.store_url)
    d["k"] = 1
    requests = [
        ("GET", "dicts"),
        ("GET", f"dicts/{dict_name}/entries"),
        ("DELETE", f"dicts/{dict_name}/entries"),
        ("DELETE", f"dicts/{dict_name}/entries/kedm0"),
    ]
    handlers = set()
    for _, route in requests:
        for pattern, handler in DICT_ROUTES:
            if re.fullmatch(pattern, "/" + route):
                handlers.add(handler)
    assert handlers == {h for _, h in DICT_ROUTES}, "a route is missing from this test"
    for method, route in requests:
        for headers in ({}, {"Authorization": "token wrong-token"}):
            r = api.raw(method, route, auth=False, headers=headers)
            assert r.code == 403, (method, route, r.code, r.body)
            assert json.loads(r.body)["error"] == "Forbidden"
    # a browser session without the XSRF token cannot write either
    r = api.raw("GET", "version")
    cookie = "; ".join(c.split(";")[0] for c in r.headers.get_all("Set-Cookie", []))
    assert api.raw("GET", "dicts", auth=False, headers={"Cookie": cookie}).code == 200
    for method, route in requests:
        if method == "DELETE":
            r = api.raw(method, route, auth=False, headers={"Cookie": cookie})
            assert r.code == 403, (method, route, r.code)
    assert d["k"] == 1  # nothing was deleted


def test_entries_whose_repr_fails_are_listed(api: Api, server: Any, dict_name: str) -> None:  # noqa: F811
    class _BadRepr:  # local: pickled by value, so the server process can unpickle it
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    # an int of more digits than the interpreter will print (as a value and as a key)
    # and a value whose __repr__ raises: the page used to fail with a 500 as a whole
    d = Dict.from_name(dict_name, store=server.store_url)
    d["big"] = 10**5000
    d[10**5000] = "big key"
    d["bad"] = _BadRepr()
    d["ok"] = 1
    code, page = api("GET", f"dicts/{dict_name}/entries")
    assert code == 200, page
    by_key = {e["key"]: e for e in page["entries"]}
    assert set(by_key) == {"'big'", "<int of 5001 digits>", "'bad'", "'ok'"}
    assert by_key["'big'"]["value"] == "<int of 5001 digits>"
    assert by_key["'big'"]["type"] == "int" and by_key["'big'"]["error"] is None
    assert by_key["<int of 5001 digits>"]["value"] == "'big key'"
    assert by_key["'bad'"]["value"] == "<a _BadRepr>" and by_key["'ok'"]["value"] == "1"


def test_a_page_never_loads_big_values(local_store: Any) -> None:
    # A page of entries used to read every value whole (up to 100 MiB each, 1,000 per
    # page) into the Jupyter server's memory just to show 200 characters of each; and
    # an object under the entries that is no Dict entry failed the page with a 500.
    from jupyter_volume.dicts import PREVIEW_MAX_BYTES
    from jupyter_volume.server import dict_service
    from jupyter_volume.testing.wrappers import CountingStore

    d = Dict.from_name("big", create_if_missing=True, store=local_store)
    blob = os.urandom(PREVIEW_MAX_BYTES + 1)  # incompressible: stored as big as it is
    d["huge"] = blob
    d["k" * 300] = blob  # a long key: its entry is named by digest, the key inside
    d["small"] = 1
    prefix = f"dicts/{d.object_id}/e/"
    local_store.put(prefix + "kzz", b"not an entry")

    counting = CountingStore(local_store)
    page = dict_service.entries(counting, "big", None, None)
    by_key = {e["key"]: e for e in page["entries"]}
    assert set(by_key) == {"'huge'", repr("k" * 300), "'small'", "?"}
    for key in ("'huge'", repr("k" * 300)):
        row = by_key[key]
        assert row["size"] > PREVIEW_MAX_BYTES and row["error"] is None
        assert row["value"] == f"(not previewed: {row['size']:,} bytes)"
    assert by_key["'small'"]["value"] == "1" and by_key["'small'"]["type"] == "int"
    assert "not a Dict entry" in by_key["?"]["error"]
    big = {prefix + by_key[k]["id"] for k in ("'huge'", repr("k" * 300))}
    whole_reads = {op.key for op in counting.matching(("get", "get_versioned"))}
    assert not whole_reads & big
