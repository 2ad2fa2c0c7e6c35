"""The customer registry: add, update, find and show customers."""
from __future__ import annotations

from engine.cli.common import _data, _print, _service
from engine.services.context import SYSTEM


def cmd_customers_add(args):
    c = _service().customers.create(_data(args.data) or {}, actor=args.actor or SYSTEM)
    _print(args, c, lambda c: f"customer #{c['id']} {c['name']}")


def cmd_customers_update(args):
    c = _service().customers.update(args.id, _data(args.data) or {}, actor=args.actor or SYSTEM)
    _print(args, c, lambda c: f"customer #{c['id']} {c['name']} updated")


def cmd_customers_find(args):
    cs = _service().customers.find(args.query)
    _print(args, cs, lambda cs: "\n".join(f"#{c['id']:<5} {c['name']}  {c['phone'] or ''}"
                                          f"{'  VIP' if c['vip'] else ''}" for c in cs) or "no match")


def cmd_customers_show(args):
    _print(args, _service().customers.get(args.id))


def register(sub, add) -> None:
    cust = sub.add_parser("customers", help="customer registry").add_subparsers(dest="sub", required=True,
                                                                                 metavar="ACTION")
    sp = add("add", cmd_customers_add, "create a customer from --data JSON", subparsers=cust)
    sp.add_argument("--data", required=True)
    sp = add("update", cmd_customers_update, "update a customer", subparsers=cust)
    sp.add_argument("id", type=int)
    sp.add_argument("--data", required=True)
    sp = add("find", cmd_customers_find, "find customers by phone or name", subparsers=cust)
    sp.add_argument("query")
    sp = add("show", cmd_customers_show, "show a customer", subparsers=cust)
    sp.add_argument("id", type=int)
