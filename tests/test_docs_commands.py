"""Every command example in README.md and docs/*.md runs, in order, on a scratch lake (issue 14).

One test per fenced shell block (```` ```bash ````, ```` ```sh ````, ```` ```console ````), named by page and line:
the blocks of a page share one bash and one scratch lake (``tests/doccmds.py`` describes the folder,
the markers and the fork server). A command must exit 0, or the code its trailing ``# exits N`` names.
A block marked ``<!-- doctest: skip — reason -->`` is reported as skipped with that reason; one marked
``<!-- doctest: needs VAR -->`` runs only where VAR is set (``DREAMS_RESEARCH_DATA``: the research
transcripts). Untagged fences (synopses, output) are not run, but every ``--flag`` of their
``dreams …`` lines, and of inline ``dreams …`` code in the text, must exist on that command.

    .venv/bin/python -m pytest -m docs            # or: tests/test_docs_commands.py -k review.md
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import time
from pathlib import Path

import pytest

from tests import doccmds
from tests.doccmds import PAGES, Block, DocPage, parse_page

pytestmark = [pytest.mark.docs, pytest.mark.flow]

BLOCKS: list[Block] = [b for page in PAGES for b in parse_page(page) if b.runnable]


def _env() -> dict[str, str]:
    from dreaming.settings import get_settings

    keep = ("LANG", "LC_ALL", "TMPDIR", "USER", "LOGNAME", "TZ")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update({k: v for k, v in os.environ.items() if k.startswith("PREFECT_")})
    env["TERM"] = "dumb"
    research = os.environ.get("DREAMS_RESEARCH_DATA") or str(get_settings().research_data)
    if Path(research).is_dir():
        env["DREAMS_RESEARCH_DATA"] = research
    return env


class Pages:
    """The scratch page of each doc page, made when its first block runs; a record of every outcome."""

    def __init__(self, root: Path, seed: Path, env: dict[str, str], client: str | None):
        self.root, self.seed, self.env, self.client = root, seed, env, client
        self.open: dict[str, DocPage] = {}
        self.failed: dict[str, str] = {}  # page -> where it failed
        self.record: list[tuple[str, str, int, int, float]] = []  # (where, outcome, run, skipped, seconds)
        self.commands: list[tuple[float, str, str]] = []  # (seconds, page:line, command) of every command run

    def get(self, page: str) -> DocPage:
        if page not in self.open:
            for other in [p for p in self.open if p != page]:  # pages run one after another
                self.open.pop(other).close()
            scratch = self.root / page.replace("/", "_").removesuffix(".md")
            self.open[page] = DocPage(page, scratch, self.seed, self.env, self.client)
        return self.open[page]

    def close(self) -> None:
        for p in self.open.values():
            p.close()


@pytest.fixture(scope="module")
def pages(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("docs")
    server = None
    if os.environ.get("DREAMS_DOCTEST_FORK", "1") != "0":
        server = doccmds.ForkServer(root)  # imports while the Prefect server starts
    seed = doccmds.seed_folder(root / "seed")
    request.getfixturevalue("prefect_harness")
    from prefect.settings import PREFECT_API_URL

    env = {**_env(), "PREFECT_API_URL": PREFECT_API_URL.value()}
    if server:
        server.configure({k: v for k, v in env.items() if k.startswith("PREFECT_")})
        server.wait_ready()
    state = Pages(root, seed, env, server.client() if server else None)
    yield state
    state.close()
    if server:
        server.close()
    tr = request.config.pluginmanager.getplugin("terminalreporter")
    cap = request.config.pluginmanager.getplugin("capturemanager")
    record = sorted(SKIPPED + state.record, key=lambda r: (r[0].split(":")[0], int(r[0].split(":")[1])))
    if tr and cap and record:
        with cap.global_and_fixture_disabled():
            run = sum(r[2] for r in record)
            skipped = sum(r[3] for r in record)
            secs = sum(r[4] for r in record)
            tr.write_line(f"\ndocs commands: {run} run, {skipped} in skipped blocks, {secs:.0f} s running them")
            for where, outcome, n, s, t in record:
                tr.write_line(f"  {where:24} {outcome:8} {n:3} run {s:3} skipped {t:6.1f} s")
            tr.write_line("slowest commands:")
            for t, where, text in sorted(state.commands, reverse=True)[:8]:
                tr.write_line(f"  {t:5.1f} s  {where:24} {text[:90]}")


def _report(block: Block, r: doccmds.Result, page: DocPage) -> str:
    got = "did not finish (timed out, or the shell died)" if r.rc is None else f"exited {r.rc}"
    return (f"{block.page}:{r.command.line}: `{r.command.text}` {got} (the doc expects {r.command.expect}) "
            f"after {r.seconds:.1f} s\n--- stdout ---\n{r.out}\n--- stderr ---\n{r.err}\n"
            f"scratch: {page.work} (DREAMS_HOME={page.env['DREAMS_HOME']}, HOME={page.home})")


SKIPPED: list[tuple[str, str, int, int, float]] = []  # blocks skipped before the fixture was needed


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_doc_block_runs(block: Block, request):
    reason = block.skip_reason(_env())
    if reason is not None:  # decided before any server starts, so `-k` on skipped blocks costs nothing
        SKIPPED.append((block.where, "skipped", 0, len(block.commands), 0.0))
        pytest.skip(f"{block.where}: {reason}")
    pages: Pages = request.getfixturevalue("pages")
    if block.page in pages.failed:
        pages.record.append((block.where, "skipped", 0, len(block.commands), 0.0))
        pytest.skip(f"{block.where}: an earlier block of {block.page} failed ({pages.failed[block.page]})")
    page = pages.get(block.page)
    t0 = time.monotonic()
    results = page.run_block(block)
    ran = [r for r in results if r.rc is not None]
    pages.commands += [(r.seconds, f"{block.page}:{r.command.line}", r.command.text.splitlines()[0]) for r in ran]
    bad = next((r for r in results if r.rc != r.command.expect), None)
    pages.record.append((block.where, "failed" if bad else "passed", len(ran), 0, time.monotonic() - t0))
    if bad:
        pages.failed[block.page] = f"{block.page}:{bad.command.line}"
        pytest.fail(_report(block, bad, page), pytrace=False)


# --- what does not run: synopses and inline examples name real commands and flags -----------------------

@functools.lru_cache(maxsize=1)
def _cli():
    import typer.main

    from dreaming.cli import app

    return typer.main.get_command(app)


def _resolve(root, words: list[str]):
    """The click command a `dreams …` line names, and the words after its name."""
    cmd, path = root, ["dreams"]
    rest = words[1:]
    while getattr(cmd, "commands", None) and rest and rest[0] in cmd.commands:
        cmd = cmd.commands[rest[0]]
        path.append(rest.pop(0))
    return cmd, " ".join(path), rest


def _flags(cmd) -> set[str]:
    return {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}


_INLINE = re.compile(r"`(dreams [^`]+)`")


def _doc_command_lines() -> list[tuple[str, int, str, bool]]:
    """(page, line, text, run) of every `dreams …` in a synopsis fence, a shell fence (run) or inline code."""
    out = []
    for page in PAGES:
        for b in parse_page(page):
            if b.runnable:
                for c in b.commands:
                    for part in re.split(r"\|\||&&|[|;]|\$\(", c.text.replace("\\\n", " ")):
                        part = part.strip().removeprefix(".venv/bin/")
                        if part.startswith("dreams "):
                            out.append((page, c.line, part, True))
            elif b.lang == "":
                joined: list[tuple[int, str]] = []
                for n, line in b.body:  # a synopsis continues on indented lines
                    if line.startswith("dreams "):
                        joined.append((n, line))
                    elif joined and line.startswith(" ") and line.strip().startswith("["):
                        joined[-1] = (joined[-1][0], joined[-1][1] + " " + line.strip())
                out += [(page, n, t, False) for n, t in joined]
        in_fence = False
        for n, line in enumerate((doccmds.ROOT / page).read_text().splitlines(), 1):
            if line.lstrip().startswith(("```", "~~~")):
                in_fence = not in_fence
            elif not in_fence:
                out += [(page, n, m.group(1), False) for m in _INLINE.finditer(line)]
    return out


def _words(text: str) -> list[str]:
    return re.findall(r"--?[A-Za-z][\w-]*|[^\s\[\]|…]+", text.split("#")[0])


def _alternatives(root, lines):
    """Split a table cell's `dreams store list \\| show STORE \\| export …` into one line per command."""
    for page, line, text, run in lines:
        if not run:  # a synopsis line may end in a description after a run of spaces
            text = re.split(r"\s{4,}", text.strip())[0]
        first, *others = text.split(" \\| ")
        words = _words(first)
        yield page, line, text, run, words, first
        _, name, _ = _resolve(root, words)
        parent = name.split()[:-1] or ["dreams"]
        for alt in others:  # another command of the group, or other options of the same command
            base = [] if alt.startswith("dreams ") else name.split() if alt.startswith("-") else parent
            yield page, line, text, run, [*base, *_words(alt)], " ".join([*base, alt])


