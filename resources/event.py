"""The event feed: every change to the stores a caller may see, in commit order, page by page
after a cursor (models/event.py says why no event is skipped)."""

from flask import Response, after_this_request
from flask.views import MethodView
from flask_jwt_extended import current_user
from flask_smorest import abort

from models.event import EventModel, events_after, feed_bounds, place_events
from schemas.events import EventArgsSchema, EventSchema
from schemas.field_types import cursor_of
from web.blueprint import Blueprint
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
    elif not pruned_through <= after <= head:
        abort(410, message=f"{GONE}.")
    events = events_after(after, page_size, owner_id=owner_id, store_id=store_id, types=types)
    # An empty page goes on from where it was asked: newer events come past it.
    return events, events[-1].position if events else after, head


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
