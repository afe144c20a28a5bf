"""Shell commands read with a real grammar (tree-sitter-bash): what a ``bash`` tool call actually ran.

An agent's shell call is rarely one program: ``cd /repo && DJANGO_SETTINGS_MODULE=x python -m pytest -q |
tail -5``, ``cat > repro.py <<'EOF' … EOF``, ``sudo apt-get install -y foo; echo done``. Cutting such a
line at the first space names the wrong thing (a path, ``cat``, ``sudo``). ``parse(command)`` returns a
:class:`Shell` with

- ``program``: the program the call is about — the first simple command that is not navigation or
  plumbing (``cd``, ``export``, ``source``, ``set``, ``true``, ``echo``, ``printf``, ``sleep``), with
  wrappers (``sudo``, ``timeout N``, ``env A=B``, ``nohup``, ``time``, ``xargs``) and variable assignments
  skipped, the directory part of the path removed (``/usr/bin/python3`` → ``python3``); a heredoc or
  redirect that only writes a file is ``write-file``;
- ``argv``: that command's words, unquoted;
- ``script``: for an interpreter (python, node, bash, ruby …) the script it runs, or ``-m module`` /
  ``-c`` (``python -m pytest`` → ``pytest``; a script path keeps its base name ``runtests.py``);
- ``writes``: ``{path: body}`` for every file written from a heredoc (``cat > f <<EOF``, ``tee f``);
- ``codes``: inline code run (``python -c '…'``, ``python - <<EOF``);
- ``cwd``: the last ``cd`` target.

Parsing is pure and cached; a command the grammar cannot read falls back to whitespace splitting (the
program is then the first word), and an empty command has program ``None``.
"""

from __future__ import annotations

import functools
import posixpath
import re
from dataclasses import dataclass, field

import tree_sitter_bash
from tree_sitter import Language, Parser

_PARSER = Parser(Language(tree_sitter_bash.language()))
NAVIGATION = {"cd", "pushd", "popd", "export", "source", ".", "set", "unset", "true", ":", "echo", "printf", "sleep",
              "clear", "alias", "ulimit", "umask", "wait"}
WRAPPERS = {"sudo", "env", "nohup", "time", "command", "exec", "nice", "stdbuf", "xargs", "timeout"}
INTERPRETERS = re.compile(r"^(?:python[\d.]*|pypy[\d.]*|node|bash|sh|zsh|ruby|perl|php|deno|bun|uv|poetry)$")


@dataclass(frozen=True)
class Shell:
    program: str | None
    argv: tuple[str, ...] = ()
    script: str | None = None
    writes: dict = field(default_factory=dict)
    codes: tuple[str, ...] = ()
    cwd: str | None = None
    commands: tuple[tuple[str, ...], ...] = ()

    @property
    def label(self) -> str | None:
        """The tool label of the call: ``runtests.py`` for a script, ``pytest`` for ``python -m pytest``,
        else the program."""
        return self.script or self.program

    @property
    def flags(self) -> tuple[str, ...]:
        return tuple(a for a in self.argv[1:] if a.startswith("-") and a not in ("-", "--"))


def _unquote(node) -> str:
    text = node.text.decode("utf-8", "replace")
    if node.type == "raw_string" and len(text) >= 2:
        return text[1:-1]
    if node.type == "string" and len(text) >= 2:
        return text[1:-1]
    return text


def _simple_commands(node, out: list, writes: dict, heredocs: list) -> None:
    """Walk the tree in source order, collecting (words, redirect targets) of each simple command."""
    if node.type == "redirected_statement":
        body = node.child_by_field_name("body")
        targets, bodies = [], []
        for c in node.named_children:
            if c.type == "file_redirect":
                dest = c.child_by_field_name("destination") or (c.named_children[-1] if c.named_children else None)
                op = c.text.decode("utf-8", "replace").lstrip("0123456789&")
                if dest is not None and op.startswith(">"):
                    targets.append(_unquote(dest))
            elif c.type == "heredoc_redirect":
                for h in c.named_children:
                    if h.type == "heredoc_body":
                        bodies.append(h.text.decode("utf-8", "replace"))
                    elif h.type == "file_redirect":
                        dest = h.named_children[-1] if h.named_children else None
                        if dest is not None:
                            targets.append(_unquote(dest))
        start = len(out)
        if body is not None:
            _simple_commands(body, out, writes, heredocs)
        first = out[start] if len(out) > start else None
        for b in bodies:
            if targets:
                for t in targets:
                    writes[t] = b
            else:
                heredocs.append((first, b))
        if first is not None and targets and not bodies:
            first[1].extend(targets)
        return
    if node.type == "command":
        words, seen_name = [], False
        for c in node.named_children:
            if c.type == "variable_assignment" and not seen_name:
                continue
            if c.type == "command_name":
                seen_name = True
                words.append(_unquote(c.named_children[0]) if c.named_children else c.text.decode())
            elif c.type in ("file_redirect", "herestring_redirect"):
                continue
            elif seen_name:
                words.append(_unquote(c))
        out.append((words, []))
        return
    for c in node.named_children:
        _simple_commands(c, out, writes, heredocs)


