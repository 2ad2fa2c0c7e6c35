"""Offer Kefu's own form field types in the modeler's type menu: the Camunda 7 properties panel knows string,
long, boolean, date and enum; Kefu also has datetime, user and users. Run on the built bundle by
scripts/vendor-assets.sh (and once on the committed one); doing it twice changes nothing."""
from __future__ import annotations

import re
import sys
from pathlib import Path

KEFU_TYPES = ("datetime", "user", "users")


def patch(text: str) -> str:
    known = re.compile(r'(\w+)=\["boolean","date","enum","long","string",void 0\]')
    if not known.search(text):
        if '"boolean","date","datetime","enum","long","string","user","users",void 0' in text:
            return text  # patched already
        raise SystemExit("patch-modeler: the form field type list was not found in the bundle")
    text = known.sub(r'\1=["boolean","date","datetime","enum","long","string","user","users",void 0]', text, 1)
    option = re.compile(r'\{label:(\w+)\("string"\),value:"string"\}')
    m = option.search(text)
    if not m:
        raise SystemExit("patch-modeler: the form field type options were not found in the bundle")
    extra = "".join(f',{{label:{m.group(1)}("{t}"),value:"{t}"}}' for t in KEFU_TYPES)
    return text[:m.end()] + extra + text[m.end():]


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "webapp/static/vendor/bpmn-modeler/bpmn-modeler.min.js")
    path.write_text(patch(path.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"patched {path}")
