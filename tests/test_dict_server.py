"""The REST routes for Dicts, through a real Jupyter server (the same setup as
``test_server_api.py``, whose server fixture and client this module reuses)."""

from __future__ import annotations

import json
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
