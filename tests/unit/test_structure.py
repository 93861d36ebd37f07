"""Rules the code holds by its structure, checked by reading the code itself."""

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Product code: everything the API, its CLI and its worker run.
PRODUCT = [
    path
    for path in ROOT.glob("**/*.py")
    if path.relative_to(ROOT).parts[0] not in {".venv", "tests", "bench", "tools", "migrations"}
]
# What `import` names of it: its top-level modules and packages.
PRODUCT_NAMES = {path.relative_to(ROOT).parts[0].removesuffix(".py") for path in PRODUCT}
MIGRATIONS = sorted((ROOT / "migrations").glob("**/*.py"))
# The layers, top down, by top-level module or package (docs/architecture.md): each imports
# from its own layer and those below, never from one above.
LAYERS = [
    {"app", "worker", "cli", "gunicorn.conf"},  # entry points: they put the parts together
    {"resources", "web"},  # HTTP
    {"rendering", "catalogue", "jobs", "security", "backups", "webhooks"},  # the work
    {"schemas"},  # representations
    {"models", "db", "replication"},  # data
    {"config", "connections", "observability", "priority"},  # what all of it stands on
]
LAYER = {name: depth for depth, names in enumerate(LAYERS) for name in names}
RESOURCES = sorted((ROOT / "resources").glob("*.py"))
CHILDREN = {"ItemModel", "TagModel"}
COMPOSERS = {"read", "listing", "write"}
MARSHMALLOW_HOOKS = {"_serialize", "_deserialize"}


def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def calls(path: Path):
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Call):
            yield node


def where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT)}:{node.lineno}"


def imports(path: Path):
    """Each import statement of the module, anywhere in it, with the module it names
    (`from a.b import c`: a.b; relative imports are not used here)."""
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name
        elif isinstance(node, ast.ImportFrom):
            yield node, node.module or ""


def test_no_product_module_is_over_300_lines():
    long = {
        str(path.relative_to(ROOT)): n
        for path in PRODUCT
        if (n := len(path.read_text().splitlines())) > 300
    }
    assert not long


def test_no_package_shadows_the_standard_library():
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")}
    modules = {path.stem for path in ROOT.glob("*.py")}
    assert not (packages | modules) & set(sys.stdlib_module_names)


def test_nothing_under_resources_commits():
    commits = [
        where(path, call)
        for path in RESOURCES
        for call in calls(path)
        if isinstance(call.func, ast.Attribute) and call.func.attr == "commit"
    ]
    assert not commits, "the web layer commits (web.transactions); views only write"


def test_resources_do_not_import_each_other():
    imports = [
        where(path, node)
        for path in RESOURCES
        for node in ast.walk(tree(path))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("resources")
    ]
    assert not imports


def names_a_child(node: ast.AST) -> bool:
    """ItemModel, TagModel, or one of their columns (ItemModel.store_id)."""
    if isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name) and node.id in CHILDREN


def test_views_load_items_and_tags_only_through_models_queries():
    """An item or tag loaded another way could be one of a deleted store's."""
    other_ways = [
        where(path, call)
        for path in RESOURCES
        for call in calls(path)
        if call.args
        and names_a_child(call.args[0])
        and (
            (isinstance(call.func, ast.Name) and call.func.id == "select")
            or (isinstance(call.func, ast.Attribute) and call.func.attr in {"get", "query"})
        )
    ]
    assert not other_ways, "load them with models.queries (live_items, get_live_one, ...)"


def test_the_structure_test_sees_a_child_loaded_another_way(tmp_path):
    view = tmp_path / "view.py"
    view.write_text("item = db.session.get(ItemModel, 1)\nids = select(TagModel.id)\n")
    found = [call for call in calls(view) if call.args and names_a_child(call.args[0])]
    assert len(found) == 2


