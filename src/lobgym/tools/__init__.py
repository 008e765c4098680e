"""Tools over the product: benchmarks, studies and their reports, and validation of the book's flow.

Benchmarks (``bench``), studies over seeds, rewards and learning rates (``study``) and their reports
(``report``), and the stylised-facts validation of the book's flow (``validation``). They use the envs,
agents and training like a user would; nothing below imports them.
"""
