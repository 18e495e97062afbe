"""Exercises as a reader meets them: stars in each title, solutions folded until clicked (none for students)."""

from __future__ import annotations

import re
import time

import pytest
import yaml

from book_browser import BOOK_ROOT, SECONDS, slug

# tools/student_edition.py marks the title of the edition it writes.
STUDENT_EDITION = "(student edition)" in yaml.safe_load((BOOK_ROOT / "_config.yml").read_text())["title"]
EXERCISE_TITLE = re.compile(r"^Exercise \d+ \((★{1,3}) \S")
# A solution's parts besides its title; hidden means not rendered or invisible (sphinx-togglebutton
# folds with visibility: hidden and zero height).
CONTENT_VISIBLE = """
(solution) => [...solution.children].filter((child) => !child.classList.contains("admonition-title"))
  .map((child) => child.checkVisibility({visibilityProperty: true, opacityProperty: true}))
"""


def settled_visibility(solution, want_all: bool) -> list[bool]:
    """The solution's content visibility once it has settled on `want_all` (sphinx-togglebutton animates
    the change), or as it is after a few seconds, so that a failure shows what the reader saw."""
    deadline = time.monotonic() + 5
    while True:
        shown = solution.evaluate(CONTENT_VISIBLE)
        settled = bool(shown) and all(shown) if want_all else not any(shown)
        if settled or time.monotonic() > deadline:
            return shown
        time.sleep(0.05)


def pages_with(html_dir, docnames, css_class: str) -> list[str]:
    return [name for name in docnames if f'class="{css_class} ' in (html_dir / f"{name}.html").read_text()]


def open_page(offline, docname):
    page = offline.context.new_page()
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    page.goto(offline.url(docname), wait_until="load")
    return page, errors


def test_exercise_titles_show_their_stars(offline, html_dir, docnames):
    pages = pages_with(html_dir, docnames, "exercise")
    assert len(pages) >= 2, f"exercises found on {pages} only"
    for name in pages:
        page, errors = open_page(offline, name)
        titles = page.locator("div.exercise > p.admonition-title").all_inner_texts()
        page.close()
        assert titles, f"{name}: no exercise titles"
        bad = [title for title in titles if not EXERCISE_TITLE.match(title.strip())]
        assert bad == [], f"{slug(name)}: exercise titles without ★ difficulty: {bad}"
        assert errors == [], f"{slug(name)}: console errors {errors}"


@pytest.mark.skipif(STUDENT_EDITION, reason="the student edition has no solutions (checked below)")
def test_solutions_are_folded_on_load_and_unfold_on_a_click(offline, html_dir, docnames):
    pages = pages_with(html_dir, docnames, "solution")
    assert pages == pages_with(html_dir, docnames, "exercise"), "a page has exercises without solutions or the reverse"
    for name in pages:
        page, errors = open_page(offline, name)
        solutions = page.locator("div.solution")
        count = solutions.count()
        # sphinx-togglebutton folds each solution once the page has loaded.
        page.wait_for_function(f"() => document.querySelectorAll('div.solution.toggle-hidden').length === {count}",
                               timeout=10 * SECONDS)
        for index in range(count):
            shown = solutions.nth(index).evaluate(CONTENT_VISIBLE)
            assert shown and not any(shown), f"{slug(name)}: solution {index + 1} is not folded on load: {shown}"
        url = page.url
        # A reader clicks the title text (which holds a link back to the exercise) of the first solution
        # and the "Click to show" button of the last: both unfold, and the page does not jump away.
        solutions.first.locator("p.admonition-title a").first.click(force=True)
        if count > 1:
            solutions.last.locator("button.toggle-button").click()
        for index in sorted({0, count - 1}):
            shown = settled_visibility(solutions.nth(index), want_all=True)
            assert shown and all(shown), f"{slug(name)}: solution {index + 1} did not unfold on a click: {shown}"
        assert page.url == url, f"{slug(name)}: clicking a solution's title went to {page.url}"
        solutions.first.locator("button.toggle-button").click()
        assert not any(settled_visibility(solutions.first, want_all=False)), f"{slug(name)}: a second click did not fold it"
        page.close()
        assert errors == [], f"{slug(name)}: console errors while unfolding: {errors}"


@pytest.mark.skipif(not STUDENT_EDITION, reason="only the student edition (MNISTLAB_BOOK_ROOT=_build/student)")
def test_student_edition_shows_exercises_and_stubs_but_no_solution(offline, html_dir, docnames):
    pages = pages_with(html_dir, docnames, "exercise")
    assert pages, "the student edition has no exercises"
    for name in pages:
        page, errors = open_page(offline, name)
        assert page.locator("div.solution").count() == 0, f"{slug(name)}: a solution is shown"
        stubs = page.locator("div.cell_input", has_text="# your code here").count()
        kinds = page.locator("div.exercise.code, div.exercise.predict").count()
        page.close()
        assert stubs == kinds, f"{slug(name)}: {stubs} stub cells for {kinds} code/predict exercises"
