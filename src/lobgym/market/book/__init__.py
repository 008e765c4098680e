"""The order-book market: an L3 limit order book, the background flow that drives it, and the agent in it.

The book is :mod:`.lob`, the background order flow that drives it :mod:`.flow` (one module per model)
and the agent's orders, latencies, fees and fills in it :mod:`.step`; :mod:`.reference` is the
pure-Python oracle of the book.
"""
