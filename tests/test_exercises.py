"""The chapters' exercises follow CONTRIBUTING.md: stars, kind, a link to a section, one folded gated solution each."""

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
sys.path.insert(0, str(ROOT / "tools"))
import execute_book  # noqa: E402
import student_edition  # noqa: E402  (the one parser of exercises and solutions)

CHAPTERS = execute_book.toc_chapters()
# Chapters without exercises of their own: the introduction, and the summary, which lists the others'.
NO_EXERCISES = {"intro", "summary"}
# Chapters still to be rewritten (issue #12) that hold fewer than two exercises for now. Remove a
# chapter from this set when its exercise section is written; the test below says when.
AWAITING_EXERCISES = set()
TITLE = re.compile(r"^(?P<stars>★{1,3}) (?P<text>[^★\s].*)$")
REFERENCE = re.compile(r"\{ref\}`(?:[^`<]*<)?(?P<label>[^`<>]+)>?`")
SECTION_LABEL = re.compile(r"^\((?P<label>[^()\s]+)\)=\n#{1,6} ", re.MULTILINE)
ANY_LABEL = re.compile(r"^\((?P<label>[^()\s]+)\)=$", re.MULTILINE)
CODE_CELL = re.compile(r"^(`{3,}|:{3,})\{code-cell\}", re.MULTILINE)


def text_of(slug: str) -> str:
    return (BOOK / f"{slug}.md").read_text()


def parsed(slug: str):
    try:
        return student_edition.parse(text_of(slug))
    except student_edition.ConventionError as error:
        pytest.fail(f"book/{slug}.md: {error}")


def section_labels() -> set[str]:
    return {match["label"] for slug in CHAPTERS for match in SECTION_LABEL.finditer(text_of(slug))}


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(0-based index, line) of every line outside fenced blocks (code cells, directives, console)."""
    found, fence = [], None
    for index, line in enumerate(text.splitlines()):
        stripped = line.strip()
        if fence is None:
            opening = re.match(r"^(`{3,}|:{3,})", stripped)
            if opening:
                fence = opening.group(1)
            else:
                found.append((index, line))
        elif len(stripped) >= len(fence) and set(stripped) == {fence[0]}:
            fence = None
    return found


def exercise_section_line(slug: str) -> int | None:
    """0-based line of `(<slug>-exercises)=`, which must be followed by `## Exercises`."""
    lines = text_of(slug).splitlines()
    marker = f"({slug}-exercises)="
    if marker not in lines:
        return None
    index = lines.index(marker)
    assert lines[index + 1:index + 2] == ["## Exercises"], f"{slug}: {marker} must be followed by '## Exercises'"
    return index


@pytest.mark.parametrize("slug", CHAPTERS)
def test_every_exercise_has_stars_kind_label_and_a_section_link(slug):
    exercises, _ = parsed(slug)
    sections = section_labels()
    for exercise in exercises:
        where = f"book/{slug}.md line {exercise.start + 1}"
        title = TITLE.match(exercise.argument)
        assert title, f"{where}: the title must start with ★, ★★ or ★★★ and a space: {exercise.argument!r}"
        label = exercise.options.get("label", "")
        assert re.fullmatch(rf"{re.escape(slug)}-ex-[a-z0-9]+(-[a-z0-9]+)*", label), (
            f"{where}: :label: must be {slug}-ex-<short-name> (lower case, hyphens), got {label!r}")
        kind = exercise.options.get("class")
        assert kind in student_edition.KINDS, f"{where}: :class: must be one of {student_edition.KINDS}, got {kind!r}"
        links = [match["label"] for match in REFERENCE.finditer(exercise.body)]
        assert any(link in sections for link in links), (
            f"{where}: the text must link with {{ref}} to the section it practises (a label before a heading); "
            f"links found: {links}")


@pytest.mark.parametrize("slug", CHAPTERS)
def test_every_exercise_has_one_folded_solution_right_after_it(slug):
    exercises, solutions = parsed(slug)
    labels = [exercise.options.get("label") for exercise in exercises]
    orphans = [solution.label for solution in solutions if solution.label not in labels]
    assert orphans == [], f"book/{slug}.md: solutions to no exercise of this chapter: {orphans}"
    for number, exercise in enumerate(exercises):
        label = exercise.options.get("label")
        matching = [solution for solution in solutions if solution.label == label]
        assert len(matching) == 1, f"book/{slug}.md: {label} has {len(matching)} solutions, needs exactly one"
        solution = matching[0]
        next_start = exercises[number + 1].start if number + 1 < len(exercises) else float("inf")
        assert exercise.end < solution.start < next_start, (
            f"book/{slug}.md: the solution to {label} must follow it, before the next exercise")
        assert solution.options.get("class") == "dropdown", (
            f"book/{slug}.md: the solution to {label} needs ':class: dropdown' (folded in the HTML)")
        if exercise.options.get("class") in ("code", "predict"):
            assert CODE_CELL.search(solution.text), (
                f"book/{slug}.md: {label} is a {exercise.options.get('class')} exercise; its solution needs a "
                "code cell that runs in the chapter")


def test_labels_are_unique_across_the_book():
    seen = {}
    for slug in CHAPTERS:
        text = text_of(slug)
        exercises, _ = parsed(slug)
        labels = [match["label"] for match in ANY_LABEL.finditer(text)]
        labels += [exercise.options.get("label") for exercise in exercises]
        for label in labels:
            assert label not in seen, f"label {label!r} is defined in both book/{seen[label]}.md and book/{slug}.md"
            seen[label] = slug


@pytest.mark.parametrize("slug", CHAPTERS)
def test_exercises_sit_in_the_last_section(slug):
    exercises, _ = parsed(slug)
    section = exercise_section_line(slug)
    if not exercises:
        return
    assert section is not None, f"book/{slug}.md has exercises but no '({slug}-exercises)=' / '## Exercises' section"
    early = [exercise.options.get("label") for exercise in exercises if exercise.start < section]
    assert early == [], f"book/{slug}.md: exercises before the Exercises section: {early}"
    later_headings = [line for index, line in prose_lines(text_of(slug))
                      if index > section + 1 and re.match(r"#{1,2} ", line)]
    assert later_headings == [], f"book/{slug}.md: the Exercises section must be the chapter's last: {later_headings}"


@pytest.mark.parametrize("slug", [slug for slug in CHAPTERS if slug not in NO_EXERCISES])
def test_each_chapter_has_two_to_four_exercises(slug):
    count = len(parsed(slug)[0])
    if slug in AWAITING_EXERCISES:
        assert count < 2, f"{slug} has {count} exercises now: remove it from AWAITING_EXERCISES in this test"
        return
    assert 2 <= count <= 4, f"book/{slug}.md has {count} exercises; each chapter ends with 2-4"


def test_summary_lists_every_exercise_section_and_no_other():
    listed = {match["label"] for match in REFERENCE.finditer(text_of("summary"))
              if match["label"].endswith("-exercises")}
    sections = {f"{slug}-exercises" for slug in CHAPTERS
                if slug != "summary" and exercise_section_line(slug) is not None}
    assert listed - {"summary-exercises"} == sections, (
        f"the summary's list of exercise sections is out of date: missing {sorted(sections - listed)}, "
        f"extra {sorted(listed - sections)}")


# The student-edition transformation on a small chapter.
SAMPLE = """\
(sample-section)=
## Section

