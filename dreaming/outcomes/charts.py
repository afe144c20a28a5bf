"""Pictures of the outcomes: matplotlib charts (the Agg/SVG backends, no display) in one self-contained HTML page.

Per store: the error, correction and success rates per day with a dashed line at each promotion, and the
most recurring patterns, covered by a memory or not (a backtest adds its coverage per split). Each chart is
an inline SVG in the page: no script, no CDN and no network, so the page opens on an air-gapped review
machine and in any browser, and it is plain auditable text. The same figures follow as HTML tables. The
SVG is deterministic (fixed hash salt, no date), so the same report writes the same page.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import date, datetime, time, timedelta
from pathlib import Path

from dreaming.atomic import write_text_atomic

WIDTH_IN, DPI = 8.0, 72
COLOURS = {"error rate": "#c0392b", "correction rate": "#e67e22", "success rate": "#2e86c1",
           "covered": "#4c9a2a", "not covered": "#c0392b", "failures": "#c0392b", "corrections": "#e67e22"}


def _when(v: str) -> datetime:
    """A timestamp as given; a day at its noon, so a day's point sits inside the day it stands for (a
    promotion at 02:00 is left of that day's point, whose sessions mostly came after it)."""
    if "T" in v or " " in v:
        return datetime.fromisoformat(v.replace("Z", "+00:00")).replace(tzinfo=None)  # all UTC
    return datetime.combine(date.fromisoformat(v), time(12))


def _figure(height_in: float):
    from matplotlib.figure import Figure  # no pyplot: no global state, safe on a fleet's threads

    fig = Figure(figsize=(WIDTH_IN, height_in), dpi=DPI)
    return fig, fig.subplots()


def _svg(fig) -> str:
    """The figure as an SVG document without its XML prolog and DOCTYPE (inline in HTML, or an image)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "dreams-outcomes", "svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", bbox_inches="tight",  # no RDF block: no date, no creator URL
                    metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]


def figure_html(svg: str, title: str) -> str:
    """An SVG chart inline in the page, titled for screen readers."""
    return f'<figure class="chart" role="img" aria-label="{html.escape(title)}">{svg}</figure>'


def data_uri(svg: str) -> str:
    """An SVG chart as a ``data:`` URI: a markdown image that Prefect's UI draws in an artifact."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def _dates(ax) -> None:
    import matplotlib.dates as mdates

    loc = mdates.AutoDateLocator(minticks=3, maxticks=10)
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))


def rates_chart(report: dict) -> tuple[str, str]:
    """Error, correction and success rates per day, a dashed line and a label at each promotion."""
    fig, ax = _figure(3.2)
    title = f"{report['store']['name']}: rates per day, promotions marked"
    days = report["daily"]
    for metric in ("error_rate", "correction_rate", "success_rate"):
        pts = [(_when(d["day"]), d[metric]) for d in days if d.get(metric) is not None]
        if pts:
            name = metric.replace("_", " ")
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3, label=name,
                    color=COLOURS[name])
    span = [_when(d["day"]) for d in days] + [_when(p["at"]) for p in report["promotions"]]
    if span:  # the days and the promotions, a day either side (matplotlib's own range of one date is years)
        ax.set_xlim(min(span) - timedelta(days=1), max(span) + timedelta(days=1))
    for p in report["promotions"]:
        at = _when(p["at"])
        ax.axvline(at, color="gray", linestyle="--", linewidth=1)
        ax.annotate(f"v{p['version']}", (at, 1.0), xytext=(3, -10), textcoords="offset points", color="gray")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of sessions")
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")  # beside: never on a line
    else:
        ax.text(0.5, 0.5, "no sessions in the window", ha="center", transform=ax.transAxes)
    _dates(ax)
    return _svg(fig), title


