"""The browser fixtures: Chromium missing fails in CI and skips elsewhere; requests are logged."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.web import conftest
from tests.web.conftest import RecordedPage


def test_missing_chromium_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="required in CI"):
        conftest.chromium_path()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        conftest.chromium_path()


def test_every_request_is_logged_with_its_origin(
    web_page: RecordedPage, static_server: Callable[[Path], str], tmp_path: Path
) -> None:
    (tmp_path / "index.html").write_text(
        '<!doctype html><html lang="en"><title>t</title><link rel="icon" href="i.svg">'
        '<img src="http://192.0.2.1/x.png" alt="elsewhere"><img src="/a.png" alt="here"></html>'
    )
    origin = static_server(tmp_path)
    web_page.page.goto(f"{origin}/index.html")
    web_page.page.wait_for_load_state("load")
    assert f"{origin}/index.html" in web_page.requests and f"{origin}/a.png" in web_page.requests
    # the CSP refuses the foreign image, yet the log still shows the page asked for it
    assert web_page.foreign(origin) == ["http://192.0.2.1/x.png"]
    assert any("Content Security Policy" in e for e in web_page.errors)
