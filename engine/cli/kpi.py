"""``kefu kpi`` and ``kefu qa``: the monthly assessment (K1–K8, K-cycle) and the QA sample (QA, K4)."""
from __future__ import annotations

from engine.cli.common import _print, _service


def _kpi():
    """``engine.kpi``, imported by the KPI commands only."""
    from engine import kpi
    return kpi


def _fmt(value, unit):
    if value is None:
        return "—"
    return f"{value:.2f}%" if unit == "%" else f"{value:.2f}"


def table(report: dict, agent: str | None = None) -> str:
    figures = _kpi().summary(report, agent)
    state = "stored " + report["computed_at"] if report.get("computed_at") else (
        "final" if report["final"] else "running, as of " + report["as_of"])
    version = (report.get("kpi_table") or {}).get("version")
    scored = ("KPI table v" + str(version) if version else "built-in KPI defaults") if "kpi_table" in report \
        else "KPI table not recorded"
    lines = [f"KPIs {report['month']} — {'agent ' + agent if agent else 'department'} ({state}; "
             f"{report['tickets']} tickets; {scored})"]
    for k, f in figures.items():
        score = "—" if f["score"] is None else f"{f['score']:.2f}"
        lines.append(f"  {k} {f['name_en']:<34} {f['numerator']!s:>7}/{f['denominator']:<4} "
                     f"{_fmt(f['value'], f['unit']):>8}  target {_fmt(f['target'], f['unit']):>8}  score {score}"
                     + (f"  ({f['formula']})" if f.get("formula") else ""))
    return "\n".join(lines)


def cmd_kpi(args):
    k = _service()
    month = args.month or _kpi().current_month(k.now())
    report = k.kpi.report(month, args.actor)
    if args.json:
        out = report if args.agent is None else {**{x: report[x] for x in ("month", "as_of", "final")},
                                                 "agent": args.agent,
                                                 "figures": report["agents"].get(args.agent)}
        if args.agent is not None and out["figures"] is None:
            _kpi().summary(report, args.agent)  # raises the clear error
        return _print(args, out)
    return _print(args, report, lambda r: table(r, args.agent))


def cmd_kpi_report(args):
    k = _service()
    report = k.kpi.store(args.month or _kpi().previous_month(k.now()), args.actor)
    return _print(args, report, lambda r: table(r) + "\n  stored")


def cmd_qa_sample(args):
    k = _service()
    r = k.kpi.start_qa_sampling(args.month or _kpi().previous_month(k.now()), args.actor, size=args.size,
                              seed=args.seed)
    return _print(args, r, lambda x: f"{x['ticket_no']}: QA sample of {x['month']}, {len(x['sample'])} of "
                                     f"size {x['size']} (seed {x['seed']}): {', '.join(x['sample']) or 'none'}")


def cmd_qa_sample_size(args):
    k = _service()
    if args.size is None:
        return _print(args, {"sample_size": k.kpi.sample_size()}, lambda r: f"sample size {r['sample_size']}")
    n = k.kpi.set_sample_size(args.size, args.actor)
    return _print(args, {"sample_size": n}, lambda r: f"sample size set to {r['sample_size']}")


def register(sub, add) -> None:
    sp = add("kpi", cmd_kpi, "monthly KPIs K1–K8 (department or one agent); 'kpi report' stores a month")
    sp.add_argument("--month", help="YYYY-MM (Asia/Shanghai); default the current month")
    sp.add_argument("--agent")
    sp.add_argument("--as", dest="actor")
    kpi_sub = sp.add_subparsers(dest="sub", required=False, metavar="ACTION")
    rp = add("report", cmd_kpi_report, "compute a finished month as of its end and store it (K-cycle)",
             subparsers=kpi_sub)
    rp.add_argument("--month", help="YYYY-MM; default the previous month")
    rp.add_argument("--as", dest="actor")
    qa = sub.add_parser("qa", help="QA sampling (K4)").add_subparsers(dest="sub", required=True, metavar="ACTION")
    sp = add("sample", cmd_qa_sample, "draw the month's QA sample and start the qa_sampling process",
             subparsers=qa)
    sp.add_argument("--month", help="YYYY-MM; default the previous month")
    sp.add_argument("--size", type=int, help="default: the process owner's sample size")
    sp.add_argument("--seed", type=int, help="default: random (recorded in the process data)")
    sp.add_argument("--as", dest="actor")
    sp = add("sample-size", cmd_qa_sample_size, "show or set (process owner) the monthly QA sample size",
             subparsers=qa)
    sp.add_argument("size", nargs="?")
    sp.add_argument("--as", dest="actor")
