"""Catalogue files in and out: POST /store/<id>/item/import, GET /import/<id> and GET
/store/<id>/item/export, on every database."""

import csv
import io
import os
import sys
import threading

import pytest
from support.api import (
    assert_error,
    change_settings,
    new_item,
    new_store,
    new_tag,
    signed_in,
)
from support.catalogue import CSV, JSONL, imported, json_lines, send_file

from catalogue.importing import GIL_HANDOVER_SECONDS, import_items
from db import db
from priority import LOWEST, NICENESS

pytestmark = [pytest.mark.sqlite_too, pytest.mark.pgbouncer_too]


def items_of(client, store_id: int) -> list[dict]:
    page = client.get(f"/store/{store_id}/item?page_size=100").get_json()
    return [
        {"name": item["name"], "price": item["price"], "description": item["description"],
         "tags": sorted(tag["name"] for tag in item["tags"])}
        for item in page
    ]  # fmt: skip


def read_whole(client, url: str, **headers: str):
    """GET a stream, read to its end and closed, as a server closes what it sent: a stream
    left open would hold its transaction."""
    with client.get(url, headers=headers) as response:
        response.get_data()
    return response


@pytest.mark.postgres_path
def test_a_json_lines_file_imports_items_with_their_tags_found_or_created(app, client):
    store = new_store(client)
    fiction = new_tag(client, store["id"], "fiction")
    body = json_lines(
        {"name": "Novel", "price": 9.995, "tags": ["fiction", "paperback"]},
        {"name": "Atlas", "price": 30, "description": "Maps.", "tags": ["paperback", "paperback"]},
        {"name": "Diary", "price": 0},
    )
    status = imported(app, client, store["id"], body)

    assert status["state"] == "succeeded", status
    assert (status["lines_read"], status["items"], status["tags_created"], status["links"]) == (
        3, 3, 1, 3,
    )  # fmt: skip
    assert status["store_url"] == f"/store/{store['id']}"
    assert status["errors"] == []
    assert status["error_count"] == 0
    assert items_of(client, store["id"]) == [
        {"name": "Novel", "price": 10.0, "description": None, "tags": ["fiction", "paperback"]},
        {"name": "Atlas", "price": 30.0, "description": "Maps.", "tags": ["paperback"]},
        {"name": "Diary", "price": 0.0, "description": None, "tags": []},
    ]
    tags = client.get(f"/store/{store['id']}/tag").get_json()
    assert [tag["name"] for tag in tags] == ["fiction", "paperback"]
    assert tags[0]["id"] == fiction["id"]


@pytest.mark.postgres_path
def test_a_csv_file_imports_the_same_way(app, client):
    store = new_store(client)
    body = (
        b"price,name,tags,description\r\n"
        b'9.99,"Novel, second edition",fiction|a\\|b,"Two\nlines"\r\n'
        b"\r\n"
        b"1,Pen,,\r\n"
    )
    status = imported(app, client, store["id"], body, CSV)
    assert status["state"] == "succeeded", status
    assert items_of(client, store["id"]) == [
        {"name": "Novel, second edition", "price": 9.99, "description": "Two\nlines",
         "tags": ["a|b", "fiction"]},
        {"name": "Pen", "price": 1.0, "description": None, "tags": []},
    ]  # fmt: skip


@pytest.mark.postgres_path
def test_bad_lines_are_named_by_number_and_field_and_nothing_is_imported(app, client, sql):
    store = new_store(client)
    good = {"name": "Novel", "price": 9.99, "tags": ["new"]}
    body = (
        json_lines(good, {"name": "", "price": "9"}, good)
        + b"not json\n"
        + json_lines({"name": "Pen", "price": 1, "store_id": 4})
    )
    status = imported(app, client, store["id"], body)

    assert status["state"] == "failed"
    assert status["error_count"] == 3
    assert status["lines_read"] == 5
    assert [bad["line"] for bad in status["errors"]] == [2, 4, 5]
    assert set(status["errors"][0]["errors"]) == {"name", "price"}
    assert "store_id" in status["errors"][2]["errors"]
    assert status["items"] == 0
    assert sql("SELECT count(*) FROM items") == [(0,)]
    assert sql("SELECT count(*) FROM tags") == [(0,)]


def test_past_a_hundred_bad_lines_they_are_counted_not_listed(app, client):
    store = new_store(client)
    body = json_lines(*({"name": "x", "price": -1} for _ in range(250)))
    status = imported(app, client, store["id"], body)
    assert status["state"] == "failed"
    assert len(status["errors"]) == 100
    assert status["error_count"] == 250
    assert status["errors"][99]["line"] == 100


def test_a_csv_header_that_does_not_name_the_columns_is_line_1(app, client):
    store = new_store(client)
    status = imported(app, client, store["id"], b"title,cost\nNovel,1\n", CSV)
    assert status["state"] == "failed"
    assert status["errors"][0]["line"] == 1
    assert "header" in status["errors"][0]["errors"]


