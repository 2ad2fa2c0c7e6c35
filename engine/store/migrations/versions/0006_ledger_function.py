"""ledger entries appended in one round trip on PostgreSQL

Revision ID: 0006_ledger_function
Revises: 0005_definition_changes
Create Date: 2026-11-23 16:40:00

``kefu_ledger_append`` takes the ledger's advisory lock, reads the newest entry and appends the caller's
entries chained after it, hashed exactly as ``engine.store.chain.chain_hash(prev, ledger_content(...))`` hashes
them: one statement per commit instead of three (lock, read, insert). The function is VOLATILE, so its read
takes a fresh snapshot after the lock is granted and sees the entry the previous lock holder committed.
SQLite has no such functions and keeps appending from Python; nothing changes there.
"""
from __future__ import annotations

from alembic import op


revision = '0006_ledger_function'
down_revision = '0005_definition_changes'
branch_labels = None
depends_on = None

# 7476071 is the advisory lock the ledger's appends have always taken; the JSON text is ledger_content's (keys sorted, no spaces,
# non-ASCII kept: to_json escapes exactly the characters Python's json.dumps escapes with ensure_ascii=False).
FUNCTION = r"""
CREATE OR REPLACE FUNCTION kefu_ledger_append(p_instance_ids integer[], p_tickets text[], p_seqs integer[],
                                              p_heads text[], p_ats timestamp[])
RETURNS integer AS $$
DECLARE
    entry_id integer;
    prev text;
    content text;
    digest text;
BEGIN
    PERFORM pg_advisory_xact_lock(7476071);
    SELECT id, hash INTO entry_id, prev FROM audit_ledger ORDER BY id DESC LIMIT 1;
    entry_id := coalesce(entry_id, 0);
    prev := coalesce(prev, '');
    FOR i IN 1 .. coalesce(array_length(p_instance_ids, 1), 0) LOOP
        entry_id := entry_id + 1;
        content := '{"event_seq":' || p_seqs[i] || ',"head":' || to_json(p_heads[i])::text
                   || ',"id":' || entry_id || ',"instance_id":' || p_instance_ids[i]
                   || ',"ticket_no":' || to_json(p_tickets[i])::text || '}';
        digest := encode(sha256(convert_to(prev || E'\n' || content, 'UTF8')), 'hex');
        INSERT INTO audit_ledger (id, instance_id, ticket_no, event_seq, head, at, prev_hash, hash)
        VALUES (entry_id, p_instance_ids[i], p_tickets[i], p_seqs[i], p_heads[i], p_ats[i], prev, digest);
        prev := digest;
    END LOOP;
    RETURN entry_id;
END
$$ LANGUAGE plpgsql VOLATILE
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS kefu_ledger_append(integer[], text[], integer[], text[], timestamp[])")
