"""`dca-pipeline payouts status|pause|resume|retry`: the operator's payout switches.

``pause`` stops every payout run (ingestion and allocation go on) until ``resume``; the env
``DCA_PAYOUTS_PAUSED=true`` does the same without touching the ledger. ``retry`` puts a payout
that failed permanently (e.g. a wrong invoice key, since fixed) back in the queue; the next run
asks LNbits about every invoice it had (by payment hash) before paying anything, pays the same
invoice while it is still open, and makes a new one only once LNbits says the old one is dead
and unpaid. ``status`` also lists the wallets that owe (their lines net below zero).
"""

from __future__ import annotations

import argparse
import sys


def _engine(url: str | None):  # type: ignore[no-untyped-def]
    from dca_pipeline.ledger.database import open_ledger

    return open_ledger(url)


def _status(args: argparse.Namespace) -> int:
    from dca_pipeline.payouts.lease import current_holder
    from dca_pipeline.payouts.procedure import is_paused, payout_counts, wallet_debts

    engine = _engine(args.ledger_url)
    paused, why = is_paused(engine)
    print(f"payouts   {'PAUSED (' + why + ')' if paused else 'running'}")
    holder, expires = current_holder(engine)
    print(f"writer    {holder + ' until ' + expires.isoformat() if holder and expires else 'none'}")
    for status, (count, sats) in sorted(payout_counts(engine).items()):
        print(f"{status:<9} {count} payouts, {sats:,} sats")
    for wallet_id, recipient_id, sats, fiat_cents in wallet_debts(engine):
        print(f"owes      {wallet_id} ({recipient_id}): {sats:,} sats, {fiat_cents} cents")
    return 0


def _pause(args: argparse.Namespace) -> int:
    from dca_pipeline.payouts.procedure import set_paused

    set_paused(_engine(args.ledger_url), True, args.reason)
    print("payouts paused (ledger switch); ingestion and allocation continue")
    return 0


def _resume(args: argparse.Namespace) -> int:
    from dca_pipeline.payouts.procedure import paused_by_env, set_paused

    set_paused(_engine(args.ledger_url), False, None)
    print("payouts resumed (ledger switch)")
    if paused_by_env():
        print("note: DCA_PAYOUTS_PAUSED is still set in this environment", file=sys.stderr)
    return 0


def _retry(args: argparse.Namespace) -> int:
    from dca_pipeline.payouts.procedure import retry_failed_payout

    if retry_failed_payout(_engine(args.ledger_url), args.payout_id):
        print(
            f"{args.payout_id}: queued again; the next payout run asks LNbits about it first, "
            "then pays it once"
        )
        return 0
    print(f"{args.payout_id}: no failed payout with this id", file=sys.stderr)
    return 1


def register(subparsers: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--ledger-url", help="SQLAlchemy URL of the ledger (default: $DCA_LEDGER_URL)"
    )
    parser = subparsers.add_parser("payouts", help="payout status, pause/resume, retry")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser(
        "status", parents=[common], help="switch, writer lease, totals"
    ).set_defaults(func=_status)
    pause = actions.add_parser("pause", parents=[common], help="stop payouts (not ingestion)")
    pause.add_argument("--reason", default=None)
    pause.set_defaults(func=_pause)
    actions.add_parser("resume", parents=[common], help="undo pause").set_defaults(func=_resume)
    retry = actions.add_parser("retry", parents=[common], help="re-queue a failed payout")
    retry.add_argument("payout_id")
    retry.set_defaults(func=_retry)
