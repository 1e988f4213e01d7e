"""From settings to the oracle's parts: the policy and the configured sources.

Feed lists are `INDEX=value` pairs separated by commas (`BTC-USD=65000,ETH-USD=3500`). The
Chainlink adapter (and web3) is imported only when Chainlink feeds are configured.
"""

from __future__ import annotations

import importlib
from decimal import Decimal, InvalidOperation

from services.common.settings import Settings
from services.oracle.adapters.clock import Clock
from services.oracle.adapters.pyth import PythSource
from services.oracle.adapters.simulated import SimulatedFeed, SimulatedSource
from services.oracle.core import OraclePolicy
from services.oracle.ports import PRICE_DECIMALS, PriceSource


class ConfigurationError(ValueError):
    """An oracle setting that cannot be understood: the service refuses to start."""


def pairs(text: str, setting: str) -> list[tuple[str, str]]:
    """`A=x,B=y` → [("A", "x"), ("B", "y")]; blanks ignored."""
    found = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigurationError(f"{setting}: expected INDEX=value, got {item!r}")
        found.append((key.strip(), value.strip()))
    return found


def decimal_e9(text: str, setting: str) -> int:
    """A decimal price such as `65000.5` in 1e-9 units, exactly (more than 9 decimals is refused)."""
    try:
        value = Decimal(text) * 10**PRICE_DECIMALS
    except InvalidOperation as exc:
        raise ConfigurationError(f"{setting}: {text!r} is not a decimal number") from exc
    if value != value.to_integral_value() or value <= 0:
        raise ConfigurationError(f"{setting}: {text!r} must be positive with at most 9 decimals")
    return int(value)


def policy_from(settings: Settings) -> OraclePolicy:
    """The verdict thresholds and TWAP windows the settings name."""
    try:
        windows = tuple(int(w) for w in settings.oracle_twap_windows_s.split(",") if w.strip())
        return OraclePolicy(
            max_age_s=settings.oracle_max_age_s,
            max_deviation_bps=settings.oracle_max_deviation_bps,
            max_confidence_bps=settings.oracle_max_confidence_bps,
            max_jump_bps=settings.oracle_max_jump_bps,
            jump_quorum=settings.oracle_jump_quorum,
            min_sources=settings.oracle_min_sources,
            twap_windows_s=windows,
        )
    except ValueError as exc:
        raise ConfigurationError(f"oracle policy: {exc}") from exc


def sources_from(settings: Settings, clock: Clock) -> list[PriceSource]:
    """Every configured source: simulated, Pyth, Chainlink (in that order)."""
    sources: list[PriceSource] = []
    simulated = [
        SimulatedFeed(index, decimal_e9(start, "ORACLE_SIMULATED"))
        for index, start in pairs(settings.oracle_simulated, "ORACLE_SIMULATED")
    ]
    if simulated:
        sources.append(SimulatedSource(simulated, seed=settings.oracle_simulated_seed, clock=clock))
    pyth_ids = pairs(settings.oracle_pyth_ids, "ORACLE_PYTH_IDS")
    if pyth_ids:
        if not settings.oracle_pyth_url:
            raise ConfigurationError("ORACLE_PYTH_IDS given without ORACLE_PYTH_URL")
        feeds = {price_id: index for index, price_id in pyth_ids}
        sources.append(PythSource(settings.oracle_pyth_url, feeds, timeout_s=_seconds(settings)))
    chainlink_feeds = pairs(settings.oracle_chainlink_feeds, "ORACLE_CHAINLINK_FEEDS")
    if chainlink_feeds:
        sources.append(chainlink_source(settings, dict(chainlink_feeds)))
    if not sources:
        raise ConfigurationError("no source: set ORACLE_SIMULATED, ORACLE_PYTH_* or ORACLE_CHAINLINK_FEEDS")
    return sources


def chainlink_source(settings: Settings, feeds: dict[str, str]) -> PriceSource:
    """The Chainlink source on ETH_RPC_URL (index → aggregator address), imported on demand."""
    web3 = importlib.import_module("web3")
    chainlink = importlib.import_module("services.oracle.adapters.chainlink")
    provider = web3.Web3.HTTPProvider(settings.eth_rpc_url, request_kwargs={"timeout": _seconds(settings)})
    source: PriceSource = chainlink.ChainlinkSource(web3.Web3(provider), feeds)
    return source


def _seconds(settings: Settings) -> float:
    return settings.oracle_source_timeout_ms / 1000
