"""The oracle's pure core: verdicts on quotes, the median index, TWAPs. No clock, no I/O."""

from services.oracle.core.policy import OraclePolicy
from services.oracle.core.rounds import ClockWentBack, OracleState, Round, remember, run_round
from services.oracle.core.verdicts import median

__all__ = ["ClockWentBack", "OraclePolicy", "OracleState", "Round", "median", "remember", "run_round"]
