"""What the monthly KPI report reads besides the tickets' events (pure reads): the shift-handover lines of the
counted tickets (X2, for K-who) and the repeat-complaint rate of the month (X3)."""
from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select

from engine.kpi_who import HandoverMark
from engine.store.tables import Handover, HandoverItem, Instance, TicketLink

REPEAT = "repeat"


def handover_marks(session, ids: list[int]) -> dict[int, list[HandoverMark]]:
    """instance id → its lines in shift handovers (cases only), oldest first."""
    out: dict[int, list[HandoverMark]] = defaultdict(list)
    for chunk in range(0, len(ids), 500):
        q = (select(HandoverItem.instance_id, HandoverItem.included, Handover.id, Handover.outgoing,
                    Handover.incoming, Handover.started_at, Handover.window_start, Handover.accepted_at)
             .join(Handover, Handover.id == HandoverItem.handover_id)
             .where(HandoverItem.kind == "case", HandoverItem.instance_id.in_(ids[chunk:chunk + 500]))
             .order_by(Handover.started_at))
        for r in session.execute(q):
            out[r.instance_id].append(HandoverMark(r.id, r.outgoing, r.incoming, bool(r.included), r.started_at,
                                                   r.window_start, r.accepted_at))
    return out


def repeat_rate(session, insts: list[Instance]) -> dict:
    """X3: of the month's complaints, the repeats (linked to an earlier complaint) and their share in %."""
    complaints = [i for i in insts if i.kind == "complaint"]
    ids = [i.id for i in complaints]
    earlier: dict[int, list[str]] = defaultdict(list)
    for chunk in range(0, len(ids), 500):
        q = (select(TicketLink.instance_id, Instance.ticket_no)
             .join(Instance, Instance.id == TicketLink.earlier_id)
             .where(TicketLink.kind == REPEAT, TicketLink.instance_id.in_(ids[chunk:chunk + 500]))
             .order_by(TicketLink.instance_id, Instance.id))
        for r in session.execute(q):
            earlier[r.instance_id].append(r.ticket_no)
    repeats = [{"ticket_no": i.ticket_no, "instance_id": i.id, "agent": i.created_by, "nature": i.nature,
                "repeat_of": earlier[i.id]} for i in complaints if earlier.get(i.id)]
    n = len(complaints)
    return {"rules": ["X3"], "complaints": n, "repeats": len(repeats),
            "value": round(100.0 * len(repeats) / n, 2) if n else None, "tickets": repeats}
