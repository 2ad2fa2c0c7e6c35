"""Chinese first, English complete: every UI string (and every option name in the diagrams) has an English
translation, and the committed compiled catalogue is the one built from the committed .po."""
from gettext import GNUTranslations

from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from tests.conftest import ROOT

CATALOGUE = ROOT / "webapp" / "translations" / "en" / "LC_MESSAGES"


def source_messages() -> set[str]:
    with open(ROOT / "babel.cfg", encoding="utf-8") as f:
        method_map, options_map = parse_mapping_cfg(f, str(ROOT / "babel.cfg"))
    keywords = {"_": None, "gettext": None, "_l": None, "lazy_gettext": None, "ngettext": (1, 2)}
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
            str(ROOT), method_map, options_map, keywords=keywords):
        found.update([message] if isinstance(message, str) else message)
    return found


def test_every_ui_string_has_an_english_translation():
    with open(CATALOGUE / "messages.po", "rb") as f:
        po = read_po(f)
    translated = {m.id: m.string for m in po if m.id and not m.fuzzy}
    sources = source_messages()
    assert "待办" in sources and "安保勤务部" in sources  # templates and diagrams are both read
    missing = sorted(m for m in sources if not translated.get(m))
    assert not missing, f"untranslated (run bash scripts/translations.sh and fill msgstr): {missing}"


def test_compiled_catalogue_matches_the_po():
    with open(CATALOGUE / "messages.po", "rb") as f:
        po = {m.id: m.string for m in read_po(f) if m.id and m.string and not m.fuzzy}
    with open(CATALOGUE / "messages.mo", "rb") as f:
        mo = GNUTranslations(f)
    stale = {k: (v, mo.gettext(k)) for k, v in po.items() if mo.gettext(k) != v}
    assert not stale, f"messages.mo is stale: run bash scripts/translations.sh ({len(stale)} differ)"
