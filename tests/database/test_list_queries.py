"""No query string makes a list fail, and the Link to its next page carries only the list's
own validated arguments: generated query strings, on every list."""

from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.api import assert_error, link, new_item, new_store, new_tag

pytestmark = pytest.mark.sqlite_too

# Each list, and the query parameters it takes.
PAGES = ("page_size", "after", "page")
LISTS = {
    "/store": PAGES,
    "/item": (*PAGES, "store_id"),
    "/store/1/item": PAGES,
    "/store/1/tag": PAGES,
    "/tag/1/item": PAGES,
    "/item/1/tag": PAGES,
}
# Names that url_for or Flask would take as their own, and the lists' own names.
NAMES = st.sampled_from(
    ["page_size", "after", "page", "store_id", "endpoint", "_external", "_anchor", "_scheme",
     "_method", "values", "item_id", "tag_id"]
) | st.text(max_size=12)  # fmt: skip
VALUES = st.sampled_from(["1", "2", "0", "-1", "x", "", "1e3", "2147483648"]) | st.text(max_size=12)
# Mostly the lists' own parameters, so that pages and their Links come; then anything.
OWN = st.tuples(st.sampled_from(["page_size", "after", "page", "store_id"]), VALUES)
QUERIES = st.tuples(st.lists(OWN, max_size=3), st.lists(st.tuples(NAMES, VALUES), max_size=2))


@pytest.fixture
def three_of_each(client) -> None:
    store = new_store(client)
    new_store(client, "Empty")
    items = [new_item(client, store["id"], f"item {n}") for n in range(3)]
    for tag in [new_tag(client, store["id"], f"tag {n}") for n in range(3)]:
        for item in items:
            link(client, item["id"], tag["id"])


def links_within_the_contract(client, path: str, query: list[tuple[str, str]]) -> bool:
    """Whether the list answered with a Link, after checking the answer."""
    response = client.get(f"{path}?{urlencode(query)}")
    assert response.status_code < 500, (path, query)
    if response.status_code != 200:
        assert_error(response, response.status_code)
        return False
    if "Link" not in response.headers:
        return False
    next_page = urlsplit(response.headers["Link"].split(">")[0].removeprefix("<"))
    assert (next_page.path, next_page.fragment) == (path, "")
    arguments = parse_qsl(next_page.query, keep_blank_values=True)
    names = [name for name, _ in arguments]
    assert len(names) == len(set(names)), arguments
    assert set(names) <= set(LISTS[path]), arguments
    assert all(value.isdigit() for _, value in arguments), arguments
    assert client.get(f"{next_page.path}?{next_page.query}").status_code == 200
    return True


@pytest.mark.parametrize("path", list(LISTS))
def test_generated_query_strings_never_fail_a_list_nor_leak_into_its_link(
    client, three_of_each, path
):
    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(query=QUERIES)
    def check(query: tuple[list, list]) -> None:
        linked.append(links_within_the_contract(client, path, query[0] + query[1]))

    linked: list[bool] = []
    check()
    assert any(linked)  # the generated queries reached next pages too


@pytest.mark.parametrize(
    ("query", "unknown"),
    [("store_id=2&page_size=1", "store_id"), ("page_size=1&endpoint=x", "endpoint"),
     ("page_size=1&_external=0", "_external"), ("page_size=1&_anchor=x", "_anchor"),
     ("page_size=1&_scheme=ftp", "_scheme")],
)  # fmt: skip
def test_the_query_strings_that_made_lists_fail(client, three_of_each, query, unknown):
    """Each became a url_for keyword: a 500, or a #fragment in the Link."""
    body = assert_error(client.get(f"/store/1/item?{query}"), 422)
    assert list(body["errors"]["query"]) == [unknown]