@pytest.mark.parametrize(
    ("body", "media_type", "status"),
    [
        (b'{"name": "a", "price": 1}\n', "application/json", 415),
        (b"", JSONL, 422),
    ],
)
def test_other_media_types_and_empty_bodies_are_refused(client, body, media_type, status):
    store = new_store(client)
    assert_error(send_file(client, store["id"], body, media_type), status)


def test_unknown_and_deleted_stores_are_not_found(client):
    store = new_store(client)
    client.delete(f"/store/{store['id']}")
    for store_id in (store["id"], 999):
        assert_error(send_file(client, store_id, json_lines({"name": "a", "price": 1})), 404)


def test_a_file_past_import_max_bytes_is_413_with_or_without_content_length(
    monkeypatch, app, client, sql
):
    change_settings(monkeypatch, app, import_max_bytes=1000)
    store = new_store(client)
    body = json_lines(*({"name": f"item {n}", "price": 1} for n in range(100)))
    assert_error(send_file(client, store["id"], body), 413)
    # Sent chunked, as a server hands it on: no Content-Length, a stream that ends.
    chunked = client.post(
        f"/store/{store['id']}/item/import", input_stream=io.BytesIO(body), content_type=JSONL,
        environ_overrides={"wsgi.input_terminated": True},
    )  # fmt: skip
    assert_error(chunked, 413)
    assert sql("SELECT count(*) FROM item_imports") == [(0,)]


def test_only_the_owner_or_an_admin_imports_and_sees_the_import(app, client, new_user, bearer):
    owner, stranger = new_user("owner"), new_user("stranger")
    store = new_store(signed_in(app, bearer(owner)))
    body = json_lines({"name": "a", "price": 1})
    assert_error(send_file(client, store["id"], body, headers=bearer(stranger)), 403)
    response = send_file(client, store["id"], body, headers=bearer(owner))
    assert response.status_code == 202
    location = response.headers["Location"]
    assert_error(client.get(location, headers=bearer(stranger)), 404)
    assert client.get(location, headers=bearer(owner)).status_code == 200
    assert client.get(location).status_code == 200  # an admin


def test_an_idempotency_key_sent_again_gets_the_same_import(app, client, sql):
    store = new_store(client)
    body = json_lines({"name": "a", "price": 1})
    key = {"Idempotency-Key": "import-1"}
    first = send_file(client, store["id"], body, headers=key)
    again = send_file(client, store["id"], body, headers=key)
    assert again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == first.get_json()["id"]
    other = send_file(client, store["id"], json_lines({"name": "b", "price": 1}), headers=key)
    assert_error(other, 422)
    # The same bytes as another kind of file are another request.
    as_csv = send_file(client, store["id"], body, CSV, headers=key)
    assert_error(as_csv, 422, "another request")
    assert sql("SELECT count(*) FROM item_imports") == [(1,)]


@pytest.mark.postgres_path
@pytest.mark.parametrize("media_type", [JSONL, CSV])
def test_the_export_is_the_file_the_import_reads(app, client, media_type):
    store = new_store(client)
    novel = new_item(client, store["id"], 'Novel, "new"', 9.5, description="Line\nbreak")
    new_item(client, store["id"], "Pen", 1)
    for name in ("fiction", "a|b\\c"):
        tag = new_tag(client, store["id"], name)
        client.post(f"/item/{novel['id']}/tag/{tag['id']}")

    exported = read_whole(client, f"/store/{store['id']}/item/export", Accept=media_type)
    assert exported.status_code == 200
    assert exported.mimetype == media_type
    assert "attachment" in exported.headers["Content-Disposition"]

    copy = new_store(client, "Copy")
    status = imported(app, client, copy["id"], exported.get_data(), media_type)
    assert status["state"] == "succeeded", status
    assert items_of(client, copy["id"]) == items_of(client, store["id"])


def test_the_export_speaks_json_lines_by_default_and_refuses_other_media_types(client):
    store = new_store(client)
    new_item(client, store["id"])
    url = f"/store/{store['id']}/item/export"
    assert read_whole(client, url).mimetype == JSONL
    assert_error(client.get(url, headers={"Accept": "application/xml"}), 406)


def test_a_deleted_store_is_exported_to_its_owner_until_it_expires(
    app, client, anonymous, new_user, bearer
):
    owner, stranger = new_user("owner"), new_user("stranger")
    as_owner = signed_in(app, bearer(owner))
    store = new_store(as_owner)
    new_item(as_owner, store["id"])
    url = f"/store/{store['id']}/item/export"
    assert read_whole(anonymous, url).status_code == 200
    assert as_owner.delete(f"/store/{store['id']}").status_code == 200

    assert_error(anonymous.get(url), 404)
    assert_error(anonymous.get(url, headers=bearer(stranger)), 404)
    kept = read_whole(as_owner, url)
    assert kept.status_code == 200
    assert b"Novel" in kept.get_data()
    assert read_whole(client, url).status_code == 200  # an admin


