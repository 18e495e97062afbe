"""What a reader clicks: sidebar, search, launch and download buttons, the dark-mode switch."""

from __future__ import annotations

import re
from collections import Counter
from urllib.parse import urlsplit

import pytest
import yaml

from book_browser import BOOK_ROOT, SCREENSHOT_DIR, SECONDS, slug, visit


def page_path(url: str) -> str:
    return urlsplit(url).path


def test_every_chapter_is_in_the_sidebar_of_every_page(visits, docnames, docname):
    page = visits[docname]
    linked = {page_path(link["href"]) for link in page.data["sidebar"]}
    # The current page links to "#" in the sidebar, which resolves to the page itself.
    missing = [slug(name) for name in docnames if page_path(visits[name].url) not in linked]
    assert missing == [], f"sidebar of {page.url} lacks {missing}"


def test_sidebar_clicks_reach_every_chapter(offline, visits, docnames):
    page = offline.context.new_page()
    page.goto(offline.url(docnames[0]))
    for name in docnames[1:]:
        link = page.locator(f'nav.bd-docs-nav a.reference.internal[href$="{slug(name)}.html"]').first
        link.click()
        page.wait_for_url(f"**/{name}.html", timeout=10 * SECONDS)
        title = page.locator("article.bd-article h1").first.inner_text().strip(" #¶\n")
        assert title == visits[name].data["title"], f"clicking {name} in the sidebar opened {page.url}"
    page.close()


def unique_word(docname: str, visits: dict) -> str | None:
    """A word of this page's prose that no other page's text contains, even inside a longer word."""
    others = [visits[name].data["text"].lower() for name in visits if name != docname]
    counts = Counter(re.findall(r"[a-z]{8,}", visits[docname].data["paragraphs"].lower()))
    candidates = [word for word in counts if not any(word in text for text in others)]
    return min(candidates, key=lambda word: (-counts[word], word)) if candidates else None


def test_search_finds_a_chapter_by_a_word_only_it_contains(offline, visits, docname):
    word = unique_word(docname, visits)
    assert word, f"{docname} has no word of its own to search for"
    page = offline.context.new_page()
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{offline.base_url}search.html?q={word}")
    page.wait_for_function(
        "() => { const s = document.querySelector('#search-results .search-summary'); return s && s.innerText; }"
    )
    found = [page_path(href) for href in page.locator("#search-results ul.search li a").evaluate_all(
        "links => links.map((a) => a.href)")]
    summary = page.locator("#search-results .search-summary").inner_text()
    page.close()
    assert page_path(offline.url(docname)) in found, f"searching {word!r} found {found} ({summary})"
    assert errors == [], f"console errors on the search page: {errors}"


def repository_settings() -> dict:
    config = yaml.safe_load((BOOK_ROOT / "_config.yml").read_text())
    repository = config["repository"]
    owner_repo = "/".join(urlsplit(repository["url"]).path.strip("/").split("/")[:2])
    book_path = (repository.get("path_to_book") or "").strip("/")
    return {
        "owner_repo": owner_repo,
        "branch": repository.get("branch", "main"),
        "prefix": f"{book_path}/" if book_path else "",
        "binder": config["launch_buttons"]["binderhub_url"].rstrip("/"),
        "colab": config["launch_buttons"]["colab_url"].rstrip("/"),
    }


def test_launch_buttons_open_this_chapter_notebook(visits, docname):
    settings = repository_settings()
    notebook = f"{settings['prefix']}{docname}.ipynb"
    assert (BOOK_ROOT / notebook).is_file(), f"launch buttons would open {notebook}, which does not exist"
    buttons = {link["text"]: link["href"] for link in visits[docname].data["launch"]}
    binder = f"{settings['binder']}/v2/gh/{settings['owner_repo']}/{settings['branch']}?urlpath="
    assert buttons.get("Binder", "").startswith(binder), f"Binder button: {buttons}"
    assert buttons["Binder"].endswith(f"/tree/{notebook}"), f"Binder button: {buttons['Binder']}"
    colab = f"{settings['colab']}/github/{settings['owner_repo']}/blob/{settings['branch']}/{notebook}"
    assert buttons.get("Colab") == colab, f"Colab button: {buttons}"


@pytest.mark.parametrize("suffix", [".ipynb", ".md"])
def test_download_buttons_serve_this_chapter_files(offline, visits, docname, suffix):
    buttons = {link["text"]: link["href"] for link in visits[docname].data["download"]}
    assert suffix in buttons, f"no {suffix} download button on {visits[docname].url}: {buttons}"
    assert page_path(buttons[suffix]).endswith(f"/_sources/{docname}{suffix}"), buttons[suffix]
    response = offline.context.request.get(buttons[suffix])
    assert response.ok, f"{buttons[suffix]}: HTTP {response.status}"
    # The download is the very file of the repository, not a re-rendering of it.
    assert response.body() == (BOOK_ROOT / f"{docname}{suffix}").read_bytes()


def test_dark_mode_switch_changes_the_theme(offline, docnames):
    page = offline.context.new_page()
    chapter = docnames[1] if len(docnames) > 1 else docnames[0]
    page.goto(offline.url(chapter))
    read = "() => [document.documentElement.dataset.theme, document.documentElement.dataset.mode," \
           " getComputedStyle(document.body).backgroundColor]"
    states = [tuple(page.evaluate(read))]
    button = page.locator("button.theme-switch-button:visible").first
    for _ in range(3):
        button.click()
        states.append(tuple(page.evaluate(read)))
    themes = {theme: background for theme, _, background in states}
    assert {"light", "dark"} <= set(themes), f"theme never switched: {states}"
    assert len({mode for _, mode, _ in states}) >= 2, f"data-mode never changed: {states}"
    assert themes["light"] != themes["dark"], f"dark mode did not change the page colours: {states}"
    page.close()


def test_dark_mode_screenshot_of_a_chapter(browser, base_url, docnames):
    # For review: plots and tables must stay readable when the reader's system prefers dark.
    from book_browser import OfflineContext

    context = OfflineContext(browser, base_url, color_scheme="dark")
    try:
        chapter = docnames[-1]
        for name in docnames:
            if slug(name) in ("depth_l2", "likelihood"):
                chapter = name
                break
        page_visit = visit(context, chapter, SCREENSHOT_DIR / f"dark-{slug(chapter)}.png")
    finally:
        context.close()
    assert page_visit.console_errors == [], page_visit.console_errors
