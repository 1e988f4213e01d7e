"""Black-76: the price of a European option on a forward, its vega, and implied volatility.

Floats on purpose: this prices option *marks* and implied volatility for metrics, never a balance.
Inputs: forward F (the underlying index, r = 0 so forward = spot), strike K, time to expiry T in
years (365-day years of seconds), volatility σ (annualised, 0.6 = 60 %). With r = 0 there is no
discounting:

    d1 = (ln(F/K) + σ²T/2) / (σ√T),  d2 = d1 − σ√T
    call = F·N(d1) − K·N(d2),  put = K·N(−d2) − F·N(−d1),  vega = F·φ(d1)·√T

Implied volatility: Newton from a Brenner–Subrahmanyam start, kept inside a bisection bracket
[1e-6, 10] and falling back to a bisection step whenever Newton leaves it or vega vanishes; at
most 100 iterations, price tolerance 1e-9 × F. Prices outside the no-arbitrage bounds —
below intrinsic `max(F − K, 0)` (call) / `max(K − F, 0)` (put), or at/above F (call) / K (put) —
have no volatility: the result says so instead of raising.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from services.common.records import OptionType

SECONDS_PER_YEAR = 365 * 24 * 3600
VOL_MIN, VOL_MAX = 1e-6, 10.0
MAX_ITERATIONS = 100


def year_fraction(from_us: int, to_us: int) -> float:
    """Years from `from_us` to `to_us` (µs), 365-day years; negative if `to_us` is earlier."""
    return (to_us - from_us) / 1e6 / SECONDS_PER_YEAR


def norm_cdf(x: float) -> float:
    """Standard normal cumulative distribution."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def norm_pdf(x: float) -> float:
    """Standard normal density."""
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def intrinsic(option_type: OptionType, forward: float, strike: float) -> float:
    """The payoff if exercised now."""
    return max(forward - strike, 0.0) if option_type is OptionType.CALL else max(strike - forward, 0.0)


def price(option_type: OptionType, forward: float, strike: float, t_years: float, vol: float) -> float:
    """Black-76 price (r = 0), in the units of `forward` and `strike`; intrinsic when T or σ is 0."""
    _check_inputs(forward, strike)
    if t_years <= 0.0 or vol <= 0.0:
        return intrinsic(option_type, forward, strike)
    d1, d2 = _d1_d2(forward, strike, t_years, vol)
    if option_type is OptionType.CALL:
        return forward * norm_cdf(d1) - strike * norm_cdf(d2)
    return strike * norm_cdf(-d2) - forward * norm_cdf(-d1)


def vega(forward: float, strike: float, t_years: float, vol: float) -> float:
    """∂price/∂σ (the same for calls and puts)."""
    _check_inputs(forward, strike)
    if t_years <= 0.0 or vol <= 0.0:
        return 0.0
    d1, _ = _d1_d2(forward, strike, t_years, vol)
    return forward * norm_pdf(d1) * math.sqrt(t_years)


class IvFailure(StrEnum):
    """Why a price has no implied volatility."""

    EXPIRED = "EXPIRED"  # T <= 0: the price is intrinsic whatever σ is
    BELOW_INTRINSIC = "BELOW_INTRINSIC"  # cheaper than exercising now: arbitrage, no σ fits
    ABOVE_MAXIMUM = "ABOVE_MAXIMUM"  # at or above F (call) / K (put): no σ fits
    OUT_OF_RANGE = "OUT_OF_RANGE"  # would need σ outside [1e-6, 10]
    NOT_CONVERGED = "NOT_CONVERGED"  # the iteration budget ran out


@dataclass(frozen=True, slots=True)
class ImpliedVolResult:
    """`vol` when one was found, else `failure` says why."""

    vol: float | None
    failure: IvFailure | None = None
    iterations: int = 0


def implied_vol(
    option_type: OptionType, option_price: float, forward: float, strike: float, t_years: float
) -> ImpliedVolResult:
    """The σ whose Black-76 price is `option_price` (Newton with a bisection fallback)."""
    _check_inputs(forward, strike)
    refusal = _no_vol_fits(option_type, option_price, forward, strike, t_years)
    if refusal is not None:
        return ImpliedVolResult(None, refusal)
    tolerance = 1e-9 * forward
    low, high = VOL_MIN, VOL_MAX
    vol = _initial_guess(option_price, forward, t_years)
    for iteration in range(1, MAX_ITERATIONS + 1):
        error = price(option_type, forward, strike, t_years, vol) - option_price
        if abs(error) <= tolerance:
            return ImpliedVolResult(vol, None, iteration)
        # The price rises with σ: keep the bracket around the root.
        if error > 0:
            high = vol
        else:
            low = vol
        slope = vega(forward, strike, t_years, vol)
        step = vol - error / slope if slope > 1e-12 else math.nan
        vol = step if low < step < high else 0.5 * (low + high)
    return ImpliedVolResult(None, IvFailure.NOT_CONVERGED, MAX_ITERATIONS)


def _no_vol_fits(
    option_type: OptionType, option_price: float, forward: float, strike: float, t_years: float
) -> IvFailure | None:
    """Why no σ in [VOL_MIN, VOL_MAX] can give `option_price`, or None if one can."""
    if t_years <= 0.0:
        return IvFailure.EXPIRED
    if option_price <= intrinsic(option_type, forward, strike):
        return IvFailure.BELOW_INTRINSIC
    if option_price >= (forward if option_type is OptionType.CALL else strike):
        return IvFailure.ABOVE_MAXIMUM
    tolerance = 1e-9 * forward
    too_high = price(option_type, forward, strike, t_years, VOL_MAX) < option_price - tolerance
    too_low = price(option_type, forward, strike, t_years, VOL_MIN) > option_price + tolerance
    return IvFailure.OUT_OF_RANGE if too_high or too_low else None


def _initial_guess(option_price: float, forward: float, t_years: float) -> float:
    """Brenner–Subrahmanyam at the money: σ ≈ price/F × √(2π/T), kept inside the bracket."""
    guess = option_price / forward * math.sqrt(2.0 * math.pi / t_years)
    return min(max(guess, 0.01), 5.0)


def _d1_d2(forward: float, strike: float, t_years: float, vol: float) -> tuple[float, float]:
    spread = vol * math.sqrt(t_years)
    d1 = (math.log(forward / strike) + 0.5 * spread * spread) / spread
    return d1, d1 - spread


def _check_inputs(forward: float, strike: float) -> None:
    if not (forward > 0.0 and strike > 0.0 and math.isfinite(forward) and math.isfinite(strike)):
        raise ValueError(f"forward {forward} and strike {strike} must be positive and finite")
