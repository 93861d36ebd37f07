"""usernames unique whatever their case; a row per token family instead of a row per
revoked token

Usernames that clash once their case is ignored (or once a trailing newline, which the
old pattern let through, is dropped) are renamed, each reported: the oldest user of a name
keeps it, the others become `<name>-<id>`.

Every token issued before is revoked (token_version is raised): the revocations kept per
token are not carried over, so a token logged out before would otherwise work again.
Downgrading does the same, and keeps the new names.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 18:00:00

"""
import itertools
import logging

from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

logger = logging.getLogger('alembic.runtime.migration')

# A username's key then and now: lower case, no trailing newline.
KEY = 'lower(rtrim(username, :newline))'
CLASHING = f"""
SELECT id, username, {KEY} AS key FROM users
WHERE {KEY} IN (SELECT {KEY} FROM users GROUP BY 1 HAVING count(*) > 1)
   OR username <> rtrim(username, :newline)
ORDER BY key, id
"""
TAKEN = f'SELECT 1 FROM users WHERE {KEY} = lower(:name)'
RENAME = 'UPDATE users SET username = :name WHERE id = :id'
MAX_USERNAME = 80


def upgrade():
    resolve_clashes()
    # SQLite: dropping the constraint copies the table, which must keep its AUTOINCREMENT.
    with op.batch_alter_table('users', table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.drop_constraint('uq_users_username', type_='unique')
    # After the copy, which would not carry an expression index over.
    op.create_index('ix_users_lower_username', 'users', [sa.text('lower(username)')], unique=True)

    op.create_table('token_families',
    sa.Column('family', sa.String(length=36), nullable=False),
    sa.Column('used_generation', sa.Integer(), server_default='0', nullable=False),
    sa.Column('revoked', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('family', name=op.f('pk_token_families'))
    )
    op.create_index(op.f('ix_token_families_expires_at'), 'token_families', ['expires_at'])
    op.drop_table('revoked_tokens')
    op.drop_table('revoked_token_families')
    op.execute('UPDATE users SET token_version = token_version + 1')


def downgrade():
    op.execute('UPDATE users SET token_version = token_version + 1')
    op.create_table('revoked_token_families',
    sa.Column('family', sa.String(length=36), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('family', name=op.f('pk_revoked_token_families'))
    )
    op.create_index(op.f('ix_revoked_token_families_expires_at'), 'revoked_token_families', ['expires_at'])
    op.create_table('revoked_tokens',
    sa.Column('jti', sa.String(length=36), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('jti', name=op.f('pk_revoked_tokens'))
    )
    op.create_index(op.f('ix_revoked_tokens_expires_at'), 'revoked_tokens', ['expires_at'])
    op.drop_table('token_families')

    op.drop_index('ix_users_lower_username', table_name='users')
    with op.batch_alter_table('users', table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.create_unique_constraint('uq_users_username', ['username'])


def resolve_clashes():
    """Each group of usernames with one key: the oldest user keeps the name (without its
    newline), the others get a name of their own, the later ones first (until then the
    oldest one's new name may still be another's)."""
    connection = op.get_bind()
    rows = connection.execute(sa.text(CLASHING), {'newline': '\n'}).all()
    for _key, group in itertools.groupby(rows, key=lambda row: row.key):
        oldest, *later = group
        for user in later:
            clash = f'it clashed with user {oldest.id}, {oldest.username!r}'
            rename(connection, user, free_name(connection, user), clash)
        kept = oldest.username.rstrip('\n')
        if kept != oldest.username:
            rename(connection, oldest, kept, 'a newline ended it')


def free_name(connection, user) -> str:
    """`<name>-<id>`, or `<name>-<id>-<n>` while another user has it in any case."""
    base = user.username.rstrip('\n')
    for number in itertools.count():
        suffix = f'-{user.id}' + (f'-{number}' if number else '')
        name = base[: MAX_USERNAME - len(suffix)] + suffix
        if connection.execute(sa.text(TAKEN), {'name': name, 'newline': '\n'}).first() is None:
            return name


def rename(connection, user, name: str, reason: str) -> None:
    logger.warning('user %s, %r, renamed %r: %s', user.id, user.username, name, reason)
    connection.execute(sa.text(RENAME), {'name': name, 'id': user.id})
