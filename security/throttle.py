"""Throttles counted in the database: logins (and password changes) per account and client,
per client address and per account from unknown clients, sign-ups per client address,
refreshes per login.

Hand-written rather than Flask-Limiter: its storages are process memory (each worker
counts alone), Redis, Memcached or MongoDB, none of them the database that every instance
already shares. As django-axes does, the counts live in a table, so every worker, every
instance and a restart see the same numbers, on PostgreSQL, through PgBouncer and on SQLite.
"""

import ipaddress
import math
import time
from dataclasses import dataclass

from flask import Flask, current_app, request
from flask_smorest import abort
from sqlalchemy import case, delete, select, update

from config.settings import Settings, current_settings
from db import db, prune, read_outside_transactions, upsertable_insert
from models import ThrottleModel
from observability.metrics import THROTTLED

HOUR = 3600.0
# Expired rows each counted attempt removes: the table stays as small as the counts still
# running, without cron (a backlog of 100,000 is gone after 200 attempts).
PRUNE_BATCH = 500


@dataclass(frozen=True)
class Limit:
    """`allowed` attempts per `window` seconds, then a wait.

    Without `max_wait`, the wait lasts until the window ends. With it, the wait is a
    growing delay: 1 s after the last allowed attempt, doubling with each further one, up
    to `max_wait`. Refused attempts are not counted, so an attacker cannot make a wait
    longer than that: never a lock-out.
    """

    name: str
    allowed: int
    window: float = HOUR
    max_wait: float | None = None
    # What an attempt that succeeded does: clear the count (an account's right password),
    # or only take its own hit back (one of many accounts a client address logs in to).
    forgotten_on_success: bool = False

    def key(self, subject: str) -> str:
        return f"{self.name}:{subject}"

    def count(self, row: ThrottleModel, now: float) -> float | None:
        """Count an attempt in `row`; the growing delay it starts, if it starts one."""
        if row.window_ends_at <= now:
            row.hits, row.window_ends_at = 0, now + self.window
        row.hits += 1
        if row.hits < self.allowed:
            return None
        if self.max_wait is None:
            row.blocked_until = row.window_ends_at
            return None
        delay = min(2.0 ** (row.hits - self.allowed), self.max_wait)
        row.blocked_until = now + delay
        return delay


def client_of(address: str | None) -> str:
    """Who an address stands for in the throttles: an IPv4 address alone, an IPv6 address
    with its whole network (IPV6_CLIENT_PREFIX, /64 by default), since one subscriber
    gets at least a /64 and picks any address in it."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:  # a Unix socket's peer, say: no address to group
        return address or ""
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped:  # ::ffff:192.0.2.1, an IPv4 client of a dual-stack socket
        return str(ip.ipv4_mapped)
    prefix = current_settings().ipv6_client_prefix
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


Counted = tuple[Limit, str]


def init_throttles(app: Flask, settings: Settings) -> None:
    app.extensions["throttle_limits"] = throttle_limits(settings)


def throttle_limits(settings: Settings) -> dict[str, Limit]:
    """What is throttled, and how much (docs/api.md, "Security"), by name.

    As OWASP's Authentication Cheat Sheet has it: per account *and* client, so that an
    attacker's guesses slow down the attacker and not the account's owner elsewhere; per
    account across unknown clients, against guessing from many addresses; and a client
    that logged in to the account before (its device cookie) has an allowance of its own,
    which nobody else's guesses use up.
    """
    per_client = settings.login_attempts_per_account
    limits = (
        # A growing delay, up to 15 minutes; a right password clears it.
        Limit("login-account-client", per_client, max_wait=900, forgotten_on_success=True),
        Limit("login-device", per_client, max_wait=900, forgotten_on_success=True),
        # Until the hour is over: many clients guessing one account, or one client
        # guessing many accounts. Right logins are not counted.
        Limit("login-account", settings.login_attempts_per_account_from_new_clients),
        Limit("login-address", settings.login_attempts_per_address),
        # Each sign-up costs an Argon2 hash (0.1 s of CPU, 64 MiB).
        Limit("register-address", settings.registrations_per_address),
        # Until the hour is over: a login's refreshes, each of which writes its family's row.
        Limit("refresh-family", settings.refreshes_per_login),
    )
    return {each.name: each for each in limits}


def login_counts(username: str, device: str | None) -> list[Counted]:
    """What a login attempt for `username` counts against: a known device's own allowance,
    or, from any other client, the account from that client, the account from all unknown
    clients, and the client's address."""
    if device is not None:
        return [(limit("login-device"), device)]
    client = client_of(request.remote_addr)
    return [
        (limit("login-account-client"), f"{username} {client}"),
        (limit("login-account"), username),
        (limit("login-address"), client),
    ]


