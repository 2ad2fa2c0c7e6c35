#!/usr/bin/env bash
# Refresh the English catalogue of the web interface after changing UI text or the diagrams' option names:
# extract the Chinese source strings, merge them into webapp/translations/en/…/messages.po (fill in the
# new msgstr lines there), then compile messages.mo. Both files are committed, so a fresh clone shows English.
set -euo pipefail
cd "$(dirname "$0")/.."
BABEL=${BABEL:-.venv/bin/pybabel}
"$BABEL" extract -F babel.cfg -k _l --no-location --sort-output --omit-header -o webapp/translations/messages.pot .
"$BABEL" update -i webapp/translations/messages.pot -d webapp/translations -l en --ignore-obsolete --no-fuzzy-matching
"$BABEL" compile -d webapp/translations --statistics
