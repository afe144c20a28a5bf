"""The doc-test machinery of tests/test_docs_commands.py: read the fenced shell blocks of the docs, and
run their commands in order, one bash per page, on a scratch lake.

**What runs.** Blocks fenced ```` ```bash ````, ```` ```sh ```` / ```` ```shell ```` (every logical line that is
not a comment: ``\\`` continuations joined) and ```` ```console ```` (the lines after ``$ ``; the
others are output). Untagged fences are synopses and output: never run, but their ``dreams …`` lines
are checked against the CLI (every ``--flag`` must exist on that command).

**Markers**, an HTML comment on the line right before a fence::

    <!-- doctest: skip — needs an Anthropic key -->        never run; reported as skipped with the reason
    <!-- doctest: needs DREAMS_RESEARCH_DATA -->            run only when that variable names an existing
                                                            folder (else skipped, saying so)

A command that is documented to fail says so in a trailing comment: ``dreams list --status bogus   # exits 2``.

**The scratch page** (``DocPage``): ``work/`` is the current folder (``DREAMS_HOME=work/data``, as the
README's ``export DREAMS_HOME=$PWD/data``), holding ``memory/`` (a starting store of Markdown files) and
``.venv/bin`` (``activate``, ``dreams``, ``prefect``, ``python``); ``HOME`` is ``home/`` whose
``exports/`` holds sample transcripts (Anthropic format, tenant acme): what the README tour reads.
Both come from ``dreaming.scenarios.generate_scenario(seed=0)``. ``PREFECT_API_URL`` points at the
test session's Prefect server; ``ANTHROPIC_*`` and the caller's other ``DREAMS_*`` are not passed.

**Speed** (``ForkServer``): ``dreams`` in the scratch venv is a small client that hands its argv,
environment, folder and stdin/stdout/stderr to a process that imported the CLI, Prefect, the flows
and Great Expectations once and forks per command, which runs ``dreaming.cli:main`` exactly as the
console script does (same environment, same file descriptors, same exit code). It saves the ~5-25 s
import of every command. ``DREAMS_DOCTEST_FORK=0`` runs the real ``.venv/bin/dreams`` instead.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
RUN_LANGS = {"bash", "sh", "shell", "console"}

_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
_MARK = re.compile(r"^\s*<!--\s*doctest:\s*([\w-]+)\s*(.*?)\s*-->\s*$")
_EXPECT = re.compile(r"#\s*exits?\s+(\d+)\b")


@dataclass
class Command:
    line: int  # 1-based line in the page
    text: str  # as bash will read it (continuations kept)
    expect: int = 0


@dataclass
class Block:
    page: str
    line: int  # the fence's line
    lang: str
    body: list[tuple[int, str]]
    marker: tuple[str, str] | None = None  # (directive, argument)
    commands: list[Command] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def runnable(self) -> bool:
        return self.lang in RUN_LANGS

    def skip_reason(self, env: dict[str, str]) -> str | None:
        """Why this block is not run here (None: run it)."""
        if not self.marker:
            return None
        what, arg = self.marker
        arg = arg.lstrip("—–-: ").strip()
        if what == "skip":
            return arg or "marked skip"
        if what == "needs":
            var, _, why = arg.partition(" ")
            value = env.get(var)
            if not value or (var.endswith(("_DATA", "_DIR", "_HOME")) and not Path(value).is_dir()):
                return f"needs {var} (unset or not a folder here){' — ' + why.lstrip('—–-: ') if why else ''}"
            return None
        raise ValueError(f"{self.where}: unknown doctest marker {what!r} (use skip or needs)")


def _commands(lang: str, body: list[tuple[int, str]]) -> list[Command]:
    out: list[Command] = []
    pending: tuple[int, list[str]] | None = None
    for n, raw in body:
        if lang == "console" and pending is None:
            if not raw.startswith("$ "):
                continue  # output
            raw = raw[2:]
        if pending is None:
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            pending = (n, [])
        pending[1].append(raw)
        if raw.rstrip().endswith("\\"):
            continue
        text = "\n".join(pending[1])
        m = _EXPECT.search(text)
        out.append(Command(pending[0], text, int(m.group(1)) if m else 0))
        pending = None
    if pending:
        out.append(Command(pending[0], "\n".join(pending[1])))
    return out


def parse_page(page: str, root: Path = ROOT) -> list[Block]:
    """Every fenced block of a page, with its marker and (for shell blocks) its commands."""
    lines = (root / page).read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.group(1), m.group(2), m.group(3).lower()
        start = i
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append((i + 1, lines[i][len(indent):] if lines[i].startswith(indent) else lines[i]))
            i += 1
        i += 1
        prev = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        mk = _MARK.match(prev)
        b = Block(page, start + 1, lang, body, (mk.group(1), mk.group(2)) if mk else None)
        if b.runnable:
            b.commands = _commands(lang, body)
        blocks.append(b)
    return blocks


# --- the fork server ------------------------------------------------------------------------------------

# Imported before the Prefect server's address is known (Prefect must not be among them: it reads its
# settings once, on import), then after (``ForkServer.configure``).
PRELOAD = ["great_expectations", "duckdb", "pyarrow.parquet", "pyarrow.dataset", "pandas", "sqlalchemy",
           "anthropic", "rich.console", "typer"]
PRELOAD_PREFECT = ["prefect", "dreaming.cli", "flows.dream", "flows.backfill", "flows.fleet", "dreaming.gate",
                   "dreaming.evaluation", "dreaming.curators.claude"]

CLIENT = """#!{python} -IS
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect({sock!r})
msg = json.dumps({{"argv": sys.argv[1:], "env": dict(os.environ), "cwd": os.getcwd()}}).encode()
socket.send_fds(s, [len(msg).to_bytes(8, "big") + msg], [0, 1, 2])
data = b""
while not data.endswith(b"\\n"):
    chunk = s.recv(64)
    if not chunk:
        sys.exit(125)
    data += chunk
