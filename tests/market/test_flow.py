"""The Cont–Stoikov–Talreja flow against what it must reproduce.

An isolated best queue (bids arrive one tick below a wall of asks that never moves; sell market
orders and cancellations take them away) is a birth-death chain with birth rate lambda and death
rate mu + x * theta, whose stationary law is pi(x) ~ lambda^x / prod_{j<=x} (mu + j theta)
(Cont, Stoikov & Talreja 2010). Event counts must match the configured rates.
"""

from __future__ import annotations

import math

import numpy as np
from helpers import WALL, isolated_bid_queue, sampled_queue_lengths

from lobgym.market.book import flow as F
from lobgym.market.book import lob as B
from lobgym.market.constants import ASK, BID
from lobgym.market.rng import make_rng, seed_rng

LAM, MU, THETA = 1.85, 0.94, 0.71


def _isolated_queue(n_books: int):
    lam = np.array([[LAM], [0.0]])
    params = F.cst_params_from_rates(lam, theta=[[THETA, THETA], [0.0, 0.0]], mu=[0.0, MU], size=1)
    return params, *isolated_bid_queue(n_books, 128, seed=99)


def test_isolated_best_queue_has_the_birth_death_stationary_law():
    n_books, burn_in, samples = 200, 20, 300
    params, book, fills, flow, rng = _isolated_queue(n_books)
    counts = sampled_queue_lengths(book, flow, params, rng, fills, burn_in, samples)
    assert (book.n_rejected == 0).all() and (book.best_ask == WALL).all()
    x_max = 40
    weights = np.array([LAM**x / math.prod(MU + j * THETA for j in range(1, x + 1)) for x in range(x_max)])
    pi = weights / weights.sum()
    empirical = np.bincount(counts, minlength=x_max)[:x_max] / len(counts)
    # Total variation distance; 60k samples, about one relaxation time apart.
    assert 0.5 * np.abs(empirical - pi).sum() < 0.02, (empirical[:8], pi[:8])
    assert abs(counts.mean() - (pi * np.arange(x_max)).sum()) < 0.05


def test_event_counts_match_the_configured_rates():
    n_books, horizon = 200, 200.0
    params, book, fills, flow, rng = _isolated_queue(n_books)
    F.advance(book, flow, params, rng, fills, horizon)
    total_time = n_books * horizon
    for column, rate in ((F.EVENT_LIMIT_BID, LAM), (F.EVENT_MARKET_SELL, MU)):
        n = flow.events[:, column].sum()
        assert abs(n - rate * total_time) < 4 * math.sqrt(rate * total_time), (column, n, rate * total_time)
    assert flow.events[:, F.EVENT_MARKET_BUY].sum() == 0 and flow.events[:, F.EVENT_LIMIT_ASK].sum() == 0
    # Cancellations: their count minus the integral of their intensity is a martingale.
    n_cancel = flow.events[:, F.EVENT_CANCEL_BID].sum()
    compensator = flow.cancel_intensity.sum()
    assert abs(n_cancel - compensator) < 4 * math.sqrt(compensator)
    assert flow.events[:, F.EVENT_CANCEL_ASK].sum() == 0


def test_paper_parameters_keep_a_two_sided_book_and_are_deterministic():
    def run(seed: int):
        params = F.cst_params([1.85, 1.51, 1.09, 0.88, 0.77], [0.71, 0.81, 0.68, 0.56, 0.47], 0.94,
                                   levels=10, k=1.92, alpha=0.52)
        n = 4
        book, fills, flow = B.make_book(n, 200, 1024), B.make_fill_log(n, 256), F.make_flow_state(n)
        rng = make_rng(n)
        seed_rng(rng, np.arange(n, dtype=np.uint64) + seed)
        for i in range(n):
            F.seed_book(book, flow, fills, i, 10_000, 10, 3, 1)
        for t in range(1, 101):
            F.advance(book, flow, params, rng, fills, float(t))
            assert ((book.best_bid < book.best_ask) | (book.best_bid == B.NO_BID) | (book.best_ask == B.NO_ASK)).all()
        return [B.dump_book(book, i) for i in range(n)], flow.events.copy()

    first, events = run(0)
    again, events_again = run(0)
    assert first == again and (events == events_again).all()
    other, _ = run(1)
    assert first != other
    assert events.sum() > 4 * 100 * 10  # tens of events per unit time per book
    assert all(d["bids"] and d["asks"] for d in first)
    assert BID == 0 and ASK == 1


def test_keep_centered_moves_the_window_only_near_its_edge_and_changes_no_order():
    book, fills = B.make_book(1, 40, 64), B.make_fill_log(1, 16)
    B.reset_book(book, 0, 1000)
    events = np.array([[[B.EV_LIMIT, BID, 1005, 2, 0], [B.EV_LIMIT, ASK, 1007, 3, 1]]], dtype=np.int64)
    B.apply_events(book, fills, events, np.zeros((1, 2), np.int64), np.zeros((1, 2), np.int64))
    before = B.dump_book(book, 0)
    B.keep_centered(book, 0, 1006)  # best bid 1005 lies below base + 40 // 4 = 1010: recentre
    assert book.base_tick[0] == 1006 - 20
    assert B.dump_book(book, 0) == before and book.n_parked[0] == 0
    B.keep_centered(book, 0, 1100)  # both quotes now well inside the window: nothing moves
    assert book.base_tick[0] == 986
