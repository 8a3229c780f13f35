"""``payout_reconciliation``: ledger payouts vs. LNbits payments per wallet for a period.

Any difference fails the ``ledger_matches_lnbits`` check (ERROR) and alerts the operator.
"""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
from pydantic import Field

from dca_pipeline.alerts import Alert, AlertKind
from dca_pipeline.defs.payout.resources import AlertsResource, lnbits_configured
from dca_pipeline.defs.settings import BusinessSettings
from dca_pipeline.ledger import payout_store
from dca_pipeline.ledger.resource import LedgerResource
from dca_pipeline.payouts.reconciliation import ReconciliationReport, reconcile_period
from dca_pipeline.payouts.resource import LNbitsResource

CHECK_NAME = "ledger_matches_lnbits"


class ReconciliationConfig(dg.Config):
    days: int = Field(default=7, ge=1, description="Business days in the period.")
    end_day: str | None = Field(
        default=None, description="Last business day (YYYY-MM-DD); default: today."
    )


def _period(config: ReconciliationConfig, timezone: str) -> tuple[datetime, datetime]:
    zone = ZoneInfo(timezone)
    last = (
        datetime.strptime(config.end_day, "%Y-%m-%d").date()
        if config.end_day
        else datetime.now(zone).date()
    )
    start = datetime.combine(last - timedelta(days=config.days - 1), time(0), zone)
    end = datetime.combine(last + timedelta(days=1), time(0), zone)
    return start, end


def _table(report: ReconciliationReport) -> str:
    lines = [
        "| wallet | ledger paid (n / sats) | sent (n / sats) | received (n / sats) | ok |",
        "|---|---|---|---|---|",
    ]
    for t in sorted(report.wallets.values(), key=lambda t: t.wallet_id):
        lines.append(
            f"| {t.wallet_id} | {t.ledger_paid_count} / {t.ledger_paid_sats} | "
            f"{t.sent_count} / {t.sent_sats} | {t.received_count} / {t.received_sats} | "
            f"{'yes' if t.balanced else 'NO'} |"
        )
    return "\n".join(lines)


def _ledger_paid_count(ledger: LedgerResource, start: datetime, end: datetime) -> int:
    with ledger.engine().connect() as c:
        return payout_store.count_paid_between(c, start, end)


@dg.asset(
    group_name="payouts",
    kinds={"lnbits"},
    # Lineage only (the payout job, an op job, sits between): what is reconciled was allocated
    # by these assets, so the UI graph reads raw → validated → allocation → payouts.
    deps=["flow_allocations", "fixed_allocations", "commission_splits"],
    check_specs=[
        dg.AssetCheckSpec(
            CHECK_NAME,
            asset="payout_reconciliation",
            description="Every ledger payout of the period is paid exactly once on LNbits, "
            "for its amount, to its wallet; LNbits has no payout payment the ledger lacks.",
        )
    ],
)
def payout_reconciliation(
    context: dg.AssetExecutionContext,
    config: ReconciliationConfig,
    ledger: LedgerResource,
    lnbits: LNbitsResource,
    alerts: AlertsResource,
    settings: BusinessSettings,
) -> dg.MaterializeResult:
    start, end = _period(config, settings.timezone)
    if not lnbits_configured(lnbits):
        # Nothing can have been paid without LNbits; say so rather than fail a dry-run setup.
        paid = _ledger_paid_count(ledger, start, end)
        problems = [f"{paid} paid payouts, but LNbits is not configured"] if paid else []
        return dg.MaterializeResult(
            metadata={"period_start": start.isoformat(), "period_end": end.isoformat()},
            check_results=[
                dg.AssetCheckResult(
                    check_name=CHECK_NAME,
                    passed=not problems,
                    metadata={"problems": dg.MetadataValue.json(problems), "lnbits": "unset"},
                )
            ],
        )
    with lnbits.client() as client:
        report = reconcile_period(ledger.engine(), client, start, end)
    if not report.ok:
        alerts.dispatcher(context.log).send(
            Alert(
                AlertKind.RECONCILIATION_MISMATCH,
                f"Payout reconciliation found {len(report.problems)} difference(s)",
                "; ".join(report.problems[:20]),
                f"reconciliation:{start.date()}..{end.date()}:{len(report.problems)}",
            )
        )
    return dg.MaterializeResult(
        metadata={
            "period_start": start.isoformat(),
            "period_end": end.isoformat(),
            "payouts_checked": report.payouts_checked,
            "wallets": len(report.wallets),
            "per_wallet": dg.MetadataValue.md(_table(report)),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=CHECK_NAME,
                passed=report.ok,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    "problems": dg.MetadataValue.json(report.problems[:100]),
                    "problem_count": len(report.problems),
                },
            )
        ],
    )
