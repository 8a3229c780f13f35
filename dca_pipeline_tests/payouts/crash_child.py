"""A payout run in its own process that SIGKILLs itself at a chosen step (fault injection).

    python -m dca_pipeline_tests.payouts.crash_child LEDGER_URL LNBITS_URL STEP NTH

The source wallet keys come from DCA_LNBITS_SOURCE_ADMIN_KEY / DCA_LNBITS_SOURCE_INVOICE_KEY.
The process kills itself (no cleanup, no lease release, no commit of anything in flight) the
NTH time the procedure reaches STEP; if it never does, it exits 0 after a normal run.
"""

from __future__ import annotations

import os
import signal
import sys

from dca_pipeline.ledger.database import ledger_engine, migrate
from dca_pipeline.payouts import LNbitsClient
from dca_pipeline.payouts.procedure import run_payouts


def main() -> None:
    ledger_url, lnbits_url, crash_step, nth = (
        sys.argv[1],
        sys.argv[2],
        sys.argv[3],
        int(sys.argv[4]),
    )
    engine = ledger_engine(ledger_url)
    migrate(engine)
    seen = {"count": 0}

    def hook(step: str, payout_id: str) -> None:
        if step == crash_step:
            seen["count"] += 1
            if seen["count"] == nth:
                os.kill(os.getpid(), signal.SIGKILL)

    with LNbitsClient(
        lnbits_url,
        os.environ["DCA_LNBITS_SOURCE_ADMIN_KEY"],
        os.environ["DCA_LNBITS_SOURCE_INVOICE_KEY"],
    ) as client:
        report = run_payouts(engine, client, run_id=f"crash-{crash_step}", hook=hook)
    print(report.status.value, len(report.paid))


if __name__ == "__main__":
    main()
