"""axe-core in the real Chromium, with a 390 px screenshot kept to look at (web tests).

axe-core comes vendored in ``axe-playwright-python`` (nothing is fetched at test time); it is
injected with Playwright's ``evaluate``, which the page's CSP does not govern."""

from __future__ import annotations

from pathlib import Path

from tests.web.conftest import RecordedPage

ARTEFACTS = Path(__file__).resolve().parents[1] / "artefacts" / "web"
PHONE = {"width": 390, "height": 844}
BLOCKING = ("serious", "critical")


def axe():  # type: ignore[no-untyped-def]
    try:
        from axe_playwright_python.sync_playwright import Axe
    except ImportError:
        from tests.web.conftest import _unavailable

        _unavailable("axe-playwright-python is not installed (pip install -e '.[dev]')")
    return Axe()


def check_page(page: RecordedPage, origin: str, path: str, name: str) -> list[str]:
    """Open ``path`` at 390 px, every <details> open; returns axe's serious/critical findings
    and saves the screenshot as ``name``.png."""
    p = page.page
    if path:
        p.goto(origin + path)
    p.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    p.screenshot(path=ARTEFACTS / f"{name}.png", full_page=True)
    width = p.evaluate("document.scrollingElement.scrollWidth")
    assert width <= PHONE["width"], f"{name}: the page is {width} px wide at a 390 px viewport"
    results = axe().run(p)
    found = results.response["violations"]
    print(f"axe {name}: {len(found)} findings "
          f"{[(v['id'], v['impact']) for v in found]}")  # fmt: skip
    return [
        f"{name}: {v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in found
        if v["impact"] in BLOCKING
    ]
