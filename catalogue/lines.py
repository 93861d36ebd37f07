"""A catalogue file, line by line: JSON Lines or CSV, read from chunks of bytes (a request
body, an import's stored chunks, a file) in constant memory, each line checked by
ItemImportSchema, the rules of POST /item.

CSV has a header row naming its columns (name and price, and description and tags if
given); tags are separated by "|", and a "|" or "\\" inside a tag's name is preceded by "\\".
An empty description is none (CSV cannot tell them apart).
"""

import csv
import json
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass

from marshmallow import ValidationError

from models.fields import ITEM_FIELDS, file_fields, imported_fields
from schemas import ItemImportSchema

JSON_LINES = "application/x-ndjson"
CSV = "text/csv"
MEDIA_TYPES = (JSON_LINES, CSV)
# An item's fields as a file carries them, then its tags; an import reads those clients write.
CSV_COLUMNS = (*(field.name for field in file_fields(ITEM_FIELDS)), "tags")
IMPORTED = imported_fields(ITEM_FIELDS)
# What an exported line holds that an import leaves to the database (its times).
SET_BY_DATABASE = frozenset(field.name for field in file_fields(ITEM_FIELDS)) - {
    field.name for field in IMPORTED
}
REQUIRED_CSV_COLUMNS = {"name", "price"}
# Lines checked at once: marshmallow checks a list faster than its lines one by one.
CHECKED_TOGETHER = 1_000

ITEM_LINE = ItemImportSchema(many=True)
# What a spreadsheet reads as the start of a formula in a cell (OWASP, "CSV Injection").
FORMULA_STARTS = frozenset("=+-@\t\r")
MAX_DIGITS = sys.get_int_max_str_digits()
JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
# Within a CSV field of tags: an escaped character, or a separator.
TAG_TOKEN = re.compile(r"\\(.)|\|", re.DOTALL)
# No item's line comes near this (a description of 10,000 characters, 100 tags); a longer
# one is refused without being held whole.
MAX_LINE_BYTES = 256 * 1024


TOO_LONG = f"Longer than {MAX_LINE_BYTES:,} bytes: no item is."


@dataclass(frozen=True)
class BadLine:
    line: int
    errors: dict

    def as_dict(self) -> dict:
        return {"line": self.line, "errors": self.errors}


def lines_of(chunks: Iterable[bytes]) -> Iterator[bytes | None]:
    """The lines of `chunks` read in turn, each with its newline; None in place of a line
    longer than MAX_LINE_BYTES, which is never held whole.

    Hand-written: io reads lines from files, and holds a line whatever its length."""
    pending, too_long = b"", False
    for chunk in chunks:
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            yield None if too_long or len(line) > MAX_LINE_BYTES else line + b"\n"
            too_long = False
        if len(pending) > MAX_LINE_BYTES:
            pending, too_long = b"", True
    if pending or too_long:
        yield None if too_long else pending


def items_of(chunks: Iterable[bytes], media_type: str) -> Iterator[tuple[int, dict] | BadLine]:
    """(line number, item as ItemImportSchema loads it) for each item of the file, or a
    BadLine saying what is wrong with a line (the header's, in CSV, is line 1)."""
    raw = json_lines(chunks) if media_type == JSON_LINES else csv_lines(chunks)
    batch: list[tuple[int, object]] = []
    for parsed in raw:
        if isinstance(parsed, BadLine):
            yield from checked(batch)
            batch = []
            yield parsed
            continue
        batch.append(parsed)
        if len(batch) == CHECKED_TOGETHER:
            yield from checked(batch)
            batch = []
    yield from checked(batch)


def checked(batch: list[tuple[int, object]]) -> Iterator[tuple[int, dict] | BadLine]:
    if not batch:
        return
    try:
        loaded = ITEM_LINE.load([as_imported(data) for _, data in batch])
    except ValidationError as error:
        for index, (line, data) in enumerate(batch):
            if index in error.messages:
                yield BadLine(line, error.messages[index])
            else:
                yield line, ItemImportSchema().load(as_imported(data))
        return
    yield from ((line, item) for (line, _), item in zip(batch, loaded, strict=True))


def as_imported(data: object) -> object:
    """An exported line as the import takes it: what the database sets left out."""
    if isinstance(data, dict):
        return {name: value for name, value in data.items() if name not in SET_BY_DATABASE}
    return data