def _too_many_arguments(cmd, synopsis: str) -> int:
    """How many more positional words a synopsis gives `cmd` than it takes (0: fine)."""
    tokens = synopsis.split("#")[0].replace("\\|", "|").replace("[", " ").replace("]", " ").split()
    tokens = [t for t in tokens if t not in ("...", "…", "|")]
    _, _, rest = _resolve(_cli(), tokens)
    options = {o: p for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
    takes = sum(float("inf") if p.nargs == -1 else p.nargs for p in cmd.params
                if getattr(p, "param_type_name", "") == "argument")
    given, i = 0, 0
    while i < len(rest):
        t = rest[i].split("=")[0]
        p = options.get(t)
        if p is not None:
            i += 1 if (getattr(p, "is_flag", False) or getattr(p, "count", False) or "=" in rest[i]) else 2
            continue
        if not t.startswith("-"):
            given += 1
        i += 1
    return max(0, int(given - takes)) if takes != float("inf") else 0


def test_documented_flags_exist():
    root = _cli()
    problems = []
    for page, line, text, run, words, part in _alternatives(root, _doc_command_lines()):
        cmd, name, rest = _resolve(root, words)
        if name == "dreams" and rest and not rest[0].startswith("-"):
            problems.append(f"{page}:{line}: `{text}`: no command `dreams {rest[0]}`")
            continue
        extra = 0 if run else _too_many_arguments(cmd, part)
        if extra:
            problems.append(f"{page}:{line}: `{text}`: `{name}` takes {extra} argument(s) fewer than shown")
        for w in rest:
            flag = w.split("=")[0]
            if flag.startswith("--") and flag not in _flags(cmd):
                problems.append(f"{page}:{line}: `{text}`: `{name}` has no option {flag}")
    assert not problems, "\n".join(problems)


def _commands_of_cli() -> list[str]:
    out = []

    def walk(cmd, path):
        if getattr(cmd, "commands", None):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
        else:
            out.append(" ".join(path))

    walk(_cli(), ["dreams"])
    return out


def test_every_command_has_a_doc_example():
    """Each command appears in a shell block of the docs (run, or skipped with a stated reason)."""
    root = _cli()
    shown = set()
    for b in BLOCKS:
        for c in b.commands:
            for part in re.split(r"\|\||&&|[|;]|\$\(", c.text.replace("\\\n", " ")):
                part = part.strip().removeprefix(".venv/bin/")
                if part.startswith("dreams "):
                    try:
                        shown.add(_resolve(root, shlex.split(part, comments=True))[1])
                    except ValueError:
                        shown.add(_resolve(root, part.split())[1])
    missing = [c for c in _commands_of_cli() if c not in shown]
    assert not missing, f"commands without an example in a shell block of the docs: {', '.join(missing)}"


def test_markers_are_known_and_placed_on_shell_blocks():
    problems = []
    for page in PAGES:
        for b in parse_page(page):
            if b.marker:
                if not b.runnable:
                    problems.append(f"{b.where}: a doctest marker on a ```{b.lang} block (only shell blocks run)")
                try:
                    b.skip_reason({})
                except ValueError as e:
                    problems.append(str(e))
        text = (doccmds.ROOT / page).read_text()
        for n, line in enumerate(text.splitlines(), 1):
            if "doctest:" in line and not doccmds._MARK.match(line):
                problems.append(f"{page}:{n}: not a doctest marker this test reads: {line.strip()}")
    assert not problems, "\n".join(problems)