def test_an_import_checks_its_lines_at_a_lower_cpu_priority_handing_the_gil_over_sooner(
    app, client
):
    """Reads served beside an import go first, and the import's writing thread gets the GIL
    back soon after each wait on the database (docs/benchmarks.md has the figures)."""
    store = new_store(client)
    switch_interval = sys.getswitchinterval()
    seen = []

    def chunks():
        # The file is read, and its lines checked, in the import's reading thread.
        thread = threading.get_native_id()
        seen.append((os.getpriority(os.PRIO_PROCESS, thread), sys.getswitchinterval()))
        yield b'{"name": "Novel", "price": 9.99}\n'

    with app.app_context():
        counts = import_items(store["id"], chunks(), JSONL)
        db.session.rollback()
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert counts.items == 1
    assert seen == [(min(own + NICENESS, LOWEST), min(switch_interval, GIL_HANDOVER_SECONDS))]
    assert sys.getswitchinterval() == switch_interval


def test_lines_no_item_can_hold_are_line_errors_with_their_numbers(app, client, sql):
    store = new_store(client)
    body = (
        b'{"name": "fine", "price": 1}\n'
        b'{"name": "bad\\ud800", "price": 1}\n'
        + b"[" * 100_000 + b"\n"
        + b'{"name": "nul\\u0000", "price": 1}\n'
        + b'{"name": "huge", "price": ' + b"9" * 5_000 + b"}\n"
        + b'{"name": "nan", "price": NaN}\n'
        + b'{"name": "far", "price": 1e400}\n'
        + b'{"name": "tag", "price": 1, "tags": ["\\udfff"]}\n'
        # A lone surrogate in UTF-8's form, with no escape: no UTF-8 at all.
        + b'{"name": "raw\xed\xa0\x80", "price": 1}\n'
    )  # fmt: skip
    status = imported(app, client, store["id"], body)
    assert status["state"] == "failed", status
    assert [bad["line"] for bad in status["errors"]] == [2, 3, 4, 5, 6, 7, 8, 9]
    assert status["errors"][3]["errors"] == {"line": ["Integers have at most 4,300 digits."]}
    assert sql("SELECT count(*) FROM items") == [(0,)]

    # Prices as JSON writes numbers, in ASCII digits: not what int() and float() take too.
    csv_body = (
        "name,price\nfine,1\nnul\x00,1\nhuge," + "9" * 5_000 + "\nnan,nan\nfar,1e400\n"
        "underscored,1_0\nspaced, 1\nindic,\u0661\u0662\ninfinite,inf\n"
    )
    status = imported(app, client, store["id"], csv_body.encode(), CSV)
    assert status["state"] == "failed", status
    assert [bad["line"] for bad in status["errors"]] == [3, 4, 5, 6, 7, 8, 9, 10]


def test_a_csv_file_saved_by_excel_with_a_byte_order_mark_is_imported(app, client):
    store = new_store(client)
    status = imported(app, client, store["id"], "\ufeffname,price\nNovel,9.5\n".encode(), CSV)
    assert status["state"] == "succeeded", status
    assert [item["name"] for item in items_of(client, store["id"])] == ["Novel"]


# Every character a spreadsheet starts a formula with, after none, one or two quotes; and
# quotes before other text, which are left as they are.
RISKY_NAMES = [
    quotes + start + "SUM(1,2)" for quotes in ("", "'", "''") for start in "=+-@\t\r"
] + ["'Til death", "''", "'", "plain", '=HYPERLINK("http://x","y")', "@cmd|' /C calc'!A0"]


@pytest.mark.parametrize("media_type", [JSONL, CSV])
def test_an_export_opens_safely_in_a_spreadsheet_and_imports_as_it_was(app, client, media_type):
    store = new_store(client)
    for number, name in enumerate(RISKY_NAMES):
        item = new_item(client, store["id"], name, number, description=name)
        tag = new_tag(client, store["id"], name)
        client.post(f"/item/{item['id']}/tag/{tag['id']}")

    exported = read_whole(client, f"/store/{store['id']}/item/export", Accept=media_type)
    if media_type == CSV:
        rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True), newline="")))
        cells = [row[column] for row in rows for column in ("name", "description", "tags")]
        assert len(cells) == 3 * len(RISKY_NAMES)
        assert not [cell for cell in cells if cell[:1] in "=+-@\t\r"]
        assert rows[0]["name"] == "'=SUM(1,2)"
    copy = new_store(client, "Copy")
    status = imported(app, client, copy["id"], exported.get_data(), media_type)
    assert status["state"] == "succeeded", status
    assert items_of(client, copy["id"]) == items_of(client, store["id"])
    assert sorted(item["name"] for item in items_of(client, copy["id"])) == sorted(RISKY_NAMES)
