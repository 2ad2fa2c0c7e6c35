"""The customer registry: add, update, find and show customers."""
from __future__ import annotations

from engine.cli.common import _data, _print, _service
from engine.services.readers import SYSTEM


def cmd_customers_add(args):
    c = _service().customers.create(_data(args.data) or {}, actor=args.actor or SYSTEM)
    _print(args, c, lambda c: f"customer #{c['id']} {c['name']}")


def cmd_customers_update(args):
    c = _service().customers.update(args.id, _data(args.data) or {}, actor=args.actor or SYSTEM)
    _print(args, c, lambda c: f"customer #{c['id']} {c['name']} updated")


def cmd_customers_find(args):
    k = _service()
    cs = k.masking.customers(k.customers.find(args.query), args.actor)  # I4
    _print(args, cs, lambda cs: "\n".join(f"#{c['id']:<5} {c['name']}  {c['phone'] or ''}"
                                          f"{'  VIP' if c['vip'] else ''}" for c in cs) or "no match")


def cmd_customers_show(args):
    k = _service()
    c = k.masking.customer(k.customers.get(args.id), args.actor)  # I4
    _print(args, {**c, "history": k.customers.history(args.id)} if args.history else c)


def cmd_customers_reveal(args):
    r = _service().masking.reveal_customer(args.id, args.field, args.actor, args.reason)
    _print(args, r, lambda r: f"customer #{r['customer_id']} {r['field']}: {r['value']}")


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
    sp.add_argument("--as", dest="actor", help="read as this user (contact data masked unless serving, I4)")
    sp = add("show", cmd_customers_show, "show a customer", subparsers=cust)
    sp.add_argument("id", type=int)
    sp.add_argument("--as", dest="actor", help="read as this user (contact data masked unless serving, I4)")
    sp.add_argument("--history", action="store_true", help="with the recorded changes and reveals (I3, I4)")
    sp = add("reveal", cmd_customers_reveal, "show one masked contact value of a customer, with a reason (I4)",
             subparsers=cust)
    sp.add_argument("id", type=int)
    sp.add_argument("--field", required=True, choices=["phone", "email", "address"])
    sp.add_argument("--as", dest="actor", required=True)
    sp.add_argument("--reason", required=True)