sys.exit(int(data))
"""


def _serve(sock_path: str) -> None:
    """The fork server's main loop (``python tests/doccmds.py serve SOCK``)."""
    import importlib

    def preload(mods):
        for mod in mods:
            try:
                importlib.import_module(mod)
            except Exception as e:  # noqa: BLE001 - a child imports it again and shows the real error
                print(f"doccmds: preload {mod} failed: {e!r}", file=sys.stderr)

    preload(PRELOAD)
    if "prefect" in sys.modules:
        print("doccmds: prefect was imported before its settings were known", file=sys.stderr)
    os.environ.update(json.loads(sys.stdin.readline()))  # the Prefect server's address
    preload(PRELOAD_PREFECT)
    if threading.active_count() > 1:
        print(f"doccmds: threads before forking: {threading.enumerate()}", file=sys.stderr)
    children: set[int] = set()
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(16)
    print("ready", flush=True)

    def reap(conn: socket.socket, pid: int) -> None:
        _, status = os.waitpid(pid, 0)
        children.discard(pid)
        code = os.waitstatus_to_exitcode(status)
        try:
            conn.sendall(f"{code if code >= 0 else 128 - code}\n".encode())
        finally:
            conn.close()

    def stop(*_):
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    while True:
        conn, _ = srv.accept()
        data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        while len(data) < 8 or len(data) < 8 + int.from_bytes(data[:8], "big"):
            more = conn.recv(1 << 20)
            if not more:
                break
            data += more
        req = json.loads(data[8:8 + int.from_bytes(data[:8], "big")])
        pid = os.fork()
        if pid == 0:  # the command
            srv.close()
            conn.close()
            code = 1
            try:
                for target, fd in enumerate(fds):
                    os.dup2(fd, target)
                    os.close(fd)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.chdir(req["cwd"])
                os.environ.clear()
                os.environ.update(req["env"])
                sys.argv = ["dreams", *req["argv"]]
                from dreaming.cli import main

                try:
                    main()
                    code = 0
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                    if not isinstance(e.code, int) and e.code is not None:
                        print(e.code, file=sys.stderr)
            except BaseException:  # noqa: BLE001 - what the console script would print
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        for fd in fds:
            os.close(fd)
        children.add(pid)
        threading.Thread(target=reap, args=(conn, pid), daemon=True).start()


class ForkServer:
    """The fork server, started once per test session (its preload overlaps the Prefect server's start)."""

    def __init__(self, folder: Path):
        self.sock = str(folder / "dreams.sock")
        self.proc = subprocess.Popen([sys.executable, __file__, "serve", self.sock], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(folder / "forkserver.log", "w"),
                                     env={**os.environ, "GX_ANALYTICS_ENABLED": "false"}, text=True)
        self._log = folder / "forkserver.log"

    def configure(self, env: dict[str, str]) -> None:
        """Hand over the environment Prefect is imported with (the test server's PREFECT_API_URL)."""
        self.proc.stdin.write(json.dumps(env) + "\n")
        self.proc.stdin.flush()

    def wait_ready(self, timeout: float = 240) -> None:
        ready: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: ready.put(self.proc.stdout.readline()), daemon=True).start()
        try:
            line = ready.get(timeout=timeout)
        except queue.Empty:
            line = ""
        if line.strip() != "ready":
            raise RuntimeError(f"the doc-test fork server did not start: {self._log.read_text()[-2000:]}")

    def client(self) -> str:
        return CLIENT.format(python=sys.executable, sock=self.sock)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# --- one page's scratch folder and shell ----------------------------------------------------------------