def _strip_wrappers(words: list[str]) -> list[str]:
    i = 0
    while i < len(words):
        w = posixpath.basename(words[i])
        if w in WRAPPERS:
            i += 1
            while i < len(words) and (words[i].startswith("-") or re.match(r"^\w+=", words[i])
                                      or (w == "timeout" and re.match(r"^\d+[smhd]?$", words[i]))):
                i += 1
            continue
        break
    return words[i:]


def _script_of(prog: str, words: list[str]) -> tuple[str | None, str | None]:
    """(script label, inline code) of an interpreter call."""
    args = words[1:]
    if prog in ("uv", "poetry", "bun", "deno") and (not args or args[0] not in ("run", "exec")):
        return None, None  # `uv pip install x` is uv, not a script named pip
    i = 0
    while i < len(args):
        a = args[i]
        if a == "-m" and i + 1 < len(args):
            return args[i + 1].split(".")[0] if args[i + 1] != "django" else "django-admin", None
        if a == "-c" and i + 1 < len(args):
            return None, args[i + 1]
        if a in ("run", "exec") and prog in ("uv", "poetry"):
            rest = args[i + 1:]
            return (posixpath.basename(rest[0]) if rest else None), None
        if a.startswith("-"):
            i += 1
            continue
        if a == "-":
            return None, None
        return posixpath.basename(a), None
    return None, None


@functools.lru_cache(maxsize=65536)
def parse(command: str | None) -> Shell:
    if not command or not command.strip():
        return Shell(program=None)
    data = command.encode("utf-8", "replace")
    try:
        tree = _PARSER.parse(data)
        cmds: list = []
        writes: dict = {}
        heredocs: list = []
        _simple_commands(tree.root_node, cmds, writes, heredocs)
    except Exception:  # noqa: BLE001 - a grammar failure falls back to splitting
        cmds, writes, heredocs = [(command.split(), [])], {}, []
    cwd = None
    main = None
    codes: list[str] = []
    all_words = []
    for words, targets in cmds:
        if not words:
            continue
        all_words.append(tuple(words))
        name = posixpath.basename(words[0])
        if name in ("cd", "pushd") and len(words) > 1:
            cwd = words[1]
            continue
        core = _strip_wrappers(words)
        if not core or posixpath.basename(core[0]) in NAVIGATION:
            continue
        if main is None:
            main = (core, targets)
    for first, body in heredocs:
        if first is not None:
            codes.append(body)
    if main is None:
        if writes:
            return Shell(program="write-file", writes=writes, cwd=cwd, commands=tuple(all_words))
        first = next((w for w, _ in cmds if w), None)
        prog = posixpath.basename(first[0]) if first else None
        return Shell(program=prog, argv=tuple(first or ()), writes=writes, cwd=cwd, commands=tuple(all_words))
    core, targets = main
    prog = posixpath.basename(core[0])
    if prog in ("cat", "tee") and writes and all(not a or a.startswith("-") or a in writes for a in core[1:]):
        return Shell(program="write-file", argv=tuple(core), writes=writes, cwd=cwd, commands=tuple(all_words))
    script, code = (None, None)
    if INTERPRETERS.match(prog):
        script, code = _script_of(prog, core)
        if code:
            codes.append(code)
    elif prog.endswith(".py") or prog.endswith(".sh"):
        script = prog
    return Shell(program=prog, argv=tuple(core), script=script, writes=writes, codes=tuple(codes), cwd=cwd,
                 commands=tuple(all_words))


def label(command: str | None) -> str | None:
    """The label of a shell command (see :attr:`Shell.label`), for the DuckDB UDF ``shell_label``."""
    return parse(command).label


def register(con) -> None:
    """Define ``shell_label(VARCHAR) -> VARCHAR`` on a DuckDB connection (once)."""
    try:
        con.create_function("shell_label", label, ["VARCHAR"], "VARCHAR", null_handling="special",
                            side_effects=False)
    except Exception as e:  # noqa: BLE001 - already defined on this connection
        if "already" not in str(e).lower():
            raise
