"""``payout_job``: one op, ``send_payouts``, around :func:`dca_pipeline.payouts.run_payouts`.

Runs carry the tag ``dca/payout`` (limited to one at a time in ``dagster.yaml``); the database
lease inside the procedure also stops a second writer started any other way.
"""

from collections.abc import Callable, Sequence

import dagster as dg
from pydantic import Field

from dca_pipeline.alerts import Alert, AlertKind
from dca_pipeline.config import Config
from dca_pipeline.config import config as current_config  # `config` is the op's run config
from dca_pipeline.defs.payout.gate import blocking_check_problems, money_check_keys
from dca_pipeline.defs.payout.resources import AlertsResource, lnbits_configured
from dca_pipeline.defs.settings import BusinessSettings
from dca_pipeline.ledger.resource import LedgerResource
from dca_pipeline.payouts.procedure import PayoutOptions, RunStatus, run_payouts
from dca_pipeline.payouts.resource import LNbitsResource

PAYOUT_TAG = "dca/payout"
DRY_RUN_ENV = Config.variable("payouts_dry_run")
#: Statuses after which the run is shown as failed (an operator has something to do).
FAILED_STATUSES = frozenset(
    {
        RunStatus.UNDERFUNDED,
        RunStatus.LNBITS_UNAVAILABLE,
        RunStatus.LNBITS_ERROR,
        RunStatus.LEASE_LOST,
    }
)

CheckKeys = Sequence[dg.AssetCheckKey] | Callable[[], Sequence[dg.AssetCheckKey]]


class PayoutConfig(dg.Config):
    dry_run: bool | None = Field(
        default=None,
        description=f"Plan and record without paying. Unset: env {DRY_RUN_ENV} (default false).",
    )


def build_payout_job(check_keys: CheckKeys = money_check_keys, name: str = "payout_job"):  # type: ignore[no-untyped-def]
    """The payout job, refusing to pay while any of ``check_keys`` is not green."""

    @dg.op(name="send_payouts", out=dg.Out(dg.Nothing))
    def send_payouts(
        context: dg.OpExecutionContext,
        config: PayoutConfig,
        ledger: LedgerResource,
        lnbits: LNbitsResource,
        alerts: AlertsResource,
        settings: BusinessSettings,
    ) -> dg.Output[None]:
        dispatcher = alerts.dispatcher(context.log)
        dry_run = config.dry_run
        if dry_run is None:
            dry_run = current_config().payouts_dry_run
        keys = list(check_keys() if callable(check_keys) else check_keys)
        if not keys:
            context.log.warning("no money checks are known yet: the payout gate checks nothing")
        problems = blocking_check_problems(context.instance, keys)
        if problems:
            dispatcher.send(
                Alert(
                    AlertKind.CHECK_FAILED,
                    "Payouts refused: a blocking money check is not green",
                    "Nothing was planned or paid. " + "; ".join(problems),
                    "payout_gate:" + ",".join(sorted(problems))[:200],
                )
            )
            raise dg.Failure(
                description="refusing to pay: " + "; ".join(problems),
                metadata={"blocked_by": dg.MetadataValue.json(problems)},
            )
        if not dry_run and not lnbits_configured(lnbits):
            raise dg.Failure(description="DCA_LNBITS_URL is not set: cannot pay")
        with lnbits.client() as client:
            report = run_payouts(
                ledger.engine(),
                client,
                run_id=context.run_id,
                alerts=dispatcher,
                options=PayoutOptions(dry_run=dry_run, currency=settings.currency),
                log=context.log,
            )
        metadata = {key: value for key, value in report.summary().items()}
        if report.status in FAILED_STATUSES or report.failed:
            raise dg.Failure(
                description=f"payout run {report.status.value}: {report.detail or 'see alerts'}",
                metadata=metadata,
            )
        return dg.Output(None, metadata=metadata)

    @dg.job(
        name=name,
        tags={PAYOUT_TAG: "1"},
        description="Pay every unpaid allocation line exactly once (business-rules §7).",
    )
    def payout_job() -> None:
        send_payouts()

    return payout_job


payout_job = build_payout_job()
