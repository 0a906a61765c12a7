"""Griffe extension for the API reference: render docstring doctests as code blocks.

arjax docstrings follow the Google style, but many put their doctests under an ``Example:``
heading (which Griffe reads as an admonition, i.e. Markdown) or under no heading at all. Markdown
would read ``>>>`` as nested block quotes and ``[...]`` in the expected output as links, so this
extension wraps every doctest block (a ``>>>`` line, its ``...`` continuations and its expected
output, up to a blank line) in a ``pycon`` fence before the docstring is parsed. The source files
are not touched; ``tests/test_docs.py`` runs the same doctests.
"""

import griffe

FENCE = "```"


def fence_doctests(text: str) -> str:
    """Wrap each doctest block of ``text`` in a ```` ```pycon ```` fence at the block's indentation."""
    lines = text.splitlines()
    out: list[str] = []
    in_fence = False
    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.lstrip()
        if stripped.startswith(FENCE):
            in_fence = not in_fence
        if in_fence or not stripped.startswith(">>>"):
            out.append(line)
            index += 1
            continue
        indent = line[: len(line) - len(stripped)]
        out.append(f"{indent}{FENCE}pycon")
        while index < len(lines) and lines[index].strip() and lines[index].startswith(indent):
            out.append(lines[index])
            index += 1
        out.append(f"{indent}{FENCE}")
    return "\n".join(out)


class DoctestFences(griffe.Extension):
    """Fence the doctests of every object's docstring as soon as Griffe creates the object."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
