"""Every read costs what it returns: nested collections hold their first entries, lists go
page by page with keysets and a Link to the next, page numbers stop where OFFSET gets dear."""

import pytest
from sqlalchemy import insert
from support.api import assert_error, link, new_item, new_store, new_tag

from models import ItemModel

pytestmark = pytest.mark.sqlite_too


def next_link(response) -> str | None:
    """The URL of rel="next" in the Link header, if any."""
    header = response.headers.get("Link")
    if header is None:
        return None
    url, relation = header.split(";")
    assert relation.strip() == 'rel="next"'
    return url.strip().removeprefix("<").removesuffix(">")


def every_page(client, url: str) -> list[list[dict]]:
    pages = []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.get_json()
        pages.append(response.get_json())
        url = next_link(response)
    return pages


@pytest.fixture
def crowded(client) -> dict:
    """A store with 25 items and 15 tags; its first item has 12 tags, its first tag 12 items."""
    store = new_store(client, "Crowded")
    items = [new_item(client, store["id"], f"Item {n}")["id"] for n in range(25)]
    tags = [new_tag(client, store["id"], f"Tag {n}")["id"] for n in range(15)]
    for tag_id in tags[:12]:
        link(client, items[0], tag_id)
    for item_id in items[1:12]:
        link(client, item_id, tags[0])
    return {"store": store["id"], "items": items, "tags": tags}


def test_representations_hold_the_first_ten_of_each_collection(client, crowded):
    store = client.get(f"/store/{crowded['store']}").get_json()
    item = client.get(f"/item/{crowded['items'][0]}").get_json()
    tag = client.get(f"/tag/{crowded['tags'][0]}").get_json()
    listed = client.get("/store").get_json()[0]

    for shown in (store, listed):
        assert [entry["id"] for entry in shown["items"]] == crowded["items"][:10]
        assert [entry["id"] for entry in shown["tags"]] == crowded["tags"][:10]
        assert shown["items_has_more"] is shown["tags_has_more"] is True
        assert shown["items_url"] == f"/store/{crowded['store']}/item"
    assert [entry["id"] for entry in item["tags"]] == crowded["tags"][:10]
    assert item["tags_has_more"] is True
    assert [entry["id"] for entry in tag["items"]] == crowded["items"][:10]
    assert (tag["items_has_more"], tag["items_url"]) == (True, f"/tag/{tag['id']}/item")
    # Ten exactly is not "more".
    other = client.get(f"/item/{crowded['items'][1]}").get_json()
    assert (len(other["tags"]), other["tags_has_more"]) == (1, False)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/store/{store}/item", lambda c: c["items"]),
        ("/store/{store}/tag", lambda c: c["tags"]),
        ("/item/{item}/tag", lambda c: c["tags"][:12]),
        ("/tag/{tag}/item", lambda c: c["items"][:12]),
        ("/item", lambda c: c["items"]),
    ],
)
def test_every_list_is_walked_whole_by_following_its_link_header(client, crowded, path, expected):
    url = path.format(store=crowded["store"], item=crowded["items"][0], tag=crowded["tags"][0])
    pages = every_page(client, f"{url}?page_size=5")
    assert [entry["id"] for page in pages for entry in page] == expected(crowded)
    assert all(len(page) == 5 for page in pages[:-1])


def test_the_next_link_keeps_the_filters_and_leaves_page_for_after(client, crowded):
    first = client.get(f"/item?store_id={crowded['store']}&page=2&page_size=3")
    url = next_link(first)
    assert url.startswith("http://localhost/item?")
    assert "store_id=1" in url
    assert "page_size=3" in url
    assert f"after={crowded['items'][5]}" in url
    assert "page=" not in url.replace("page_size", "")


def test_after_at_the_end_of_a_large_store(client, engine):
    store = new_store(client, "Large")
    with engine.begin() as connection:
        connection.execute(
            insert(ItemModel),
            [{"name": f"Item {n}", "price": 1, "store_id": store["id"]} for n in range(3000)],
        )
    pages = every_page(client, f"/store/{store['id']}/item?page_size=100")
    assert sum(len(page) for page in pages) == 3000
    last_ids = [item["id"] for item in pages[-1]]
    tail = client.get(f"/store/{store['id']}/item?after={last_ids[-6]}&page_size=100")
    assert [item["id"] for item in tail.get_json()] == last_ids[-5:]
    assert "Link" not in tail.headers
    beyond = client.get(f"/store/{store['id']}/item?after={last_ids[-1]}")
    assert (beyond.get_json(), beyond.headers.get("Link")) == ([], None)


@pytest.mark.parametrize(
    ("query", "status"),
    [("page=500&page_size=20", 200), ("page=501&page_size=20", 400),
     ("page=100&page_size=100", 200), ("page=101&page_size=100", 400),
     ("page=10000000000", 400)],
)  # fmt: skip
def test_page_numbers_end_at_ten_thousand_entries_deep(client, query, status):
    response = client.get(f"/item?{query}")
    if status == 200:
        assert (response.status_code, response.get_json()) == (200, [])
    else:
        assert "after=" in assert_error(response, 400)["message"]


def test_with_after_pages_count_from_there(client, crowded):
    second_after_five = client.get(f"/item?after={crowded['items'][4]}&page=2&page_size=3")
    assert [item["id"] for item in second_after_five.get_json()] == crowded["items"][8:11]


def test_lists_of_a_missing_parent_are_404(client):
    for path in ("/store/9/item", "/store/9/tag", "/item/9/tag", "/tag/9/item"):
        assert_error(client.get(path), 404)