def patterns_chart(top: list[dict], title: str) -> tuple[str, str]:
    """The most recurring patterns as bars: green when a memory covers them, red when none does."""
    fig, ax = _figure(max(1.6, 0.32 * len(top) + 0.9))
    if top:
        rows = sorted(top, key=lambda t: t["sessions"])
        labels = [t["pattern"] if len(t["pattern"]) <= 70 else t["pattern"][:69] + "…" for t in rows]
        ax.barh(range(len(rows)), [t["sessions"] for t in rows],
                color=[COLOURS["covered" if t["covered"] else "not covered"] for t in rows])
        ax.set_yticks(range(len(rows)), labels, fontsize="small")
        ax.set_xlabel("sessions (green: covered by a memory, red: not covered)")
    else:
        ax.text(0.5, 0.5, "no recurring pattern", ha="center", transform=ax.transAxes)
        ax.set_yticks([])
    ax.set_title(title)
    return _svg(fig), title


def coverage_chart(bt: dict) -> tuple[str, str]:
    """The backtest's covered share of failures and corrections after each split."""
    fig, ax = _figure(2.8)
    title = "backtest: share already covered by a memory"
    if bt["splits"]:
        span = [_when(s["split"]) for s in bt["splits"]]
        ax.set_xlim(min(span) - timedelta(days=1), max(span) + timedelta(days=1))
    for what in ("failures", "corrections"):
        pts = [(_when(s["split"]), s[what]["coverage"]) for s in bt["splits"] if s[what]["coverage"] is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=what, color=COLOURS[what])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("covered share after the split")
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    _dates(ax)
    return _svg(fig), title


def store_charts(report: dict) -> list[tuple[str, str]]:
    """The store's charts as ``(svg, title)``: the rates per day, the most recurring patterns."""
    return [rates_chart(report), patterns_chart(report["top_patterns"], "most recurring patterns")]


def _table(rows: list[dict], cols: list[str]) -> str:
    if not rows:
        return "<p>(none)</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape('' if r.get(c) is None else str(r.get(c)))}</td>"
                                    for c in cols) + "</tr>" for r in rows)
    return f"<table border=1 cellspacing=0 cellpadding=3><tr>{head}</tr>{body}</table>"


def page(report: dict | None = None, backtest: dict | None = None) -> str:
    """The HTML page: the charts (inline SVG) and the same figures as tables."""
    charts, tables = [], []
    name = (report or backtest)["store"]["name"]
    if report is not None:
        charts += store_charts(report)
        mem = [{**e, "before": _rate(e["before"]), "after": _rate(e["after"])} for e in report["memories"]]
        tables += ["<h2>memories</h2>", _table(mem, ["version", "path", "kind", "before", "after", "verdict", "why"]),
                   "<h2>per day</h2>", _table(report["daily"], list(report["daily"][0]) if report["daily"] else [])]
    if backtest is not None and backtest["splits"]:
        charts.append(coverage_chart(backtest))
        last = backtest["splits"][-1]
        charts.append(patterns_chart(last["top_patterns"], f"after the split {last['split'][:10]}: covered or new"))
        tables += ["<h2>backtest</h2>", _table([{**s, "failures": _cov(s["failures"]), "corrections": _cov(s["corrections"])}
                                                for s in backtest["splits"]],
                                               ["split", "sessions_before", "sessions_after", "memories", "tokens",
                                                "failures", "corrections"])]
    charts = [figure_html(svg, title) for svg, title in charts]
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(name)}: outcomes</title></head><body>\n"
            f"<h1>{html.escape(name)}</h1>\n" + "\n".join(charts) + "\n" + "".join(tables) + "\n</body></html>\n")


def _rate(r: dict | None) -> str:
    if not r:
        return "—"
    pct = "—" if r["rate"] is None else f"{100 * r['rate']:.0f}% [{100 * r['low']:.0f}–{100 * r['high']:.0f}]"
    return f"{r['count']}/{r['sessions']} {pct}"


def _cov(c: dict) -> str:
    return f"{c['covered']} covered, {c['new']} new"


def write_page(path: Path, report: dict | None = None, backtest: dict | None = None) -> Path:
    path = Path(path)
    write_text_atomic(page(report, backtest), path, path.parent)
    return path
