"""Every chapter in the table of contents, loaded offline in chromium: no errors, math typeset, figures drawn."""

from __future__ import annotations

from urllib.parse import urlsplit

from book_browser import MATH_CHAPTERS, SCREENSHOT_DIR, VIEWPORT, WAIT_FOR_MATH, slug


def test_page_loads_without_console_errors_or_failed_local_requests(visits, docname):
    page = visits[docname]
    assert page.data["title"], f"{page.url} has no h1 title"
    assert page.console_errors == [], f"console errors on {page.url}:\n" + "\n".join(page.console_errors)
    assert page.failed_local == [], f"failed requests to the local server from {page.url}:\n" + "\n".join(
        page.failed_local
    )


def test_page_needs_no_outside_request(visits, docname):
    # Off-site requests are aborted during the visit; a page that still asks for one would render
    # differently online, so there must be none at all.
    page = visits[docname]
    assert page.blocked_external == [], f"{page.url} asked for off-site resources:\n" + "\n".join(
        page.blocked_external
    )


def test_every_math_element_is_typeset_offline(visits, docname):
    page = visits[docname]
    data = page.data
    if data["mathElements"]:
        assert page.math_state == "typeset", f"{page.url}: {page.math_state}"
    assert data["untypeset"] == [], f"math left as TeX on {page.url}: {data['untypeset'][:5]}"
    assert data["mathErrors"] == [], f"MathJax errors on {page.url}: {data['mathErrors']}"
    assert data["texLeft"] == [], f"raw TeX delimiters in the text of {page.url}: {data['texLeft'][:3]}"


def test_math_chapters_have_rendered_equations(visits, docnames):
    math_pages = [name for name in docnames if slug(name) in MATH_CHAPTERS]
    assert [slug(name) for name in math_pages] == list(MATH_CHAPTERS), "a math chapter is missing from the toc"
    for name in math_pages:
        page = visits[name]
        assert page.math_state == "typeset", f"{page.url}: {page.math_state}"
        assert page.data["mjxContainers"] >= page.data["mathElements"] > 0, (
            f"{page.url}: {page.data['mjxContainers']} rendered of {page.data['mathElements']} math elements"
        )


def test_mathjax_is_served_by_the_book_itself(visits, docnames):
    scripts = {script for name in docnames for script in visits[name].data["mathjaxScripts"]}
    assert scripts, "no page loads MathJax"
    for script in scripts:
        parts = urlsplit(script)
        # A relative URL into _static works wherever the book is hosted, online or from disk.
        assert not parts.scheme and not parts.netloc, f"MathJax comes from elsewhere: {script}"
        assert "_static/mathjax/" in parts.path, script


def test_every_figure_loads(visits, docname):
    page = visits[docname]
    broken = [image["src"] for image in page.data["images"] if not image["complete"] or image["width"] == 0]
    assert broken == [], f"images that did not load on {page.url}: {broken}"


def test_page_does_not_scroll_sideways(visits, docname):
    # Wide code or tables may scroll inside their own box, but the page itself must fit the window.
    page = visits[docname]
    assert page.data["pageOverflow"] <= 0, (
        f"{page.url} is {page.data['pageOverflow']} px wider than a {VIEWPORT['width']} px window"
    )


def test_glued_text_reads_as_part_of_its_sentence(visits, docname):
    # myst-nb sets glued text in bold; glued comparison words and sentences then read as emphasis.
    page = visits[docname]
    assert page.data["boldGlue"] == [], f"glued text in another weight than its sentence on {page.url}: {page.data['boldGlue'][:5]}"


def test_screenshot_written(visits, docname):
    screenshot = SCREENSHOT_DIR / f"{slug(docname)}.png"
    assert screenshot.is_file() and screenshot.stat().st_size > 10_000, screenshot


def test_readers_see_no_warning_output_nan_or_raw_markdown(visits, docname):
    # A warning printed by a cell, or "nan" where a number belongs, means the chapter ran into trouble.
    page = visits[docname]
    assert page.data["stderr"] == [], f"stderr or traceback output on {page.url}: {page.data['stderr']}"
    assert page.data["notANumber"] == [], f"nan/inf shown on {page.url}: {page.data['notANumber']}"
    # A Markdown table printed by a cell shows as pipes unless myst-nb renders Markdown outputs as MyST.
    assert page.data["rawMarkdownTables"] == [], f"unrendered Markdown table on {page.url}: {page.data['rawMarkdownTables']}"


def test_math_typesets_when_the_book_is_opened_from_disk(browser, html_dir, docnames):
    # `python3 tasks.py book` points readers at _build/html/index.html: file:// must work offline too.
    chapter = next(name for name in docnames if slug(name) == MATH_CHAPTERS[0])
    context = browser.new_context(viewport=VIEWPORT)
    blocked, errors = [], []

    def route(request_route):
        if request_route.request.url.startswith(("file:", "data:")):
            request_route.continue_()
        else:
            blocked.append(request_route.request.url)
            request_route.abort("blockedbyclient")

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto((html_dir / f"{chapter}.html").as_uri())
    state = page.evaluate(WAIT_FOR_MATH)
    rendered = page.locator("article mjx-container").count()
    context.close()
    assert state == "typeset" and rendered > 0, f"{state}, {rendered} equations rendered"
    assert errors == [] and blocked == [], f"console errors {errors}, off-site requests {blocked}"