```{code-cell} ipython3
x = 2


y = 3
```

(sample-exercises)=
## Exercises

````{exercise} ★ Square
:label: sample-ex-square
:class: code

Square x. Practises {ref}`sample-section`.
````

````{solution-start} sample-ex-square
:class: dropdown
````

The secret square:

```{code-cell} ipython3
print(x ** 2)
```

````{solution-end}
````

````{exercise} ★★ Derive
:label: sample-ex-derive
:class: pencil

Derive. Practises {ref}`sample-section`.
````

````{solution-start} sample-ex-derive
:class: dropdown
````
A secret derivation.
````{solution-end}
````
"""


def test_student_text_removes_solutions_and_stubs_code_exercises():
    text = student_edition.student_text(SAMPLE)
    assert "secret" not in text and "solution" not in text and "x ** 2" not in text
    assert "x = 2\n\n\ny = 3" in text, "blank lines inside code cells must stay"
    stub = "````\n\n```{code-cell} ipython3\n# your code here\n```\n"
    assert text.count("# your code here") == 1 and stub in text
    assert text.index("Square x.") < text.index("# your code here") < text.index("★★ Derive")
    assert "\n\n\n" not in text.split("y = 3")[1], "removing a solution leaves a single blank line"


@pytest.mark.parametrize("broken, message", [
    (SAMPLE.replace("````{solution-end}\n````\n\n````{exercise} ★★", "````{exercise} ★★"),
     "inside the solution"),
    (SAMPLE.replace("solution-start} sample-ex-derive", "solution} sample-ex-derive"), "gated"),
    (SAMPLE + "````{solution-end}\n````\n", "without a solution-start"),
    (SAMPLE + "````{exercise} ★ Open\n:label: sample-ex-open\n", "never closed"),
])
def test_student_text_refuses_what_it_cannot_strip(broken, message):
    with pytest.raises(student_edition.ConventionError, match=message):
        student_edition.student_text(broken)
