"""The watcher's pure core: no I/O, no clock (docs/watcher.md).

- `chain`: blocks and decoded Vault logs as values;
- `logs`: decoding `Deposited` / `Withdrawn` from raw topics and data;
- `tracker`: the finality state machine (confirmation depth, reorg rules as a table);
- `events`: final logs → AccountEvent records, event ids, and the restart cursor rule.
"""

from services.watcher.core.chain import Block, Deposited, FinalBlock, VaultEvent, VaultLog, Withdrawn
from services.watcher.core.events import account_event, account_events, event_id, parse_event_id, resume_after
from services.watcher.core.logs import MalformedVaultLog, RawLog, decode_vault_log
from services.watcher.core.tracker import Anchor, DeepReorg, FinalityTracker, Rule, Step, TrackerHalted

__all__ = [
    "Anchor",
    "Block",
    "DeepReorg",
    "Deposited",
    "FinalBlock",
    "FinalityTracker",
    "MalformedVaultLog",
    "RawLog",
    "Rule",
    "Step",
    "TrackerHalted",
    "VaultEvent",
    "VaultLog",
    "Withdrawn",
    "account_event",
    "account_events",
    "decode_vault_log",
    "event_id",
    "parse_event_id",
    "resume_after",
]
