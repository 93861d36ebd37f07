"""The spec is the contract users read in Swagger UI: it must say every answer."""

import pytest


@pytest.fixture
def spec(client) -> dict:
    return client.get("/openapi.json").get_json()


def resolved(spec: dict, entry: dict) -> dict:
    """`entry`, or what its $ref names in the spec's components."""
    if "$ref" not in entry:
        return entry
    _, section, name = entry["$ref"].removeprefix("#/").split("/")
    return spec["components"][section][name]


def parameters_of(spec: dict, operation: dict) -> dict[str, dict]:
    return {p["name"]: p for p in (resolved(spec, p) for p in operation.get("parameters", []))}


def operations(spec: dict):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                yield f"{method.upper()} {path}", operation


def test_every_operation_has_a_summary_tags_and_a_default_error(spec):
    for name, operation in operations(spec):
        assert operation.get("summary"), name
        assert operation.get("tags"), name
        assert "default" in operation["responses"], name


def test_every_request_body_field_has_an_example_for_swagger_ui(spec):
    for name, operation in operations(spec):
        if "requestBody" not in operation:
            continue
        content = operation["requestBody"]["content"]
        if "application/json" not in content:  # a file: its example is the whole body
            assert all(each["example"] for each in content.values()), name
            continue
        reference = content["application/json"]["schema"]["$ref"]
        schema = spec["components"]["schemas"][reference.rsplit("/", 1)[1]]
        for field, definition in schema["properties"].items():
            if not definition.get("readOnly"):
                assert "example" in definition, f"{name}: {field}"


def test_catalogue_files_are_documented_with_their_media_types_and_errors(spec):
    media_types = {"application/x-ndjson", "text/csv"}
    imports = spec["paths"]["/store/{store_id}/item/import"]["post"]
    assert set(imports["requestBody"]["content"]) == media_types
    assert {"202", "401", "403", "404", "413", "415", "422"} <= set(imports["responses"])
    assert "Location" in imports["responses"]["202"]["headers"]
    exports = spec["paths"]["/store/{store_id}/item/export"]["get"]
    assert set(exports["responses"]["200"]["content"]) == media_types
    assert {"404", "406"} <= set(exports["responses"])


def test_error_responses_are_documented(spec):
    documented = {name: set(op["responses"]) for name, op in operations(spec)}
    assert {"404", "409", "422", "400"} <= documented["PUT /store/{store_id}"]
    assert {"409", "422", "400"} <= documented["POST /store"]
    assert {"422", "400"} <= documented["POST /item"]
    assert {"404", "409"} <= documented["DELETE /tag/{tag_id}"]
    assert {"404", "409"} <= documented["POST /item/{item_id}/tag/{tag_id}"]
    assert "404" in documented["DELETE /item/{item_id}/tag/{tag_id}"]
    for name, responses in documented.items():
        if "{" in name:
            assert "404" in responses, name


def test_path_ids_are_bounded_like_the_database(spec):
    parameter = spec["paths"]["/store/{store_id}"]["parameters"][0]
    assert parameter["schema"] == {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}


LISTS = [
    "/store", "/item", "/store/{store_id}/item", "/store/{store_id}/tag", "/tag/{tag_id}/item",
    "/item/{item_id}/tag",
]  # fmt: skip


@pytest.mark.parametrize("path", LISTS)
def test_lists_declare_their_pagination(spec, path):
    operation = spec["paths"][path]["get"]
    parameters = parameters_of(spec, operation)
    assert {"page", "page_size", "after"} <= set(parameters)
    assert "after" in parameters["page"]["description"]  # where page numbers end
    assert "Link" in operation["responses"]["200"]["headers"]
    assert "after" in operation["responses"]["400"]["description"]
    # Keyset pages have no totals: nothing of Flask-Smorest's X-Pagination is left.
    assert "X-Pagination" not in operation["responses"]["200"]["headers"]
    assert "PaginationMetadata" not in spec["components"]["schemas"]


@pytest.mark.parametrize(
    ("schema", "collections"),
    [("Store", ["items", "tags"]), ("Item", ["tags"]), ("Tag", ["items"])],
)
def test_nested_collections_document_their_bound(spec, schema, collections):
    properties = spec["components"]["schemas"][schema]["properties"]
    for name in collections:
        assert "first 10" in properties[name]["description"]
        assert properties[f"{name}_has_more"]["type"] == "boolean"
        assert properties[f"{name}_url"]["description"]


def test_the_spec_says_which_operations_need_which_token(spec):
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    public = {"POST /register", "POST /login"}
    private_reads = {
        "GET /user/me", "GET /store/deleted", "GET /import/{import_id}", "GET /events",
        "GET /events/stream",
    } | {
        f"GET {path}"
        for path in ("/webhooks", "/webhooks/{webhook_id}", "/webhooks/{webhook_id}/deliveries")
    }  # fmt: skip
    for name, operation in operations(spec):
        if (name.startswith("GET ") and name not in private_reads) or name in public:
            assert "security" not in operation, name
        else:
            assert operation["security"] == [{"bearerAuth": []}], name
            assert "401" in operation["responses"], name
    documented = {name: set(op["responses"]) for name, op in operations(spec)}
    assert "403" in documented["DELETE /user/{user_id}"]
    for path, method in (
        ("/store/{store_id}", "delete"),
        ("/store/{store_id}/restore", "post"),
        ("/store/{store_id}/purge", "post"),
    ):
        assert "fresh" in spec["paths"][path][method]["responses"]["401"]["description"]
    assert "403" in documented["POST /store/{store_id}/purge"]  # admins only


