"""Lottery draws: a lottery costs points per draw and awards one of its prizes by weight
(docs/lottery.md)."""
