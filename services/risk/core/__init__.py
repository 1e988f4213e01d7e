"""The pure risk core: pre-trade reservations and the post-trade ledger. No Kafka, no stores, no clock."""

from services.common.codes import RiskReject
from services.risk.core.engine import Posting, RiskEngine, RiskResult, postings
from services.risk.core.errors import InvalidRiskInput, LedgerInvariantError, RiskError
from services.risk.core.events import (
    AlertAction,
    BalanceChanged,
    ChangeReason,
    FundingPaid,
    InsuranceDrawn,
    InventoryChanged,
    LiquidationAlert,
    PositionChanged,
    PositionUnderCollateralized,
    RiskEvent,
    ShortfallReason,
)

__all__ = [
    "AlertAction",
    "BalanceChanged",
    "ChangeReason",
    "FundingPaid",
    "InsuranceDrawn",
    "InvalidRiskInput",
    "InventoryChanged",
    "LedgerInvariantError",
    "LiquidationAlert",
    "PositionChanged",
    "PositionUnderCollateralized",
    "Posting",
    "RiskEngine",
    "RiskError",
    "RiskEvent",
    "RiskReject",
    "RiskResult",
    "ShortfallReason",
    "postings",
]