OWNERS_WRITES = [
    "PUT /store/{store_id}", "DELETE /store/{store_id}", "POST /item", "PUT /item/{item_id}",
    "DELETE /item/{item_id}", "POST /store/{store_id}/tag", "DELETE /tag/{tag_id}",
    "POST /item/{item_id}/tag/{tag_id}", "DELETE /item/{item_id}/tag/{tag_id}",
    "POST /store/{store_id}/restore", "POST /store/{store_id}/item/import",
]  # fmt: skip


def test_every_write_in_a_store_documents_the_owner_rule(spec):
    # Every write on stores, items and tags but making a store of one's own: a new one
    # that does not go through blp.write(owner=...) (which documents and enforces the rule) fails.
    writes = {
        name: operation
        for name, operation in operations(spec)
        if not name.startswith("GET ") and name.split()[1].startswith(("/store", "/item", "/tag"))
    }
    # Making a store of one's own, and purging any (admins only).
    assert sorted(writes) == sorted([*OWNERS_WRITES, "POST /store", "POST /store/{store_id}/purge"])
    for name in OWNERS_WRITES:
        operation = writes[name]
        assert "owner" in operation["responses"]["403"]["description"], name
        assert "owner or an admin" in operation["summary"], name  # shown by Swagger UI


@pytest.mark.parametrize("path", ["/login", "/register"])
def test_throttled_operations_document_their_refusals(spec, path):
    responses = spec["paths"][path]["post"]["responses"]
    assert {"422", "429"} <= set(responses)
    assert "Retry-After" in responses["429"]["headers"]


def test_every_error_response_declares_the_error_shape(spec):
    for name, operation in operations(spec):
        for status, response in operation["responses"].items():
            if status == "default" or int(status) < 400:
                continue
            if "$ref" in response:
                response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, f"{name} {status}"


KEYED_POSTS = [
    "/store", "/item", "/store/{store_id}/tag", "/item/{item_id}/tag/{tag_id}", "/register",
    "/store/{store_id}/restore", "/store/{store_id}/purge", "/store/{store_id}/item/import",
    "/webhooks",
]  # fmt: skip


@pytest.mark.parametrize("path", KEYED_POSTS)
def test_creating_and_changing_posts_take_an_idempotency_key(spec, path):
    operation = spec["paths"][path]["post"]
    key = parameters_of(spec, operation)["Idempotency-Key"]
    assert key["in"] == "header"
    assert key["schema"]["maxLength"] == 255
    responses = operation["responses"]
    [success] = [status for status in responses if status.startswith("2")]
    assert "Idempotent-Replayed" in responses[success]["headers"]
    assert "Retry-After" in responses["409"]["headers"]
    assert "running" in responses["409"]["description"]
    assert "another request" in responses["422"]["description"]
    assert "printable" in responses["400"]["description"]


def test_only_those_posts_take_one(spec):
    keyed = {
        path
        for path, item in spec["paths"].items()
        if "Idempotency-Key" in parameters_of(spec, item.get("post", {}))
    }
    assert keyed == set(KEYED_POSTS)


SINGLE_RESOURCES = ["/store/{store_id}", "/item/{item_id}", "/tag/{tag_id}", "/user/me"]


@pytest.mark.parametrize("path", SINGLE_RESOURCES)
def test_single_resources_are_tagged_and_conditional(spec, path):
    operation = spec["paths"][path]["get"]
    assert "If-None-Match" in parameters_of(spec, operation)
    assert "ETag" in operation["responses"]["200"]["headers"]
    assert "304" in operation["responses"]
    for method in ("put", "delete"):
        if method not in spec["paths"][path]:
            continue
        changing = spec["paths"][path][method]
        if_match = parameters_of(spec, changing)["If-Match"]
        assert not if_match.get("required")
        assert "ETag" in changing["responses"]["412"]["headers"]
        assert "REQUIRE_IF_MATCH" in changing["responses"]["428"]["description"]


def test_the_webhooks_deliveries_are_documented_as_callbacks(spec):
    [callback] = spec["paths"]["/webhooks"]["post"]["callbacks"]["event"].values()
    delivery = callback["post"]
    schema = delivery["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/Event"}
    headers = {each["name"] for each in delivery["parameters"] if each["in"] == "header"}
    assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}


def test_the_stream_declares_the_header_it_resumes_from(spec):
    """Last-Event-ID is how EventSource resumes: a client generated from the spec can send it."""
    stream = spec["paths"]["/events/stream"]["get"]
    (header,) = [param for param in stream["parameters"] if param["in"] == "header"]
    assert header["name"] == "Last-Event-ID"
    assert header["schema"]["pattern"]
    assert "400" in stream["responses"]
