"""The line readers of catalogue files (catalogue.lines), fuzzed: whatever a file holds,
each of its lines ends as an item or as a bad line with its number, never as a crash."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalogue.lines import CSV, JSON_LINES, BadLine, items_of, unescaped

FUZZED = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Pieces that have broken a reader, or might: lone surrogates, NUL, deep nesting (past the
# recursion limit, and no deeper: cut into pieces of a few bytes, 100,000 took minutes), numbers
# Python or the database refuses, invalid UTF-8, odd CSV quoting, a byte-order mark.
AWKWARD = st.sampled_from([
    b'"\\ud800"', b'"\\udfff\\ud800"', b"\\u0000", b"\x00", b"[" * 5_000, b"{" * 5_000,
    b"9" * 5_000, b"NaN", b"-Infinity", b"1e400", b"\xff\xfe", b"\xed\xa0\x80", b'"', b'""',
    b"\r", b"\n", b",", b"|", b"\\", b"'", b"=", b"\xef\xbb\xbf", b'{"name": ', b'"price": ',
    b"name,price\n", b"}", b"]", b"1",
])  # fmt: skip
PIECES = st.one_of(AWKWARD, st.binary(max_size=40))
# Shaped like items, so that the awkward pieces reach the fields, and not only the parser.
ITEM_LINES = st.tuples(PIECES, st.just(b"1") | PIECES).map(
    lambda pair: b'{"name": %s, "price": %s}\n' % pair
)
FILES = st.lists(st.one_of(ITEM_LINES, PIECES), max_size=12).map(b"".join)
# Any character, lone surrogates often (st.characters() leaves them out).
ANY_TEXT = st.text(st.characters() | st.characters(categories=["Cs"]))
SPLITS = st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=4)


def chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    """`data` in chunks of the given sizes, cycled: lines cross the chunks' seams."""
    chunks, start, turn = [], 0, 0
    while start < len(data):
        size = sizes[turn % len(sizes)]
        chunks.append(data[start : start + size])
        start, turn = start + size, turn + 1
    return chunks


def read_all(data: bytes, media_type: str, sizes: list[int]) -> list:
    entries = list(items_of(chunked(data, sizes), media_type))
    lines = data.count(b"\n") + 1
    numbers = []
    for entry in entries:
        if isinstance(entry, BadLine):
            numbers.append(entry.line)
            assert entry.errors
        else:
            number, item = entry
            numbers.append(number)
            # What the database is given: text it can encode, without NUL.
            for text in [item["name"], item.get("description") or "", *item["tags"]]:
                text.encode()
                assert "\x00" not in text
        assert 1 <= numbers[-1] <= lines
    assert numbers == sorted(numbers)
    return entries


@FUZZED
@given(FILES, SPLITS)
def test_any_json_lines_file_reads_as_items_or_numbered_bad_lines(data, sizes):
    read_all(data, JSON_LINES, sizes)


@FUZZED
@given(FILES, SPLITS)
def test_any_csv_file_reads_as_items_or_numbered_bad_lines(data, sizes):
    read_all(b"name,price,description,tags\n" + data, CSV, sizes)


@FUZZED
@given(st.lists(ANY_TEXT, min_size=4, max_size=4), SPLITS)
def test_any_csv_row_of_text_reads_as_an_item_or_a_bad_line(cells, sizes):
    row = ",".join('"' + cell.replace('"', '""') + '"' for cell in cells)
    data = ("name,price,description,tags\n" + row + "\n").encode(errors="surrogatepass")
    read_all(data, CSV, sizes)


@FUZZED
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
    lambda inner: st.lists(inner) | st.dictionaries(ANY_TEXT, inner), max_leaves=20,
))  # fmt: skip
def test_any_json_value_on_a_line_reads_as_an_item_or_a_bad_line(value):
    line = json.dumps({"name": value, "price": 1, "tags": [value]}).encode() + b"\n"
    read_all(line + json.dumps(value).encode(), JSON_LINES, [7])


def bad_lines(data: bytes, media_type: str) -> dict[int, dict]:
    return {
        entry.line: entry.errors
        for entry in items_of([data], media_type)
        if isinstance(entry, BadLine)
    }


def test_lone_surrogates_and_deep_nesting_are_their_lines_errors():
    data = (
        b'{"name": "fine", "price": 1}\n'
        b'{"name": "bad\\ud800", "price": 1}\n'
        + b"[" * 100_000 + b"\n"
        + b'{"name": "tag", "price": 1, "tags": ["\\udfff"]}\n'
        + b'{"name": "pair \\ud83d\\ude00", "price": 1}\n'
    )  # fmt: skip
    assert bad_lines(data, JSON_LINES) == {
        2: {"line": ["A lone surrogate, which is not text."]},
        3: {"line": ["JSON nested too deeply."]},
        4: {"line": ["A lone surrogate, which is not text."]},
    }


def test_a_csv_file_with_a_byte_order_mark_reads_its_header():
    entries = list(items_of(["\ufeffname,price\nNovel,9.5\n".encode()], CSV))
    assert [entry[1]["name"] for entry in entries] == ["Novel"]


@given(st.text())
def test_only_a_quote_the_export_could_have_added_is_taken_away(text):
    for start in "=+-@\t\r":
        assert unescaped("'" + start + text) == start + text
        assert unescaped("''" + start + text) == "'" + start + text
    if text.lstrip("'")[:1] not in set("=+-@\t\r"):
        assert unescaped(text) == text