def test_every_view_is_made_by_one_composing_decorator():
    """Each method of a resource's MethodView is decorated with blp.read, blp.listing or
    blp.write, once, and with nothing else: the composer orders the pieces."""
    views = {}
    for path in RESOURCES:
        for node in ast.walk(tree(path)):
            if isinstance(node, ast.ClassDef):
                for method in node.body:
                    if isinstance(method, ast.FunctionDef):
                        views[f"{path.stem}.{node.name}.{method.name}"] = [
                            decorator.func.attr
                            for decorator in method.decorator_list
                            if isinstance(decorator, ast.Call)
                            and isinstance(decorator.func, ast.Attribute)
                        ] + [
                            ast.unparse(decorator)
                            for decorator in method.decorator_list
                            if not isinstance(decorator, ast.Call)
                        ]
    assert len(views) > 20
    assert {
        name: decorators
        for name, decorators in views.items()
        if len(decorators) != 1 or decorators[0] not in COMPOSERS
    } == {}


def test_no_private_api_of_flask_smorest_or_apispec_is_used():
    """Names with a leading underscore of the libraries we build on: an upgrade could change
    them silently. marshmallow documents _serialize and _deserialize as the hooks of a custom
    field."""
    private = [
        where(path, node)
        for path in PRODUCT
        for node in ast.walk(tree(path))
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and node.attr not in MARSHMALLOW_HOOKS
    ]
    assert not private


def test_no_migration_imports_product_code():
    """A migration is history: it holds the SQL it ran, as text. Built from product code, it
    would install something else once that code changed."""
    product = [
        f"{where(path, node)} imports {name}"
        for path in MIGRATIONS
        for node, name in imports(path)
        if name.partition(".")[0] in PRODUCT_NAMES
    ]
    assert not product


def test_a_migration_imports_only_alembic_sqlalchemy_and_the_standard_library():
    """Nor a library's SQL that its next version changes (0008 holds procrastinate's)."""
    allowed = {"alembic", "sqlalchemy", "migrations", *sys.stdlib_module_names}
    others = [
        f"{where(path, node)} imports {name}"
        for path in MIGRATIONS
        if path.parent.name == "versions"
        for node, name in imports(path)
        if name.partition(".")[0] not in allowed
    ]
    assert not others


def top_level(path: Path) -> str:
    return path.relative_to(ROOT).parts[0].removesuffix(".py")


def arrows() -> list[tuple[Path, ast.AST, str, str]]:
    """Each import of product code by product code: the importer's file, the statement, and
    the top-level names of both ends."""
    return [
        (path, node, top_level(path), target)
        for path in PRODUCT
        for node, name in imports(path)
        if (target := name.partition(".")[0]) in PRODUCT_NAMES
    ]


def test_every_module_has_its_layer():
    assert set(LAYER) == PRODUCT_NAMES


def test_no_import_runs_from_a_lower_layer_to_a_higher_one():
    upward = [
        f"{where(path, node)}: {source} imports {target}"
        for path, node, source, target in arrows()
        if LAYER[target] < LAYER[source]
    ]
    assert not upward


def test_no_two_packages_import_each_other_even_through_others():
    """Within a layer too: a loop (web -> schemas -> web) makes two folders one."""
    graph = {name: set() for name in PRODUCT_NAMES}
    for _path, _node, source, target in arrows():
        if source != target:
            graph[source].add(target)
    assert not loops(graph)


def loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """The loops of a directed graph, each found once from each of its nodes' first visit
    (a depth-first walk: an edge back to a node still on the path closes one)."""
    found, done = [], set()

    def walk(node: str, path: list[str]) -> None:
        for successor in sorted(graph[node]):
            if successor in path:
                found.append([*path[path.index(successor) :], successor])
            elif successor not in done:
                walk(successor, [*path, successor])
        done.add(node)

    for start in sorted(graph):
        if start not in done:
            walk(start, [start])
    return found


def test_the_structure_test_sees_an_upward_arrow_and_a_loop(tmp_path):
    module = tmp_path / "queries.py"
    module.write_text("def f():\n    from web.errors import refuse\nimport schemas.field_types\n")
    assert sorted(name for _node, name in imports(module)) == ["schemas.field_types", "web.errors"]
    assert loops({"web": {"schemas"}, "schemas": {"web"}, "db": set()}) == [
        ["schemas", "web", "schemas"]
    ]
