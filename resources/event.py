"""The event feed: every change to the stores a caller may see, in commit order, page by page
after a cursor (models/event.py says why no event is skipped)."""

from flask import Response, after_this_request, current_app, request
from flask.views import MethodView
from flask_jwt_extended import current_user, get_jwt
from flask_smorest import abort

from config.settings import current_settings
from models.event import EventModel, events_after, feed_bounds, place_events
from schemas.events import (
    EventArgsSchema,
    EventSchema,
    EventStreamArgsSchema,
    EventStreamHeadersSchema,
)
from schemas.field_types import cursor_of
from security.tokens import still_good
from web.blueprint import Blueprint
from web.event_stream import (
    EVENT_HUB,
    PrunedError,
    Sent,
    TooManyStreamsError,
    as_sent,
    client_gone,
    stream,
)
from web.openapi import RETRY_AFTER
from web.pagination import Page

blp = Blueprint("events", __name__, description="The feed of changes, for clients that sync")

FEED_HEAD = "Feed-Head"
FEED_HEAD_HEADER = {
    FEED_HEAD: {
        "description": "Without after: the cursor of the newest event now. To sync, take it, "
        "list the resources, then follow the feed from it (after=<Feed-Head>)",
        "schema": {"type": "string"},
    }
}
GONE = (
    "The cursor is older than the events kept (EVENTS_RETENTION_DAYS), or newer than the feed "
    "(the database was restored to an earlier time): list the resources again, then follow "
    "the feed from the Feed-Head of GET /events"
)


def feed_page(
    after: int | None,
    page_size: int,
    *,
    owner_id: int | None,
    store_id: int | None = None,
    types: list[str] | None = None,
) -> tuple[list[EventModel], int, int]:
    """The events past `after` (None: from the oldest kept) that the filters let through,
    the position to go on from, and the feed's head: what GET /events pages, and what a
    stream or a webhook dispatcher would follow. A cursor older than the events kept is
    refused (410)."""
    place_events()
    head, pruned_through = feed_bounds()
    if after is None:
        after = pruned_through
    refuse_unless_kept(after, pruned_through, head)
    events = events_after(after, page_size, owner_id=owner_id, store_id=store_id, types=types)
    # An empty page goes on from where it was asked: newer events come past it.
    return events, events[-1].position if events else after, head


def refuse_unless_kept(after: int, pruned_through: int, head: int) -> None:
    if not pruned_through <= after <= head:
        abort(410, message=f"{GONE}.")


@blp.route("/events")
class Events(MethodView):
    @blp.listing(
        EventSchema, arguments=EventArgsSchema, token="access", headers=FEED_HEAD_HEADER,
        errors={410: GONE, 422: "A query parameter is not valid: a cursor not of this feed, "
                "an unknown type"},
    )  # fmt: skip
    def get(
        self,
        page_size: int,
        after: int | None = None,
        store_id: int | None = None,
        type: str | None = None,
    ) -> Page:
        """The feed of changes to your stores (an admin's: all), in commit order, each once;
        the Link header's next page goes on from the last (present on every page, even an
        empty one: poll it). Without after, from the oldest event kept, with the newest
        event's cursor in Feed-Head."""
        events, position, head = feed_page(
            after, page_size,
            owner_id=None if current_user.is_admin else current_user.id,
            store_id=store_id, types=type.split(",") if type else None,
        )  # fmt: skip
        if after is None:

            @after_this_request
            def with_head(response: Response) -> Response:
                response.headers[FEED_HEAD] = cursor_of(head)
                return response

        return events, cursor_of(position)


STREAM_CONTENT = {
    200: {
        "description": "The events past the cursor, then each as it is committed, as "
        "Server-Sent Events: `id:` the event's cursor, `event:` its type, `data:` the event "
        "as GET /events lists it; a comment line (`: heartbeat`) after "
        "EVENT_STREAM_HEARTBEAT_SECONDS without one. It ends once the token expires or is "
        "revoked: connect again with a fresh one, from Last-Event-ID.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}
# Seconds a refused stream is told to wait: a stream of the user's that closes frees a place.
STREAM_RETRY_AFTER = 5


@blp.route("/events/stream")
class EventStream(MethodView):
    @blp.read(
        None, token="access", tagged=False, query=EventStreamArgsSchema, content=STREAM_CONTENT,
        request_headers=EventStreamHeadersSchema,
        errors={
            400: "Last-Event-ID is not a cursor of this feed",
            410: GONE,
            422: "A query parameter is not valid: a cursor not of this feed, an unknown type",
            429: ("You have EVENT_STREAMS_PER_USER streams open already: close one, or wait "
                  "Retry-After seconds", RETRY_AFTER),
        },
    )  # fmt: skip
    def get(self, query: dict, headers: dict) -> Response:
        """Follow the feed live: your stores' events (an admin's: all) as Server-Sent Events,
        in feed order, each once. Starts after the cursor in the Last-Event-ID header (a
        browser's EventSource sends it when it connects again) or in after, else at the
        newest event (new events only). The same filters as GET /events."""
        settings = current_settings()
        after = headers.get("last_event_id", query.get("after"))
        owner_id = None if current_user.is_admin else current_user.id
        store_id, types = query.get("store_id"), query.get("type")
        types = set(types.split(",")) if types else None
        place_events()
        head, pruned_through = feed_bounds()
        if after is not None:
            refuse_unless_kept(after, pruned_through, head)
        hub = current_app.extensions[EVENT_HUB]
        try:
            close = hub.open_stream(current_user.id, settings.event_streams_per_user)
        except TooManyStreamsError:
            abort(
                429, headers={"Retry-After": str(STREAM_RETRY_AFTER)},
                message=f"You have {settings.event_streams_per_user} streams open already "
                "(EVENT_STREAMS_PER_USER): close one, or try again later.",
            )  # fmt: skip

        def matches(event: Sent) -> bool:
            return (
                owner_id in (None, event.owner_id)
                and store_id in (None, event.store_id)
                and (types is None or event.type in types)
            )

        def read_own(position: int, page: int) -> list[Sent]:
            with hub.app.app_context():
                events = events_after(
                    position, page, owner_id=owner_id, store_id=store_id,
                    types=list(types) if types else None,
                )  # fmt: skip
                # Checked after the read: a prune committed before it shows here.
                if feed_bounds()[1] > position:
                    raise PrunedError
                return as_sent(events)

        token, environ = get_jwt(), request.environ

        def going_on() -> bool:
            """The token still good (not expired, revoked or logged out), the client there."""
            with hub.app.app_context():
                return still_good(token) and not client_gone(environ)

        events = stream(
            hub, head if after is None else after, matches,
            settings.event_stream_heartbeat_seconds, read_own, going_on,
        )  # fmt: skip
        response = Response(events, mimetype="text/event-stream")
        # nginx sends each line on as it comes (deploy/nginx/nginx.conf); no cache keeps it.
        response.headers["X-Accel-Buffering"] = "no"
        response.headers["Cache-Control"] = "no-store"
        response.call_on_close(close)
        return response
