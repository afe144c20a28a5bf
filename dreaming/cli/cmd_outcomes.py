"""`dreams outcomes` and `dreams backtest`: does the dream help? (dreaming.outcomes; docs/outcomes.md)"""

from __future__ import annotations

import re
from pathlib import Path

import typer

from dreaming.cli import app
from dreaming.cli.common import JsonOpt, console, err_console, fail, parse_since, print_json, print_table


_EMOJI = re.compile(r":([\w+-]+)(?=:)")


def _plain(rows: list[dict], *cols: str) -> list[dict]:
    """Text from transcripts shown as it is in a rich table: markup escaped, and no ``:cat:`` read as an emoji
    (a word joiner after the first colon)."""
    from rich._emoji_codes import EMOJI
    from rich.markup import escape

    def clean(text: str) -> str:
        return _EMOJI.sub(lambda m: ":\u2060" + m.group(1) if m.group(1) in EMOJI else m.group(0), escape(text))

    return [{**r, **{c: clean(str(r[c])) for c in cols if r.get(c) is not None}} for r in rows]


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


def _rate(r: dict | None) -> str:
    if not r:
        return "—"
    if r["rate"] is None:
        return "0 sessions"
    return f"{r['count']}/{r['sessions']} {_pct(r['rate'])} [{_pct(r['low'])}–{_pct(r['high'])}]"


def _print_outcomes(rep: dict) -> None:
    s = rep["store"]
    console.print(f"store [bold]{s['name']}[/] ({s['scope']}), head v{s['head_version']}: {rep['sessions']} sessions"
                  + (f" since {rep['since']}" if rep["since"] else "") + f", {len(rep['promotions'])} promotion(s)",
                  highlight=False)
    rows = [{"version": e["version"], "kind": e["kind"], "path": e["path"], "before": _rate(e["before"]),
             "after": _rate(e["after"]), "verdict": e["verdict"] or "—", "why": e["why"]} for e in rep["memories"]]
    if rows:
        print_table(_plain(rows, "path", "why"), ["version", "kind", "path", "before", "after", "verdict", "why"],
                    title="memories promoted: sessions showing their pattern before → after (Wilson 95%)")
    else:
        console.print("no memory promoted yet: nothing to compare before and after")
    if not rep["daily"]:
        return
    print_table([{**d, "error_rate": _pct(d["error_rate"]), "correction_rate": _pct(d["correction_rate"]),
                  "success_rate": _pct(d["success_rate"])} for d in rep["daily"]],
                ["day", "sessions", "error_rate", "correction_rate", "success_rate", "with_outcome",
                 "tool_calls_per_session"], title="per day")
    print_table(_plain(rep["top_patterns"], "pattern", "memory"), ["sessions", "kind", "covered", "memory", "pattern"],
                title="most recurring patterns")


def _print_backtest(bt: dict) -> None:
    console.print(f"backtest of [bold]{bt['store']['name']}[/] ({bt['store']['scope']}): {bt['sessions']} sessions, "
                  f"curator {bt['curator']}; nothing was written", highlight=False)
    rows = [{"split": s["split"], "before": s["sessions_before"], "after": s["sessions_after"],
             "memories": s["memories"], "tokens": s["tokens"],
             "failures": f"{s['failures']['covered']} covered / {s['failures']['new']} new "
                         f"({_pct(s['failures']['coverage'])})",
             "corrections": f"{s['corrections']['covered']} covered / {s['corrections']['new']} new "
                            f"({_pct(s['corrections']['coverage'])})"} for s in bt["splits"]]
    if not rows:
        console.print("no split: no session after the first split point (see --every)")
        return
    print_table(rows, ["split", "before", "after", "memories", "tokens", "failures", "corrections"],
                title="after each split: already covered by a memory dreamt from the sessions before it")
    if bt["splits"][-1]["top_patterns"]:
        print_table(_plain(bt["splits"][-1]["top_patterns"], "pattern", "memory"), ["sessions", "kind", "covered", "memory", "pattern"],
                    title="most recurring after the last split")


def _guard(fn):
    from dreaming.errors import DreamsError

    try:
        return fn()
    except DreamsError as e:
        fail(str(e), e.exit_code)


@app.command("outcomes")
def outcomes_cmd(
    store: str = typer.Argument(..., help="Store id or name."),
    since: str | None = typer.Option(None, help="Only sessions started within this window (7d, 12h) or since a date."),
    min_after: int = typer.Option(5, "--min-after", help="Sessions after a promotion before a verdict is given."),
    html: Path | None = typer.Option(None, "--html", help="Also write the charts and tables to this HTML file."),
    json_: bool = JsonOpt,
) -> None:
    """Per promoted memory: how often its pattern recurred before and after the promotion; per day: rates."""
    from dreaming.outcomes.tracking import outcomes

    if min_after < 1:
        fail(f"--min-after must be at least 1, got {min_after}")
    rep = _guard(lambda: outcomes(store, since=parse_since(since), min_after=min_after))
    if html is not None:
        from dreaming.outcomes.charts import write_page

        write_page(html, report=rep)
        err_console.print(f"charts written to {html}")
    if json_:
        print_json(rep)
    else:
        _print_outcomes(rep)


@app.command("backtest")
def backtest_cmd(
    store: str = typer.Option(..., "--store", help="Store id or name (its scope's sessions are replayed)."),
    split: str | None = typer.Option(None, "--split", help="Dream over the sessions before this date, measure after."),
    every: str | None = typer.Option(None, "--every", help="Rolling splits this far apart (7d) from the first day."),
    since: str | None = typer.Option(None, help="Only sessions started within this window or since a date."),
    curator: str = typer.Option("rules", help="The curator of the scratch dream (rules: offline)."),
    html: Path | None = typer.Option(None, "--html", help="Also write the charts and tables to this HTML file."),
    json_: bool = JsonOpt,
) -> None:
    """Replay history: dream over the sessions before a split (in memory, nothing written) and count how many
    failures and corrections after it a memory already covered."""
    from dreaming.outcomes.backtest import backtest
    from dreaming.timewindow import parse_duration

    if (split is None) == (every is None):
        fail("give --split DATE or --every DURATION (one of them)")
    span = None
    if every is not None:
        span = parse_duration(every)
        if span is None:
            fail(f"--every: expected a duration like 7d or 12h, got {every!r}")
    when = None
    if split is not None:
        if parse_duration(split) is not None:
            fail(f"--split: give a date (2026-11-01), not a duration; got {split!r}")
        when = parse_since(split)
    if curator == "claude":
        from dreaming.catalog import Catalog
        from dreaming.curators.claude import check_credentials

        check_credentials(Catalog().settings)
    bt = _guard(lambda: backtest(store, split=when, every=span, since=parse_since(since), curator=curator))
    if html is not None:
        from dreaming.outcomes.charts import write_page

        write_page(html, backtest=bt)
        err_console.print(f"charts written to {html}")
    if json_:
        print_json(bt)
    else:
        _print_backtest(bt)
