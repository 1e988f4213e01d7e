"""Settings for every service, from environment variables only.

Defaults point at the local launcher (`python -m deploy.local start`), so a developer needs to set
nothing. The full list, with meanings, is in the README ("Configuration").
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    """One flat set of environment variables shared by all services."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap list")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how clients reach the brokers; production: SASL_SSL"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = Field(None, description="from a secret, never a file in git")
    kafka_ssl_ca_location: str | None = Field(
        None, description="PEM file of the CA that signed the brokers' certificates (unset: system CAs)"
    )
    cassandra_username: str | None = Field(None, description="unset: no authentication")
    cassandra_password: SecretStr | None = None
    cassandra_ssl_ca: str | None = Field(
        None, description="PEM file of the CA of the nodes' certificates; set: TLS, hostnames verified"
    )
    schema_registry_url: str | None = Field(
        None, description="Confluent Schema Registry URL; unset = ids from schemas/manifest.json"
    )
    cassandra_contact_points: str = Field("127.0.0.1", description="comma-separated hosts")
    cassandra_port: int = 9042
    cassandra_keyspace: str = "cxpt"
    cassandra_replication: str = Field(
        "{'class': 'SimpleStrategy', 'replication_factor': 1}",
        description="CQL replication map used when the keyspace is created",
    )
    cxpt_run_dir: Path = Field(REPO_ROOT / ".run", description="local launcher's run directory")
    clickhouse_dsn: str = Field(
        default_factory=lambda data: f"chdb://{Path(data['cxpt_run_dir']).resolve() / 'clickhouse'}",
        description="chdb:///abs/path (embedded) or http(s)://user:pass@host:8123 (server)",
    )
    clickhouse_database: str = "cxpt"
    eth_rpc_url: str = "http://127.0.0.1:8545"
    topic_prefix: str = Field("", description="prefix for every topic and consumer group name")
    instance_id: str = Field("0", description="stable id of this replica (StatefulSet ordinal)")
    snapshot_every: int = Field(10_000, ge=1, description="commands between state snapshots, at least")
    snapshot_commands_per_order: int = Field(
        4, ge=0, description="and at least this many per order resting then (0: by count alone)"
    )
    batch_max_messages: int = Field(
        200, ge=1, description="max records per transaction (group commit: only a backlog fills one)"
    )
    batch_timeout_ms: int = Field(20, ge=0, description="longest wait for the first record of a batch")
    batch_linger_ms: int = Field(
        20, ge=0, description="how long a batch without urgent records waits for more (bus.py: group commit)"
    )
    projector_linger_ms: int = Field(
        100, ge=0, description="how long the Cassandra projectors gather records into one round of writes"
    )
    log_level: str = "INFO"
    log_json: bool = True

    # -- observability (docs/observability.md): /metrics /health /ready of the Kafka services ----
    observability_host: str = Field(
        "127.0.0.1", description="address the services' /metrics, /health, /ready listen on; k8s: 0.0.0.0"
    )
    matcher_metrics_port: int = Field(9101, ge=0, description="matcher's /metrics /health /ready; 0: none")
    risk_metrics_port: int = Field(9103, ge=0, description="risk's /metrics /health /ready; 0: none")
    projector_metrics_port: int = Field(
        9104, ge=0, description="projector's /metrics /health /ready; 0: none"
    )
    funding_metrics_port: int = Field(9105, ge=0, description="funding's /metrics /health /ready; 0: none")
    watcher_metrics_port: int = Field(9106, ge=0, description="watcher's /metrics /health /ready; 0: none")
    settlement_metrics_port: int = Field(
        9107, ge=0, description="settlement's /metrics /health /ready; 0: none"
    )

    # -- order gateway -------------------------------------------------------------------------
    gateway_host: str = Field("127.0.0.1", description="address the gateway listens on")
    gateway_port: int = Field(8080, description="port the gateway listens on")
    chain_id: int = Field(31337, description="EIP-712 domain chain id (31337: the local anvil)")
    vault_address: str = Field(
        default_factory=lambda data: _vault_from_deployment(data),  # noqa: PLW0108 (defined below)
        description="EIP-712 verifying contract: the Vault proxy; unset: the deployment file's, else 0x…dead",
    )
    gateway_session_secret: str | None = Field(
        None, description="HS256 key for read-session tokens; unset: a random one per process"
    )
    session_max_s: int = Field(86_400, ge=60, description="longest read session a signature may open")
    admin_jwt_key: str | None = Field(
        None, description="admin JWT verification key: an HS256 secret or a PEM public key"
    )
    admin_jwks_url: str | None = Field(None, description="admin JWT keys from an OIDC JWKS endpoint")
    admin_jwt_audience: str | None = None
    admin_jwt_issuer: str | None = None
    admin_groups_claim: str = Field("cognito:groups", description="JWT claim listing the caller's groups")
    admin_group: str = Field("admin", description="group allowed on /admin routes")
    ack_timeout_ms: int = Field(2_000, ge=0, description="how long POST /orders waits for the matcher")
    rate_limit_burst: int = Field(200, ge=1, description="token bucket size per IP and per trader")
    rate_limit_per_s: int = Field(100, ge=1, description="token refill per second per IP and per trader")
    max_body_bytes: int = Field(16_384, ge=256, description="largest request body the gateway reads")

    # -- oracle (docs/oracle.md) ---------------------------------------------------------------
    oracle_interval_s: int = Field(30, ge=1, description="seconds between oracle rounds")
    oracle_simulated: str = Field("", description="simulated feeds: INDEX=start price,… e.g. BTC-USD=65000")
    oracle_simulated_seed: int = Field(1, description="seed of the simulated feeds' price paths")
    oracle_pyth_url: str | None = Field(None, description="Pyth Hermes base URL; unset: no Pyth source")
    oracle_pyth_ids: str = Field("", description="Pyth feeds: INDEX=price id,…")
    oracle_chainlink_feeds: str = Field("", description="Chainlink feeds on ETH_RPC_URL: INDEX=address,…")
    oracle_source_timeout_ms: int = Field(5_000, ge=1, description="per-request timeout of HTTP/RPC sources")
    oracle_max_age_s: int = Field(120, ge=0, description="older quotes are STALE")
    oracle_max_deviation_bps: int = Field(200, ge=0, description="further from the median: DEVIATING")
    oracle_max_confidence_bps: int = Field(100, ge=0, description="wider confidence: LOW_CONFIDENCE")
    oracle_max_jump_bps: int = Field(
        1_000, ge=0, description="further from the last index: DEVIATING (a jump)"
    )
    oracle_jump_quorum: int = Field(
        2, ge=0, description="this many agreeing sources may move the index further"
    )
    oracle_min_sources: int = Field(1, ge=1, description="fewer accepted quotes: no index price")
    oracle_twap_windows_s: str = Field("300,3600", description="TWAP windows, seconds, comma-separated")
    oracle_metrics_port: int = Field(9102, ge=0, description="oracle's /metrics /health /ready; 0: none")

    # -- funding/expiry (docs/derivatives.md) ----------------------------------------------------
    funding_interval_s: int = Field(3_600, ge=1, description="funding interval, aligned to the epoch")
    funding_cap_e9: int = Field(1_000_000, ge=0, description="funding rate cap per interval × 1e9")
    funding_snapshot_every_s: float = Field(
        300, gt=0, description="funding/expiry: seconds between snapshots of the scheduler's state"
    )
    mark_basis_rounds: int = Field(10, ge=1, description="oracle rounds in the mark's basis average")
    mark_clamp_bps: int = Field(50, ge=0, lt=5_000, description="mark within ± this of the index")
    settlement_window_s: int = Field(1_800, ge=1, description="index TWAP window before expiry")
    option_vols: str = Field("", description="Black-76 vol per underlying: INDEX=vol,… e.g. BTC-USD=0.6")
    option_vol_default: float = Field(0.6, gt=0, description="Black-76 vol of an underlying not listed")

    # -- settlement (docs/settlement.md) ---------------------------------------------------------
    settlement_batch_max_traders: int = Field(
        100, ge=1, description="a batch closes at the first cut after this many traders"
    )
    settlement_batch_window_s: int = Field(10, ge=0, description="… or after this many seconds of log time")
    settlement_confirmations: int = Field(
        1, ge=1, description="blocks (its own included) before a batch is CONFIRMED"
    )
    settlement_max_fee_gwei: int = Field(200, ge=1, description="EIP-1559 maxFeePerGas cap")
    settlement_priority_fee_gwei: int = Field(1, ge=0, description="EIP-1559 maxPriorityFeePerGas")
    settlement_stuck_after_s: float = Field(
        90, gt=0, description="a transaction not mined after this long is sent again, fees +12.5 %"
    )
    settlement_rpc_retries: int = Field(
        5, ge=0, description="retries of a transient RPC error, with back-off"
    )
    settlement_withdrawal_margin_s: int = Field(
        30, ge=0, description="no withdraw() sent closer to its deadline"
    )

    # -- chain watcher (docs/watcher.md) ---------------------------------------------------------
    watcher_confirmations: int = Field(
        12, ge=1, description="blocks (its own included) before a Vault log is final; dev.sh: 2"
    )
    watcher_poll_s: float = Field(2.0, gt=0, description="seconds between polls of the chain head")
    watcher_start_block: int | None = Field(
        None, ge=0, description="first block read on a fresh start; unset: the Vault's deployment block"
    )

    # -- metrics (docs/analytics.md) -------------------------------------------------------------
    metrics_host: str = Field("127.0.0.1", description="address the metrics service listens on")
    metrics_port: int = Field(8095, description="port of the metrics service (dashboards, POST /sql)")
    metrics_url: str = Field(
        "http://127.0.0.1:8095", description="the metrics service `python -m services.metrics sql` talks to"
    )

    # -- ws-push (docs/wspush.md) -------------------------------------------------------------------
    wspush_host: str = Field("127.0.0.1", description="address ws-push listens on")
    wspush_port: int = Field(8090, description="port of ws-push (WebSocket /ws, /metrics, /ready)")
    wspush_outbox_max: int = Field(
        5_000, ge=1, description="messages queued behind a blocked write before a slow consumer is dropped"
    )
    wspush_heartbeat_s: float = Field(
        20.0, gt=0, description="WebSocket ping interval (and pong timeout); registry rows refreshed as often"
    )

    @model_validator(mode="after")
    def _credentials_come_in_pairs(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs KAFKA_SASL_USERNAME and "
                "KAFKA_SASL_PASSWORD"
            )
        if (self.cassandra_username is None) != (self.cassandra_password is None):
            raise ValueError("set CASSANDRA_USERNAME and CASSANDRA_PASSWORD together, or neither")
        return self

    @property
    def cassandra_hosts(self) -> list[str]:
        return [h.strip() for h in self.cassandra_contact_points.split(",") if h.strip()]


PLACEHOLDER_VAULT = "0x000000000000000000000000000000000000dead"


def _vault_from_deployment(data: dict[str, Any]) -> str:
    """The Vault recorded in ``<run dir>/deployments/local.json`` (``python -m services.chain.deploy``)
    when that file describes this chain id; else the placeholder."""
    try:
        raw = json.loads((Path(data["cxpt_run_dir"]) / "deployments" / "local.json").read_text())
    except (KeyError, OSError, ValueError):
        return PLACEHOLDER_VAULT
    vault = raw.get("vault") if isinstance(raw, dict) else None
    if isinstance(vault, str) and raw.get("chain_id") == data.get("chain_id"):
        return vault
    return PLACEHOLDER_VAULT


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
