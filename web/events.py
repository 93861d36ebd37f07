"""The one place where HTTP writes record their events: every `write` view declares the
event its success records (`emits`), or None for a write that changes no store (a login).
The event is the view's answer, as the client gets it, added to the write's own transaction
(models/event.py); a refused write records none, and a replayed one (Idempotency-Key) does
not run this again."""

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from flask import Response, g
from flask_jwt_extended import current_user

from models.event import record_event


@dataclass(frozen=True)
class Emits:
    """The event a write records: its `type` ("<resource>.<what happened>"); for a
    deletion, `gone`: what the target was, rendered before the view deletes it (as its GET
    shows it), recorded instead of the answer; `counts`: what went or came with it, from the
    answer."""

    type: str
    gone: Callable[[Any], Response] | None = None
    counts: Callable[[dict], dict] | None = None

    @property
    def resource(self) -> str:
        return self.type.partition(".")[0]

    def keep(self, target: Any) -> None:
        """Keep the view's target (web.blueprint.owned loaded it) for the event, and for a
        deletion what it is before the view runs."""
        setattr(g, TARGET, target)
        if self.gone is not None:
            setattr(g, GONE, self.gone(target))


# Where the view's target and a target rendered before the view (Emits.gone) wait for the
# event: flask.g, the request's.
GONE, TARGET = "event_gone", "event_target"


def ids_in(resource: str, data: dict) -> tuple[int, int]:
    """The resource's id and its store's, as its representation shows them."""
    if resource == "store":
        return data["id"], data["id"]
    if resource == "link":
        return data["item"]["id"], data["item"]["store_id"]
    return data["id"], data["store_id"]


def emitting(view: Callable[..., Response], emits: Emits) -> Callable[..., Response]:
    """`view`, recording `emits`' event once it answered with success."""

    @wraps(view)
    def with_event(*args, **kwargs) -> Response:
        response = view(*args, **kwargs)
        if response.status_code >= 400:
            return response
        gone = g.pop(GONE, None)
        text = (gone or response).get_data(as_text=True)
        data = json.loads(text)
        resource_id, store_id = ids_in(emits.resource, data)
        target = g.pop(TARGET, None)
        record_event(
            emits.type,
            resource_id=resource_id,
            store_id=store_id,
            # Whose store it is: the store says, or the target of what is in one.
            owner_id=data["owner_id"] if emits.resource == "store" else target.owner_id,
            actor_id=current_user.id,
            data=text,
            counts=None if emits.counts is None else emits.counts(data),
        )
        return response

    return with_event