@dataclass
class Result:
    command: Command
    rc: int | None  # None: not reached (an earlier command failed) or timed out
    out: str = ""
    err: str = ""
    seconds: float = 0.0


class DocPage:
    """A scratch folder and one bash for a page: blocks run in order and share variables, `cd`, exports."""

    def __init__(self, page: str, scratch: Path, seed: Path, env: dict[str, str], client: str | None):
        self.page = page
        self.scratch = scratch
        self.work = scratch / "work"
        self.home = scratch / "home"
        self.logs = scratch / "logs"
        for d in (self.work, self.home, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        shutil.copytree(seed / "exports", self.home / "exports")
        shutil.copytree(seed / "memory", self.work / "memory")
        venv = Path(sys.executable).parent
        vbin = self.work / ".venv" / "bin"
        vbin.mkdir(parents=True)
        for exe in ("python", "python3", "prefect", *(() if client else ("dreams",))):
            (vbin / exe).write_text(f'#!/bin/sh\nexec "{venv / exe}" "$@"\n')
        if client:
            (vbin / "dreams").write_text(client)
        for exe in vbin.iterdir():
            exe.chmod(0o755)
        (vbin / "activate").write_text(f'export VIRTUAL_ENV="{vbin.parent}"\nexport PATH="$VIRTUAL_ENV/bin:$PATH"\n')
        path = [p for p in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep) if Path(p) != venv]
        self.env = {**env, "HOME": str(self.home), "PWD": str(self.work), "DREAMS_HOME": str(self.work / "data"),
                    "PATH": os.pathsep.join([str(vbin), *path])}
        self.bash = subprocess.Popen(["bash", "--noprofile", "--norc"], cwd=self.work, env=self.env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(self.logs / "bash.err", "w"), text=True,
                                     start_new_session=True)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._send("set -o pipefail\n")
        self.n = 0

    def _read(self) -> None:
        for line in self.bash.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _send(self, text: str) -> None:
        self.bash.stdin.write(text)
        self.bash.stdin.flush()

    def run_block(self, block: Block, timeout: float = 600) -> list[Result]:
        """Run the block's commands in order; stop at the first whose exit code is not the expected one."""
        first = self.n
        script = ["__dt_block() {"]
        for c in block.commands:
            i = self.n
            self.n += 1
            script += [f'echo "__DT_START {i}"', "{ " + c.text, f'}} >"{self.logs}/{i}.out" 2>"{self.logs}/{i}.err" </dev/null',
                       f'__dt_rc=$?; echo "__DT_RC {i} $__dt_rc"; [ "$__dt_rc" -eq {c.expect} ] || return 0']
        script += ["}", "__dt_block; unset -f __dt_block; echo __DT_END", ""]
        path = self.logs / f"block-{block.line}.sh"
        path.write_text("\n".join(script))
        self._send(f"source {path}\n")
        results = {i: Result(c, None) for i, c in zip(range(first, self.n), block.commands)}
        started: dict[int, float] = {}
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = "__DT_TIMEOUT"
            if line is None or line in ("__DT_END", "__DT_TIMEOUT"):
                break
            kind, _, rest = line.partition(" ")
            if kind == "__DT_START":
                started[int(rest)] = time.monotonic()
            elif kind == "__DT_RC":
                i, rc = (int(x) for x in rest.split())
                results[i].rc = rc
                results[i].seconds = time.monotonic() - started.get(i, time.monotonic())
        for i, r in results.items():
            if i in started:
                r.out = _tail(self.logs / f"{i}.out")
                r.err = _tail(self.logs / f"{i}.err")
                if r.rc is None:
                    r.seconds = time.monotonic() - started[i]
        if line != "__DT_END":  # timed out or bash died: nothing after this can run
            self.close()
        return list(results.values())

    def close(self) -> None:
        if self.bash.poll() is None:
            try:
                os.killpg(self.bash.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.bash.wait()


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return text if len(text) <= limit else "…" + text[-limit:]


def seed_folder(folder: Path) -> Path:
    """``exports/`` (the acme transcripts in Anthropic's format) and ``memory/`` (a starting store)."""
    from dreaming.scenarios import generate_scenario

    sc = generate_scenario(folder / "scenario", seed=0)
    exports = folder / "exports"
    exports.mkdir(parents=True)
    for g in sc.groups:
        if g["tenant"] == "acme" and g["format"] == "anthropic":
            for f in g["files"]:
                shutil.copy(f, exports / f"{g['agent']}-{f.name}")
    shutil.copytree(sc.store_dir, folder / "memory")
    return folder


if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    _serve(sys.argv[2])
