"""One reading of ``CI`` for every test that fails under CI instead of skipping (tests/ci.py): PostgreSQL
(tests/pg.py) and the browser (tests/test_browser.py)."""
import pytest

from tests import pg
from tests.ci import under_ci
from tests.test_browser import _no_browser

CI_ON = ["true", "1", "yes", "TRUE", "Yes", " true "]
CI_OFF = ["", "false", "0", "no", "off", "y"]


@pytest.mark.parametrize("value", CI_ON)
def test_ci_on_fails_the_tests_that_lack_postgresql_or_the_browser(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    assert under_ci()
    with pytest.raises(pytest.fail.Exception, match=f"PostgreSQL is required under CI={value}: no server"):
        pg.unavailable("no server")
    with pytest.raises(pytest.fail.Exception, match="browser tests cannot run under CI: no chromium"):
        _no_browser("no chromium")


@pytest.mark.parametrize("value", CI_OFF + [None])
def test_otherwise_they_skip(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert not under_ci()
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL not available: no server"):
        pg.unavailable("no server")
    with pytest.raises(pytest.skip.Exception, match="browser tests skipped: no chromium"):
        _no_browser("no chromium")
