"""The feed's cursor never skips (issue 41.2): writers that commit in another order than they
drew their events' ids, and a reader polling throughout, who sees every event once, in the
order the writes committed."""

import random
import threading
import time

import pytest
from sqlalchemy import event
from support.api import new_store

from db import Session

WRITERS, WRITES = 8, 16
# Each write sleeps this long at most between its last statement and its COMMIT.
MAX_SLEEP_SECONDS = 0.05


@pytest.mark.slow
@pytest.mark.sqlite_too
def test_a_reader_following_the_cursor_sees_every_event_once_in_commit_order(client, database):
    store = new_store(client)
    writing = threading.local()
    commits: dict[int, tuple[float, float]] = {}  # item id: when its COMMIT began, and ended

    def sleep_before_commit(session) -> None:
        if getattr(writing, "sleeps", False):
            time.sleep(random.uniform(0, MAX_SLEEP_SECONDS))
            writing.committing = time.monotonic()

    def writer(number: int) -> None:
        writing.sleeps = True
        for write in range(WRITES):
            body = {"name": f"Item {number}.{write}", "price": 1, "store_id": store["id"]}
            response = client.post("/item", json=body)
            assert response.status_code == 201, response.get_json()
            commits[response.get_json()["id"]] = (writing.committing, time.monotonic())

    polls: list[
        tuple[float, float, list[dict]]
    ] = []  # when each poll began and ended, what it read
    done = threading.Event()

    start = client.get("/events").headers["Feed-Head"]

    def reader(after: str) -> None:
        # A page a poll: polls that read on until a page came back empty could last as long
        # as the writers kept writing faster (a loaded machine), and none end while they wrote.
        while True:
            last_poll = done.is_set()
            began = time.monotonic()
            read = client.get("/events", query_string={"after": after}).get_json()
            polls.append((began, time.monotonic(), read))
            if read:
                after = read[-1]["cursor"]
            elif last_poll:
                return
            time.sleep(0.005)

    event.listen(Session, "before_commit", sleep_before_commit)
    try:
        following = threading.Thread(target=reader, args=(start,))
        following.start()
        writers = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
        for each in writers:
            each.start()
        for each in writers:
            each.join()
        done.set()
        following.join()
    finally:
        event.remove(Session, "before_commit", sleep_before_commit)

    seen = [each["resource_id"] for _, _, read in polls for each in read]
    assert sorted(seen) == sorted(commits), "every event, each once"
    last_commit = max(ended for _, ended in commits.values())
    assert any(read and ended < last_commit for _, ended, read in polls), "read while written"
    if database != "sqlite":  # where writers take the database's lock at BEGIN, in turn
        # Ids were drawn in another order than the writes committed: the classic hole.
        assert seen != sorted(seen)
    # Commit order: an event committed before a poll began is read before one whose COMMIT
    # began after the poll ended.
    place = {item_id: number for number, item_id in enumerate(seen)}
    for began, ended, _ in polls:
        before = [item for item, (_, done) in commits.items() if done < began]
        later = [item for item, (started, _) in commits.items() if started > ended]
        if before and later:
            assert max(place[item] for item in before) < min(place[item] for item in later)
