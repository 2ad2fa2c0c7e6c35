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

# --- designer: the modeler bundle (bpmn-js modeler + Camunda 7 properties panel + camunda behaviours) ---
# One esbuild file, committed to webapp/static/vendor/bpmn-modeler/. Pinned versions:
PANEL_VERSION=${PANEL_VERSION:-6.0.1}
PANEL_CORE_VERSION=${PANEL_CORE_VERSION:-3.55.0}
CAMUNDA_MODDLE_VERSION=${CAMUNDA_MODDLE_VERSION:-8.0.1}
BEHAVIORS_VERSION=${BEHAVIORS_VERSION:-1.18.0}
ESBUILD_VERSION=${ESBUILD_VERSION:-0.28.2}
MDEST=webapp/static/vendor/bpmn-modeler
build=$(mktemp -d)
trap 'rm -rf "$tmp" "$build"' EXIT
cat > "$build/entry.js" <<'JS'
import BpmnModeler from 'bpmn-js/lib/Modeler';
import { BpmnPropertiesPanelModule, BpmnPropertiesProviderModule, CamundaPlatformPropertiesProviderModule }
  from 'bpmn-js-properties-panel';
import CamundaBehaviorsModule from 'camunda-bpmn-js-behaviors/lib/camunda-platform';
import camundaModdle from 'camunda-bpmn-moddle/resources/camunda.json';
window.KefuModeler = { BpmnModeler, BpmnPropertiesPanelModule, BpmnPropertiesProviderModule,
  CamundaPlatformPropertiesProviderModule, CamundaBehaviorsModule, camundaModdle };
JS
(cd "$build" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund \
  "bpmn-js@$VERSION" "bpmn-js-properties-panel@$PANEL_VERSION" "@bpmn-io/properties-panel@$PANEL_CORE_VERSION" \
  "camunda-bpmn-moddle@$CAMUNDA_MODDLE_VERSION" "camunda-bpmn-js-behaviors@$BEHAVIORS_VERSION" \
  "esbuild@$ESBUILD_VERSION" \
  && npx esbuild entry.js --bundle --minify --format=iife --loader:.json=json --outfile=modeler.js)
rm -rf "$MDEST"
mkdir -p "$MDEST/assets"
cp "$build/modeler.js" "$MDEST/bpmn-modeler.min.js"
python3 scripts/patch-modeler.py "$MDEST/bpmn-modeler.min.js"  # Kefu's field types in the type menu
cp "$build/node_modules/bpmn-js/dist/assets/bpmn-js.css" "$build/node_modules/bpmn-js/dist/assets/diagram-js.css" \
  "$MDEST/assets/"
cp -r "$build/node_modules/bpmn-js/dist/assets/bpmn-font" "$MDEST/assets/"
cp "$build/node_modules/@bpmn-io/properties-panel/dist/assets/properties-panel.css" "$MDEST/assets/"
cp "$build/node_modules/bpmn-js-properties-panel/LICENSE" "$MDEST/LICENSE-properties-panel"
cp "$build/node_modules/bpmn-js/LICENSE" "$MDEST/LICENSE"
(cd "$build/node_modules" && for p in bpmn-js bpmn-js-properties-panel @bpmn-io/properties-panel camunda-bpmn-moddle \
  camunda-bpmn-js-behaviors; do echo "$p $(node -p "require('./$p/package.json').version")"; done) > "$MDEST/VERSION"
echo "modeler bundle vendored into $MDEST"
