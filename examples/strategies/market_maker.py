"""A small market maker for `python -m services.replay backtest` — runs as written:

    .venv/bin/python -m services.replay sample --commands 20000 --output /tmp/cmds.avro
    .venv/bin/python -m services.replay engine --input /tmp/cmds.avro --output /tmp/log.avro
    .venv/bin/python -m services.replay backtest --data /tmp/log.avro --report /tmp/mm \
        --strategy examples/strategies/market_maker.py:MarketMaker --param size=5

It keeps one post-only bid and one post-only ask `edge` ticks outside the best prices of the
recorded book, skews both away from its inventory, and stops adding to a side once the position
reaches `max_position` lots. Quotes are replaced only when the price they should be at moves, so
they keep their queue priority otherwise. Everything is in the exchange's integers: ticks, lots.
"""

from __future__ import annotations

from services.replay.backtest import BaseStrategy, Context, Depth, Fill


class MarketMaker(BaseStrategy):
    """Quote both sides of one market around the recorded touch."""

    def __init__(
        self, market: str = "BTC-PERP", size: int = 5, edge: int = 1, max_position: int = 50
    ) -> None:
        self.market = market
        self.size = size
        self.edge = edge
        self.max_position = max_position
        self.quotes: dict[str, tuple[str, int] | None] = {"BUY": None, "SELL": None}
        """Per side: (order id, price) of the live quote."""
        self.filled_lots = 0

    def on_book(self, ctx: Context, depth: Depth) -> None:
        if depth.market != self.market or depth.best_bid is None or depth.best_ask is None:
            return
        position = ctx.position(self.market).size + ctx.holding(self.market)
        skew = position * self.edge // max(1, self.max_position // 4)  # lean against inventory
        wanted = {
            "BUY": depth.best_bid - self.edge - skew if position < self.max_position else None,
            "SELL": depth.best_ask + self.edge - skew if position > -self.max_position else None,
        }
        for side, price in wanted.items():
            live = self.quotes[side]
            if live is not None and (price is None or live[1] != price):
                ctx.cancel(self.market, live[0])
                self.quotes[side] = None
            if price is not None and price > 0 and self.quotes[side] is None:
                order_id = ctx.place_limit(self.market, side, self.size, price, post_only=True)
                self.quotes[side] = (order_id, price)

    def on_fill(self, ctx: Context, fill: Fill) -> None:
        self.filled_lots += fill.size
        live = self.quotes[fill.side.value]
        if live is not None and live[0] == fill.order_id and fill.leaves_qty == 0:
            self.quotes[fill.side.value] = None  # filled completely: quote again on the next book

    def on_reject(self, ctx: Context, rejection: object) -> None:
        # A post-only quote that would cross, or a cancel of a quote already filled: forget it.
        order_id = getattr(rejection, "order_id", None)
        for side, live in self.quotes.items():
            if live is not None and live[0] == order_id:
                self.quotes[side] = None

    def on_end(self, ctx: Context) -> None:
        ctx.cancel_all(self.market)
