"""A client generated from the served spec with openapi-python-client (the most used Python
generator) runs a user's whole flow against the API under gunicorn; the spec is valid."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests
from openapi_spec_validator import validate
from support import PASSWORD

PACKAGE = "stores_api_client"
FILES, BINARY = ("application/x-ndjson", "text/csv"), "application/octet-stream"


def generated_client(spec_url: str, directory: Path):
    """The client package generated from the spec at `spec_url`, imported."""
    spec = directory / "openapi.json"
    spec.write_bytes(requests.get(spec_url, timeout=30).content)
    # Catalogue files are bodies the generator knows as files (File, sent as they are).
    config = directory / "config.json"
    config.write_text(json.dumps({"content_type_overrides": dict.fromkeys(FILES, BINARY)}))
    run = subprocess.run(
        [Path(sys.executable).parent / "openapi-python-client", "generate", "--path", spec,
         "--config", config, "--meta", "none", "--output-path", directory / PACKAGE],
        capture_output=True, text=True, timeout=300,
        # Its post-generation hook formats the code with ruff, ours.
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )  # fmt: skip
    said = run.stdout + run.stderr
    assert run.returncode == 0, said
    assert "warning" not in said.lower(), said  # the spec says everything the generator needs
    sys.path.insert(0, str(directory))
    try:
        return importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(directory))


def test_the_served_spec_is_valid_openapi(live_server):
    validate(requests.get(f"{live_server}/openapi.json", timeout=30).json())


def test_a_generated_client_runs_the_whole_flow(live_server, tmp_path):
    generated_client(f"{live_server}/openapi.json", tmp_path)
    # Imported once generated:
    from stores_api_client import AuthenticatedClient, Client
    from stores_api_client.api.items import (
        get_store_store_id_item,
        post_item,
        put_item_item_id,
    )
    from stores_api_client.api.stores import (
        delete_store_store_id,
        get_store_store_id,
        post_store,
        put_store_store_id,
    )
    from stores_api_client.api.tags import (
        post_item_item_id_tag_tag_id,
        post_store_store_id_tag,
    )
    from stores_api_client.api.users import get_user_me, post_login, post_register
    from stores_api_client.models import (
        Error,
        ItemCreate,
        ItemUpdate,
        Login,
        PlainStore,
        PlainTag,
        UserCreate,
    )

    anonymous = Client(base_url=live_server, raise_on_unexpected_status=True)
    account = UserCreate(username="alice", email="Alice@Example.com", password=PASSWORD)
    registered = post_register.sync(client=anonymous, body=account)
    assert (registered.username, registered.email) == ("alice", "alice@example.com")
    tokens = post_login.sync(client=anonymous, body=Login(username="alice", password=PASSWORD))
    alice = AuthenticatedClient(
        base_url=live_server, token=tokens.access_token, raise_on_unexpected_status=True
    )
    assert get_user_me.sync(client=alice).id == registered.id

    store = post_store.sync(client=alice, body=PlainStore(name="Books"))
    items = [
        post_item.sync(client=alice, body=ItemCreate(name=name, price=9.5, store_id=store.id))
        for name in ("Novel", "Atlas")
    ]
    tag = post_store_store_id_tag.sync(store.id, client=alice, body=PlainTag(name="paper"))
    linked = post_item_item_id_tag_tag_id.sync(items[0].id, tag.id, client=alice)
    assert (linked.item.id, linked.tag.id) == (items[0].id, tag.id)

    read = get_store_store_id.sync(store.id, client=anonymous)
    assert [item.name for item in read.items] == ["Novel", "Atlas"]
    assert [each.name for each in read.tags] == ["paper"]
    assert read.items_has_more is False

    first_page = get_store_store_id_item.sync_detailed(store.id, client=anonymous, page_size=1)
    assert [item.name for item in first_page.parsed] == ["Novel"]
    next_page = parse_qs(urlsplit(requests.utils.parse_header_links(
        first_page.headers["Link"])[0]["url"]).query)  # fmt: skip
    second_page = get_store_store_id_item.sync(
        store.id, client=anonymous, page_size=1, after=int(next_page["after"][0])
    )
    assert [item.name for item in second_page] == ["Atlas"]

    renamed = put_store_store_id.sync(store.id, client=alice, body=PlainStore(name="Old books"))
    assert renamed.name == "Old books"
    changed = put_item_item_id.sync(items[1].id, client=alice, body=ItemUpdate(price=12.25))
    assert (changed.name, changed.price) == ("Atlas", 12.25)

    deleted = delete_store_store_id.sync(store.id, client=alice)
    assert (deleted.deleted.items, deleted.deleted.tags) == (2, 1)
    gone = get_store_store_id.sync(store.id, client=anonymous)
    assert isinstance(gone, Error)
    assert (gone.code, gone.status) == (404, "Not Found")
    assert f"Store {store.id} not found" in gone.message
