"""Entry point: `python -m services.settlement` (one instance: docs/settlement.md).

The Vault is `VAULT_ADDRESS` (by default the one `python -m services.chain.deploy` recorded in the
deployment file); the key is `CHAIN_SETTLEMENT_KEY` (anvil account #1 on the local chain only).
"""

from __future__ import annotations

import logging

from services.chain import artifacts, client
from services.chain.accounts import SETTLEMENT_KEY_ENV, signing_key
from services.chain.deploy import VAULT, read_exchange
from services.chain.deployments import deployment_path
from services.common.bus import Bus, stop_on_signals
from services.common.logs import configure_logging
from services.common.observability import gauge, serve, watch_stats
from services.common.settings import Settings, get_settings
from services.common.stores import cassandra
from services.settlement.service import SettlementService
from services.settlement.store import BatchProjection
from services.settlement.vault import GWEI, GasPolicy, VaultClient

log = logging.getLogger("services.settlement")


def vault_client(settings: Settings) -> VaultClient:
    """The Vault at VAULT_ADDRESS, signed by the settlement key, with the settings' gas and retries."""
    w3 = client.connect(settings.eth_rpc_url, retries=False)  # VaultClient retries itself
    chain_id = w3.eth.chain_id
    if not client.has_code(w3, settings.vault_address):
        raise SystemExit(
            f"no contract at VAULT_ADDRESS {settings.vault_address} on chain {chain_id}: "
            "deploy one (python -m services.chain.deploy) or set VAULT_ADDRESS"
        )
    recorded = read_exchange(deployment_path(settings.cxpt_run_dir))
    from_block = (
        recorded.block if recorded and recorded.vault.lower() == settings.vault_address.lower() else 0
    )
    return VaultClient(
        w3,
        artifacts.load(VAULT),
        settings.vault_address,
        signing_key(SETTLEMENT_KEY_ENV, chain_id),
        gas=GasPolicy(
            max_fee_wei=settings.settlement_max_fee_gwei * GWEI,
            priority_fee_wei=settings.settlement_priority_fee_gwei * GWEI,
        ),
        retries=settings.settlement_rpc_retries,
        from_block=from_block,
    )


def main() -> None:
    settings = get_settings()
    configure_logging(settings, service="settlement")
    bus = Bus(settings)
    session = cassandra.connect(settings)
    cassandra.migrate(session, settings.cassandra_keyspace, settings.cassandra_replication)
    service = SettlementService(
        bus, vault_client(settings), projection=BatchProjection(bus, session, settings.cassandra_keyspace)
    )
    serve(
        settings.settlement_metrics_port, service="settlement", host=settings.observability_host,
        ready=lambda: service.caught_up,
    )  # fmt: skip
    watch_stats("settlement", lambda: service.stats)
    gauge("cxpt_settlement_batches_unconfirmed", lambda: len(service.core.unconfirmed()))
    service.run(stop_on_signals())
    session.cluster.shutdown()
    log.info("settlement: stopped %s", service.stats)


if __name__ == "__main__":
    main()
