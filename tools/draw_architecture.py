"""Draws docs/architecture.png: a request's way through the layers (the order web.blueprint's
composers apply, read from its docstring) and a store's life from creation to purge.

`.venv/bin/python tools/draw_architecture.py` after a change of either; matplotlib is a
development dependency.
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OUTPUT = ROOT / "docs" / "architecture.png"

# Around the view's pieces: what every request meets before and after them.
BEFORE = [
    ("nginx", "deploy/nginx: limits, JSON errors"),
    ("gunicorn", "gunicorn.conf.py: a sync worker per core"),
    ("Flask app", "app.py; observability/: request log, metrics"),
]
AFTER = [
    ("models/ + models/queries.py", "live stores, items, tags only"),
    ("db.py", "writes: a transaction; GET: the autocommit engine"),
    ("PostgreSQL / SQLite", "constraints, ON DELETE CASCADE, row locks"),
]
# A store's states, and what moves it on.
LIFE = [
    ("live", "POST /store"),
    ("deleted: hidden, restorable", "DELETE /store/<id>"),
    ("expired", "expire_time passes (or POST /store/<id>/purge)"),
    ("purged: rows gone", "jobs/purge.py in batches (worker or flask purge-deleted)"),
]


def pieces() -> list[str]:
    """The composers' order, as web/blueprint.py's docstring states it."""
    from web import blueprint

    doc = blueprint.__doc__.split("\n\n")[1]
    return [piece.strip() for piece in " ".join(doc.split()).split(">")]


def box(axes, x: float, y: float, title: str, note: str, color: str) -> None:
    axes.add_patch(
        FancyBboxPatch(
            (x, y), 4.2, 0.7, boxstyle="round,pad=0.05", facecolor=color, edgecolor="#333"
        )
    )
    axes.text(x + 0.1, y + 0.45, title, fontsize=9, weight="bold", va="center")
    axes.text(x + 0.1, y + 0.17, note, fontsize=7, va="center", color="#333")


def column(axes, entries: list[tuple[str, str]], colors: list[str], title: str) -> None:
    axes.set_xlim(0, 4.5)
    axes.set_ylim(-0.2, len(entries) * 1.0 + 0.3)
    axes.axis("off")
    axes.set_title(title, fontsize=11)
    top = len(entries) - 1
    for index, ((name, note), color) in enumerate(zip(entries, colors, strict=True)):
        y = top - index
        box(axes, 0.1, y + 0.1, name, note, color)
        if index < top:
            axes.annotate(
                "", (2.2, y - 0.15), (2.2, y + 0.1), arrowprops={"arrowstyle": "->", "lw": 1.2}
            )


def main() -> None:
    composed = [(piece, "web/blueprint.py composes it") for piece in pieces()]
    request = BEFORE + composed + AFTER
    colors = ["#dde8f5"] * len(BEFORE) + ["#fdf1d6"] * len(composed) + ["#e3f1df"] * len(AFTER)
    figure, (left, right) = plt.subplots(
        1, 2, figsize=(11, 0.62 * len(request) + 1), gridspec_kw={"width_ratios": [1, 1]}
    )
    column(left, request, colors, "A request's way, outside in")
    life = [(state, f"by {cause}") for state, cause in LIFE]
    column(right, life, ["#e3f1df", "#fdf1d6", "#f7dede", "#eeeeee"], "A store's life")
    right.text(
        0.15,
        -0.1,
        "POST /store/<id>/restore brings a deleted store back until it expires.",
        fontsize=8,
        style="italic",
    )
    figure.tight_layout()
    figure.savefig(OUTPUT, dpi=110)
    print(f"Wrote {OUTPUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
