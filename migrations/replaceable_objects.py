"""Alembic's "replaceable objects" recipe (its cookbook): a database function is a
ReplaceableObject whose every version lives in the migration that installs it; a later
migration replaces it by naming that one ("0007.STORE_DOCUMENT"), and its downgrade puts the
named version back. Imported by env.py, which registers the operations op.create_sp,
op.drop_sp and op.replace_sp."""

from alembic.operations import MigrateOperation, Operations


class ReplaceableObject:
    def __init__(self, name: str, sqltext: str) -> None:
        self.name, self.sqltext = name, sqltext


class ReversibleOp(MigrateOperation):
    def __init__(self, target: ReplaceableObject) -> None:
        self.target = target

    @classmethod
    def invoke_for_target(cls, operations: Operations, target: ReplaceableObject):
        return operations.invoke(cls(target))

    def reverse(self) -> "ReversibleOp":
        raise NotImplementedError

    @classmethod
    def _get_object_from_version(cls, operations: Operations, ident: str) -> ReplaceableObject:
        version, name = ident.split(".")
        module = operations.get_context().script.get_revision(version).module
        return getattr(module, name)

    @classmethod
    def replace(
        cls,
        operations: Operations,
        target: ReplaceableObject,
        replaces: str | None = None,
        replace_with: str | None = None,
    ) -> None:
        if replaces:
            old = cls._get_object_from_version(operations, replaces)
            drop_old, create_new = cls(old).reverse(), cls(target)
        elif replace_with:
            old = cls._get_object_from_version(operations, replace_with)
            drop_old, create_new = cls(target).reverse(), cls(old)
        else:
            raise TypeError("replaces or replace_with is required")
        operations.invoke(drop_old)
        operations.invoke(create_new)


@Operations.register_operation("create_sp", "invoke_for_target")
@Operations.register_operation("replace_sp", "replace")
class CreateSPOp(ReversibleOp):
    def reverse(self) -> "DropSPOp":
        return DropSPOp(self.target)


@Operations.register_operation("drop_sp", "invoke_for_target")
class DropSPOp(ReversibleOp):
    def reverse(self) -> CreateSPOp:
        return CreateSPOp(self.target)


@Operations.implementation_for(CreateSPOp)
def create_sp(operations: Operations, operation: CreateSPOp) -> None:
    operations.execute(f"CREATE FUNCTION {operation.target.name} {operation.target.sqltext}")


@Operations.implementation_for(DropSPOp)
def drop_sp(operations: Operations, operation: DropSPOp) -> None:
    operations.execute(f"DROP FUNCTION {operation.target.name}")
