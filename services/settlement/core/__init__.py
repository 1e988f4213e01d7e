"""Settlement's pure core: no I/O, no clock, no randomness; integers for every amount.

* `fold` — per accounts.events partition, the per-trader totals and the batch builder that closes
  net settlement batches only at consistent cuts (the running sum of deltas is 0);
* `batches` — the batch, its deterministic id, and the status table (BUILT → SUBMITTED → …);
* `withdrawals` — requested withdrawals waiting for the batch that covers them to be confirmed;
* `settlement` — the three together, as the service drives them.

Time enters only as inputs: each record's log time, `tick(now)` from the adapter's clock, and the
chain's block time for withdrawal deadlines.
"""

from services.settlement.core.batches import (
    Batch,
    IllegalTransition,
    advance,
    batch_id,
)
from services.settlement.core.fold import FoldConfig, PartitionFold, SettlementInvariantError
from services.settlement.core.settlement import Settlement
from services.settlement.core.withdrawals import (
    ExecuteWithdrawal,
    FailWithdrawal,
    PendingWithdrawal,
    WithdrawalFailure,
    WithdrawalQueue,
)

__all__ = [
    "Batch",
    "ExecuteWithdrawal",
    "FailWithdrawal",
    "FoldConfig",
    "IllegalTransition",
    "PartitionFold",
    "PendingWithdrawal",
    "Settlement",
    "SettlementInvariantError",
    "WithdrawalFailure",
    "WithdrawalQueue",
    "advance",
    "batch_id",
]
