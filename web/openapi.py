"""What the OpenAPI spec says beyond what Flask-Smorest's decorators write: headers,
conditional-request parameters, links between operations, an operation's error answers."""

from apispec import BasePlugin
from apispec.ext.marshmallow import MarshmallowPlugin, resolver
from flask_smorest.pagination import PaginationMetadataSchema

# The security scheme that the Api declares in the spec: a JWT in the Authorization header.
BEARER_AUTH = "bearerAuth"

RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "schema": {"type": "integer"},
    }
}
LOCATION_HEADER = {
    "Location": {"description": "Where the new resource is", "schema": {"type": "string"}}
}
ETAG_HEADER = {
    "ETag": {
        "description": "The ETag of the resource as it is now (what If-Match must name)",
        "schema": {"type": "string"},
    }
}

# Ours, not Flask-Smorest's IF_MATCH (required there; here only with REQUIRE_IF_MATCH=true).
IF_NONE_MATCH, IF_MATCH = "If-None-Match", "If-Match"
CONDITIONAL_PARAMETERS = {
    IF_NONE_MATCH: "The ETag of your copy: if it is still current, the answer is 304 with no body",
    IF_MATCH: "The ETag of the resource as you read it: if it changed since, nothing is changed "
    "and the answer is 412 (required with REQUIRE_IF_MATCH=true)",
}


class ConditionalRequestsPlugin(BasePlugin):
    """Gives each operation that documents a 304 the If-None-Match parameter, and each one
    that documents a 412 the If-Match parameter: through apispec's plugin interface, since a
    decorator's parameters would replace those of the operation's query schema."""

    def init_spec(self, spec) -> None:
        super().init_spec(spec)
        for name, description in CONDITIONAL_PARAMETERS.items():
            spec.components.parameter(
                name, "header", {"description": description, "schema": {"type": "string"}}
            )

    def operation_helper(self, path=None, operations=None, **kwargs) -> None:
        for operation in (operations or {}).values():
            responses = {str(status) for status in operation.get("responses", {})}
            for status, name in (("304", IF_NONE_MATCH), ("412", IF_MATCH)):
                if status in responses:
                    operation.setdefault("parameters", []).append(name)


def schema_name(schema) -> str | None:
    # Lists page with keysets and a Link header (web/pagination.py): Flask-Smorest's
    # X-Pagination metadata is inlined where it is declared, never referenced, so it stays
    # out of the spec.
    if schema is PaginationMetadataSchema or isinstance(schema, PaginationMetadataSchema):
        return None
    return resolver(schema)


def spec_kwargs() -> dict:
    """Flask-Smorest's documented spec_kwargs for one Api: plugins are bound to one spec."""
    return {
        "marshmallow_plugin": MarshmallowPlugin(schema_name_resolver=schema_name),
        "extra_plugins": [ConditionalRequestsPlugin()],
    }


def link(method: str, path: str, **parameters: str) -> dict:
    """A link to `method path`, each parameter taken from the named field of the response."""
    reference = path.replace("~", "~0").replace("/", "~1")
    return {
        "operationRef": f"#/paths/{reference}/{method}",
        "parameters": {name: f"$response.body#/{field}" for name, field in parameters.items()},
    }


ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


class Said(dict):
    """The error answers of one operation, by status, outermost piece first: one status with
    several causes (a 409 for a taken name or a running request) says each."""

    def __call__(self, status: int, description: str, headers: dict | None = None) -> None:
        descriptions, merged = self.get(status, ("", {}))
        self[status] = (
            f"{descriptions}; or {description}" if descriptions else description,
            {**merged, **(headers or {})},
        )

    def documented(self) -> dict[int, dict]:
        """The answers as the spec says them: errors in the one error shape."""
        return {
            status: {
                "description": description,
                **({"headers": headers} if headers else {}),
                **({"content": ERROR_CONTENT} if status >= 400 else {}),
            }
            for status, (description, headers) in self.items()
        }
