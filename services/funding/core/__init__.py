"""The funding/expiry pure core: marks, funding maths, settlement, Black-76 and the scheduler.

No I/O, no clock (time is the `Tick` input), no randomness. Integers for every price and amount;
floats only in Black-76 (option marks and implied volatility for metrics, never a balance).
"""
