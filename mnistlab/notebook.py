"""`glue` for the chapters: myst_nb's glue records, shown to readers in Jupyter too, with or without myst_nb."""

from __future__ import annotations

# myst_nb's prefix for mime types that Jupyter does not render (myst_nb.ext.glue.GLUE_PREFIX).
GLUE_PREFIX = "application/papermill.record/"
# Name of the visible line that follows a hidden value: "<name>" + SHOWN_SUFFIX (never pasted in the text).
SHOWN_SUFFIX = ":shown"
LONGEST_SHOWN = 120  # characters of a value's text shown on its line; longer reprs (tables) are summarised


def glue(name: str, value, display: bool = True) -> None:
    """Record `value` under `name` for the book's {glue:text}`name` roles, exactly as `myst_nb.glue` does.

    myst_nb is used when it is installed (the book build); where it is not (Colab, Binder), the same
    output is written. With `display=False` the value is hidden from Jupyter, so one more output follows
    it: a line `name = value` that readers of the notebook see under the cell. The book drops that line
    (it is a glue record too, under the name `name:shown`, which the text never pastes), so pages show
    the numbers in the prose only. Needs IPython, which every Jupyter kernel has.
    """
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"glue name must be a non-empty string without ':', got {name!r}")
    from IPython.core.formatters import format_display_data
    from IPython.display import display as show

    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        myst_glue = None
    if myst_glue is not None:
        myst_glue(name, value, display=display)
    else:
        bundle, metadata = format_display_data(value)
        prefix = "" if display else GLUE_PREFIX
        metadata["scrapbook"] = {"name": name, "mime_prefix": prefix}
        show({prefix + key: data for key, data in bundle.items()}, raw=True, metadata=metadata)
    if display:
        return  # Jupyter shows the value itself
    bundle, _ = format_display_data(value)
    show({"text/plain": f"{name} = {shown_text(bundle.get('text/plain', ''), value)}"}, raw=True,
         metadata={"scrapbook": {"name": name + SHOWN_SUFFIX, "mime_prefix": GLUE_PREFIX}})


def shown_text(text: str, value) -> str:
    """The value as its line shows it: its repr, or a short description of a long, multi-line one."""
    if "\n" in text or len(text) > LONGEST_SHOWN:
        return f"({type(value).__name__}; shown in the book)"
    return text