def limit(name: str) -> Limit:
    return current_app.extensions["throttle_limits"][name]


def attempt(*counted: Counted, refusal: str) -> dict[str, float]:
    """Count one attempt against each (limit, subject), in a transaction of its own; or,
    while any of them must still wait, refuse with 429 and Retry-After. Answers the growing
    delays the attempt started, by key, for `restart_delays`.

    A refusal writes nothing and locks nothing: the waits are read first, with no
    transaction. An attempt that may go on locks its rows (inserted if missing, in one
    statement: a pruning in between cannot leave one out), reads the waits again under
    the lock, so that concurrent attempts are counted one after the other and none slips
    past a limit, and counts.
    """
    now = time.time()
    limits = {limit.key(subject): limit for limit, subject in counted}
    keys = sorted(limits)  # one locking order for every request: no deadlocks
    waits = select(ThrottleModel.key, ThrottleModel.blocked_until).where(
        ThrottleModel.key.in_(keys)
    )
    refuse_while_waiting(limits, dict(read_outside_transactions(waits).all()), now, refusal)
    rows = lock_rows(keys, now)
    refuse_while_waiting(limits, {row.key: row.blocked_until for row in rows}, now, refusal)
    delays = {row.key: limits[row.key].count(row, now) for row in rows}
    prune_expired(now, PRUNE_BATCH)
    db.session.commit()
    return {key: delay for key, delay in delays.items() if delay is not None}


def restart_delays(delays: dict[str, float]) -> None:
    """The attempt failed: the delays it started count from now, its answer, rather than
    from when it was counted (a password check takes a second on a busy machine, which
    would otherwise shorten the wait by as much)."""
    if not delays:
        return
    now = time.time()
    for key, delay in delays.items():
        db.session.execute(
            update(ThrottleModel)
            .where(ThrottleModel.key == key, ThrottleModel.blocked_until < now + delay)
            .values(blocked_until=now + delay)
        )
    db.session.commit()


def refuse_while_waiting(
    limits: dict[str, Limit], blocked_until: dict[str, float], now: float, refusal: str
) -> None:
    waiting = {key: until - now for key, until in blocked_until.items() if until > now}
    if not waiting:
        return
    db.session.rollback()
    for key in waiting:
        THROTTLED.labels(limits[key].name).inc()
    abort(429, message=refusal, headers={"Retry-After": str(math.ceil(max(waiting.values())))})


def lock_rows(keys: list[str], now: float) -> list[ThrottleModel]:
    """The rows of `keys`, locked, those missing inserted as new counts."""
    insert = upsertable_insert(ThrottleModel).values(
        [{"key": key, "hits": 0, "window_ends_at": now, "blocked_until": 0} for key in keys]
    )
    # Updating a row that exists locks it, as SELECT ... FOR UPDATE would.
    upsert = insert.on_conflict_do_update(
        index_elements=[ThrottleModel.key], set_={"key": insert.excluded.key}
    ).returning(ThrottleModel)
    return list(db.session.scalars(upsert, execution_options={"populate_existing": True}))


def succeeded(*counted: Counted) -> None:
    """An attempt counted by `attempt` succeeded: each limit forgets its subject or takes
    back this attempt's hit, and the wait that hit caused (in the current transaction)."""
    for limit, subject in counted:
        row = ThrottleModel.key == limit.key(subject)
        if limit.forgotten_on_success:
            db.session.execute(delete(ThrottleModel).where(row))
            continue
        hits = ThrottleModel.hits - 1
        waits = case((hits < limit.allowed, 0.0), else_=ThrottleModel.blocked_until)
        db.session.execute(
            update(ThrottleModel)
            .where(row, ThrottleModel.hits > 0)
            .values(hits=hits, blocked_until=waits)
        )


def prune_expired(now: float | None = None, batch: int | None = None) -> int:
    """Drop rows whose window ended and who need not wait (they count nothing)."""
    now = time.time() if now is None else now
    return prune(
        ThrottleModel,
        ThrottleModel.window_ends_at < now,
        ThrottleModel.blocked_until < now,
        batch=batch,
    )
