#!/usr/bin/env bash
# Refresh the vendored bpmn-js viewer in webapp/static/vendor/bpmn-js/ from the npm registry.
# The service itself never downloads anything; run this only to move to another pinned version.
# Usage: bash scripts/vendor-assets.sh [VERSION]   (default: the pinned version below)
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${1:-18.31.1}
DEST=webapp/static/vendor/bpmn-js
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "bpmn-js@$VERSION" >/dev/null && tar -xzf bpmn-js-*.tgz)
rm -rf "$DEST"
mkdir -p "$DEST/assets"
cp "$tmp/package/dist/bpmn-navigated-viewer.production.min.js" "$DEST/"
cp "$tmp/package/dist/assets/diagram-js.css" "$tmp/package/dist/assets/bpmn-js.css" "$DEST/assets/"
cp "$tmp/package/LICENSE" "$DEST/LICENSE"
echo "$VERSION" > "$DEST/VERSION"
echo "bpmn-js $VERSION vendored into $DEST"
