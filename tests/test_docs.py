"""The documentation runs: every ```python block of docs/, every docstring example, and the site build.

Each page's ```python blocks run in order in one namespace, like the cells of a notebook, so a
page that stops working (an API change, a wrong number in an assert) fails here. Docstring
examples run with ``doctest`` over every public module of ``arjax``. The site builds with
``mkdocs build --strict`` when mkdocs is installed (the ``docs`` extra).
"""

import doctest
import importlib
import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if not any(part.startswith("_") for part in p.relative_to(DOCS).parts))
# Pages that teach by example must show (and so run) some code.
PAGES_WITH_CODE = [
    "quickstart.md", "learn-from-data.md", "learn-from-energy.md", "posteriors.md", "sequences-over-time.md",
    "continuous.md", "rl-fine-tuning.md", "crystals.md", "parallel.md", "performance.md",
]
# Pages whose code takes longest run in the slow tier; their samplers and losses have fast tests of their own.
SLOW_PAGES = {"continuous.md", "posteriors.md", "rl-fine-tuning.md"}
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)$")


def code_blocks(text: str, language: str = "python") -> list[tuple[int, str]]:
    """``(line, code)`` of every fenced block of ``language`` in Markdown ``text`` (indented ones too)."""
    blocks, lines, index = [], text.splitlines(), 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        body, start = [], index + 1
        index += 1
        while index < len(lines):
            closing = FENCE.match(lines[index])
            if closing and closing["fence"].startswith(fence) and not closing["info"].strip():
                break
            body.append(lines[index][len(indent) :] if lines[index].startswith(indent) else lines[index].lstrip())
            index += 1
        index += 1
        words = opening["info"].strip().split()
        if words and words[0].lstrip(".{").rstrip("}") == language:
            blocks.append((start + 1, "\n".join(body) + "\n"))
    return blocks


def test_code_block_extraction():
    text = "a\n```python\nx = 1\n```\n```bash\nls\n```\n!!! note\n    ```python\n    y = 2\n    ```\n"
    assert code_blocks(text) == [(3, "x = 1\n"), (10, "y = 2\n")]


def test_every_tutorial_page_has_code():
    names = {p.relative_to(DOCS).as_posix() for p in PAGES}
    for name in PAGES_WITH_CODE:
        assert name in names, f"docs/{name} is missing"
        assert code_blocks((DOCS / name).read_text()), f"docs/{name} has no ```python block"


def _page_param(page: Path):
    name = page.relative_to(DOCS).as_posix()
    return pytest.param(page, id=name, marks=[pytest.mark.slow] if name in SLOW_PAGES else [])


@pytest.mark.parametrize("page", [_page_param(p) for p in PAGES if code_blocks(p.read_text())])
def test_page_code_runs(page, tmp_path, monkeypatch):
    """Run the page's ```python blocks in order, sharing one namespace, in a scratch directory."""
    blocks = code_blocks(page.read_text())
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    start, cpu = time.perf_counter(), time.process_time()
    for line, code in blocks:  # padded so that tracebacks give the line numbers of the page
        exec(compile("\n" * (line - 1) + code, str(page), "exec"), namespace)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"{page.name}: {len(blocks)} blocks in {wall:.1f} s ({cpu:.1f} s CPU)")


def public_modules() -> list[str]:
    """Every module of the arjax package whose dotted name has no part starting with an underscore."""
    package = ROOT / "arjax"
    names = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not any(part.startswith("_") for part in parts):
            names.append(".".join(parts))
    return names


@pytest.mark.slow
@pytest.mark.parametrize("module_name", public_modules())
def test_docstring_examples(module_name):
    """The ``>>>`` examples in the docstrings of ``module_name`` give the output they show."""
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    failures = []
    for test in finder.find(module, module_name):
        runner.run(test, out=failures.append)  # examples marked "# doctest: +SKIP" are not run
    assert not failures, "".join(failures)


SITE_TEST = "test_site_builds_without_warnings"


def missing_site_tools() -> str | None:
    for name in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        if importlib.util.find_spec(name.split(".")[0]) is None or importlib.util.find_spec(name) is None:
            return name
    return None


@pytest.fixture(scope="module", autouse=True)
def site_build(request, tmp_path_factory):
    """Start ``mkdocs build --strict`` in the background when the module starts, if the site test is selected.

    The build is a separate process, so on a multi-core machine it overlaps with the page tests;
    ``test_site_builds_without_warnings`` waits for it.
    """
    if missing_site_tools() or not any(item.name == SITE_TEST for item in request.session.items):
        yield None
        return
    site = tmp_path_factory.mktemp("site")
    log = open(site / "build.log", "w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(site / "html")],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    yield process, site, log
    if process.poll() is None:
        process.kill()
        process.wait()
    log.close()


def test_site_builds_without_warnings(site_build):
    missing = missing_site_tools()
    if missing:
        pytest.skip(f"{missing} is not installed (pip install -e '.[docs]'); the site build is not checked")
    process, site, log = site_build
    returncode = process.wait(timeout=300)
    log.seek(0)
    output = log.read()
    assert returncode == 0, output
    assert "WARNING" not in output, output
    for page in ("nn", "mcmc", "mcmc-numpyro", "svi", "crystal", "parallel"):
        assert (site / "html" / "api" / page / "index.html").exists(), page
