#!/usr/bin/env bash
# Write a new Alembic revision for what changed in engine/store/tables.py since the newest revision:
#   bash scripts/new-migration.sh "add api tokens"
# It upgrades a scratch SQLite database to head and autogenerates the difference to the models into
# engine/store/migrations/versions/. Read the file it writes (renames show up as drop + add) and commit it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ] || [ -z "$1" ]; then
  echo "usage: $0 \"what changed\" [revision-id]" >&2
  exit 2
fi
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
exec "$PY" - "$@" <<'PYEOF'
import sys
from engine.store.schema import new_revision
paths = new_revision(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
for p in paths:
    print(f"wrote {p}")
PYEOF
