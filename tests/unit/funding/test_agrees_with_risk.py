"""Risk keeps its own copy of the funding and payoff rules (services never import each other);
the two must agree exactly, or CLEARING would not net to zero."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from msgspec import structs

from services.common.presets import preset
from services.common.records import MarketKind, OptionType
from services.funding.core.expiry import option_payoff_per_lot
from services.funding.core.funding import funding_per_lot
from services.risk.core import rules


@given(rate=st.integers(-(10**9), 10**9), index=st.integers(1, 10**9), qptl=st.integers(1, 10**4))
def test_funding_per_lot_agrees_with_risk(rate: int, index: int, qptl: int) -> None:
    definition = structs.replace(preset("BTC-PERP"), quote_per_tick_lot=qptl)
    assert funding_per_lot(rate, index, qptl) == rules.funding_per_lot(definition, index, rate)


@given(
    option_type=st.sampled_from(OptionType),
    settle=st.integers(1, 10**8),
    strike=st.integers(1, 10**8),
    qptl=st.integers(1, 10**4),
)
def test_option_payoff_agrees_with_risk(option_type: OptionType, settle: int, strike: int, qptl: int) -> None:
    definition = structs.replace(
        preset("BTC-PERP"), kind=MarketKind.OPTION, expiry=1, strike=strike, option_type=option_type,
        quote_per_tick_lot=qptl,
    )  # fmt: skip
    assert option_payoff_per_lot(option_type, settle, strike, qptl) == rules.option_payoff_per_lot(
        definition, settle
    )