def json_lines(chunks: Iterable[bytes]) -> Iterator[tuple[int, object] | BadLine]:
    for number, line in enumerate(lines_of(chunks), 1):
        if line is None:
            yield BadLine(number, {"line": [TOO_LONG]})
            continue
        if line.isspace() or not line:
            continue
        try:
            # Decoded first: json.loads() would pass a lone surrogate's UTF-8 bytes through.
            data = json.loads(line.decode("utf-8-sig"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            yield BadLine(number, {"line": ["Not a JSON object in UTF-8."]})
        except ValueError:  # an integer past what int() converts
            yield BadLine(number, {"line": [f"Integers have at most {MAX_DIGITS:,} digits."]})
        except RecursionError:
            yield BadLine(number, {"line": ["JSON nested too deeply."]})
        else:
            # Only a \u escape spells a lone surrogate ("\ud800"): no text, and nothing a
            # database driver can encode.
            if b"\\u" in line and not is_text(data):
                yield BadLine(number, {"line": ["A lone surrogate, which is not text."]})
            else:
                yield number, data


def is_text(data: object) -> bool:
    """Whether every string in `data` (parsed JSON, not nested too deeply) is Unicode text."""
    try:
        json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


def csv_lines(chunks: Iterable[bytes]) -> Iterator[tuple[int, object] | BadLine]:
    undecodable: list[int] = []
    reader = csv.reader(decoded(lines_of(chunks), undecodable), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return
        if problem := header_problem(header):
            yield BadLine(1, {"header": [problem]})
            return
        line = reader.line_num + 1
        for row in reader:
            if undecodable:
                yield BadLine(*undecodable.pop())
            elif len(row) != len(header) and row:
                yield BadLine(line, {"line": [f"{len(row)} fields, not {len(header)}."]})
            elif row:
                yield line, from_csv(dict(zip(header, row, strict=True)))
            line = reader.line_num + 1
    except csv.Error as error:
        yield BadLine(reader.line_num, {"line": [f"Not CSV: {error}."]})


def decoded(lines: Iterable[bytes | None], undecodable: list[tuple]) -> Iterator[str]:
    """The lines as text for csv; an empty line in place of one that is too long or not
    UTF-8, whose number and error go to `undecodable`."""
    for number, line in enumerate(lines, 1):
        try:
            if line is None:
                undecodable.append((number, {"line": [TOO_LONG]}))
                yield "\n"
            else:
                # Excel's "CSV UTF-8" begins with a byte-order mark.
                yield line.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            undecodable.append((number, {"line": ["Not UTF-8."]}))
            yield "\n"


def header_problem(header: list[str]) -> str | None:
    unknown = [column for column in header if column not in CSV_COLUMNS]
    missing = REQUIRED_CSV_COLUMNS - set(header)
    if unknown or missing or len(set(header)) != len(header):
        return (
            f"The header row names the columns, each once: name and price, and description "
            f"and tags if you like (got {','.join(header)!r})."
        )
    return None


def from_csv(row: dict[str, str]) -> dict:
    """A CSV row as the JSON line of the same item: a number a number, tags a list; an empty
    cell is no value (but for required columns, which the schema then checks)."""
    item: dict = {}
    for field in IMPORTED:
        cell = row.get(field.name, "")
        if cell or field.name in REQUIRED_CSV_COLUMNS:
            item[field.name] = csv_number(cell) if field.kind == "number" else unescaped(cell)
    if row.get("tags"):
        item["tags"] = split_tags(unescaped(row["tags"]))
    return item


def unescaped(cell: str) -> str:
    """The text of a CSV cell, without the quote the export puts before a text that starts
    with a formula's character, after any quotes (catalogue.exporting.ESCAPED): a cell that
    starts with quotes and then such a character lost one quote; any other is as it was
    ("'Til death")."""
    if cell[:1] == "'" and cell.lstrip("'")[:1] in FORMULA_STARTS:
        return cell[1:]
    return cell


def csv_number(text: str) -> float | str:
    """A price written as JSON writes numbers, in ASCII digits (int() and float() would take
    "1_0", " 1" and other scripts' digits too); anything else is left as text, for the
    schema's Price to say what it wants."""
    if JSON_NUMBER.fullmatch(text):
        with suppress(ValueError):  # past Python's 4,300 digits
            return json.loads(text)
    return text


def split_tags(text: str) -> list[str]:
    names, name, start = [], [], 0
    for token in TAG_TOKEN.finditer(text):
        name.append(text[start : token.start()])
        if token.group(1) is None:
            names.append("".join(name))
            name = []
        else:
            name.append(token.group(1))
        start = token.end()
    name.append(text[start:])
    return [*names, "".join(name)]
