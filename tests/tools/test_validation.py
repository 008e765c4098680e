"""Stylised facts of the background flow (``lobgym validate``) against what the flow must produce.

The Cont–Stoikov–Talreja flow is zero-intelligence: limit orders of each side and market orders
of each side arrive as Poisson processes of constant rates, so their counts must match the
configured rates within Poisson error; cancellations must match the integral of their
(state-dependent) intensity; every waiting time is exponential given the book, so inter-event
times have a coefficient of variation close to 1; and market-order signs are independent.
The statistics themselves are also checked on hand-made recordings whose answer is known.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lobgym.config import ConfigError, load_env_config
from lobgym.io import write_json_atomic
from lobgym.market.book import flow as F
from lobgym.market.book import lob as B
from lobgym.tools.validation import FlowRecord, book_market, facts_from_record, plot_stylised_facts, stylised_facts

BOOKS, SECONDS = 12, 300.0
CST = {"market": {"kind": "book", "horizon": 60, "dt": 1, "warmup": 100, "flow": {"model": "cst"}}}


@pytest.fixture(scope="module")
def facts() -> dict:
    return stylised_facts(CST, books=BOOKS, seconds=SECONDS, seed=7)


def _cst_limit_rate(flow) -> float:
    """Limit orders per second on one side: the table, then k / d**alpha out to ``levels``."""
    return sum(flow.lam[d - 1] if d <= len(flow.lam) else flow.k / d**flow.alpha for d in range(1, flow.levels + 1))


def test_run_size_and_bookkeeping(facts):
    assert facts["books"] == BOOKS and facts["seconds"] == SECONDS and facts["book_seconds"] == BOOKS * SECONDS
    assert facts["warmup"] == 100 and facts["rejected"] == 0
    ev = facts["events"]
    # The tape holds exactly the events the flow's counters counted, type by type.
    assert ev["tape_counts"] == ev["counts"]
    assert ev["total"] == sum(ev["counts"].values())
    for kind, count in ev["counts"].items():
        assert ev["rates_per_s"][kind] == pytest.approx(count / (BOOKS * SECONDS))
    # One inter-event time per event but the first of each book; one sign per market order.
    assert facts["inter_event"]["n"] == ev["total"] - BOOKS
    assert facts["sign_acf"]["n_market_orders"] == ev["counts"]["market_buy"] + ev["counts"]["market_sell"]


def test_event_rates_match_the_configured_cst_rates(facts):
    flow = load_env_config(CST).market.flow
    lam, mu = _cst_limit_rate(flow), flow.mu
    assert lam == pytest.approx(9.398, abs=1e-3)  # CST (2010) table + 1.92 / d**0.52 for d = 6..10
    rates, exposure = facts["events"]["rates_per_s"], BOOKS * SECONDS
    # Poisson counts: the rate estimate has std sqrt(rate / exposure); allow 4 of them.
    for kind, rate in (("limit_bid", lam), ("limit_ask", lam), ("market_buy", mu), ("market_sell", mu)):
        assert abs(rates[kind] - rate) < 4 * math.sqrt(rate / exposure), (kind, rates[kind], rate)
    cancels = facts["events"]["counts"]["cancel_bid"] + facts["events"]["counts"]["cancel_ask"]
    compensator = facts["events"]["cancel_compensator"]
    assert abs(cancels - compensator) < 4 * math.sqrt(compensator)
    # In a stationary book, limit orders in = cancellations + executions out, so cancels < limits.
    assert cancels < facts["events"]["counts"]["limit_bid"] + facts["events"]["counts"]["limit_ask"]


def test_spread_is_at_least_one_tick_and_mostly_tight(facts):
    sp = facts["spread"]
    assert sp["min"] >= 1 and sp["ticks"][0] == sp["min"]
    assert sp["samples"] + sp["one_sided_samples"] == BOOKS * (SECONDS + 1)
    assert sum(sp["probability"]) == pytest.approx(1.0)
    assert sp["mean"] == pytest.approx(float(np.dot(sp["ticks"], sp["probability"])))
    # The CST book is liquid: one tick most of the time, a mean spread below 2 ticks.
    assert sp["probability"][0] > 0.5 and 1.0 < sp["mean"] < 2.0


def test_depth_profile_is_symmetric_and_fades_beyond_the_flow(facts):
    own, opp = facts["depth"]["from_own_best"], facts["depth"]["from_opposite_best"]
    bid, ask = np.array(own["bid"]), np.array(own["ask"])
    assert own["distance"] == list(range(10)) and opp["distance"] == list(range(1, 11))
    assert (bid > 0).all() and (ask > 0).all()
    assert bid[0] >= 1.0  # a non-empty side has at least one lot at its best
    np.testing.assert_allclose(bid, ask, rtol=0.2)  # the flow is symmetric
    # No limit order arrives beyond 10 ticks from the opposite best: depth falls off towards it.
    assert bid[-1] < bid[:5].mean() and ask[-1] < ask[:5].mean()


def test_inter_event_times_are_exponential_like(facts):
    ie, rate = facts["inter_event"], facts["events"]["total_rate_per_s"]
    assert ie["min"] > 0 and ie["median"] < ie["mean"] < ie["max"]
    assert ie["mean"] == pytest.approx(1.0 / rate, rel=0.01)
    # Exponential waits with a total rate that moves slowly with the book: CV 1, a little above.
    assert 0.97 < ie["cv_per_book_mean"] < 1.06 and 0.97 < ie["cv"] < 1.08
    # Exponential median: mean * ln 2 (again up to the slow rate variation).
    assert ie["median"] == pytest.approx(ie["mean"] * math.log(2), rel=0.05)
    edges, dens = np.array(ie["hist"]["edges"]), np.array(ie["hist"]["density"])
    assert len(edges) == len(dens) + 1 and (np.diff(edges) > 0).all()
    assert float(np.sum(dens * np.diff(edges))) == pytest.approx(1.0, abs=1e-9)  # min > 0: every gap binned


def test_market_order_signs_are_uncorrelated(facts):
    sa = facts["sign_acf"]
    n = sa["n_market_orders"]
    assert n > 5000 and sa["lags"] == list(range(1, 21))
    # Independent signs: each sample autocorrelation is about N(0, 1/n); 4 sigma at lag 1.
    assert abs(sa["acf"][0]) < 4 / math.sqrt(n)
    assert max(abs(x) for x in sa["acf"]) < 4.5 / math.sqrt(n)
    assert abs(sa["buy_fraction"] - 0.5) < 4 * 0.5 / math.sqrt(n)


def test_volatility_grows_with_the_horizon(facts):
    vol = facts["volatility"]
    assert vol["horizon_s"] == [1.0, 2.0, 5.0, 10.0, 30.0, 60.0]
    std = np.array(vol["std_ticks"])
    assert (np.diff(std) > 0).all()
    np.testing.assert_allclose(vol["std_price"], std * 0.01)
    np.testing.assert_allclose(vol["signature"], std / np.sqrt(vol["horizon_s"]))
    assert vol["variance_ratio"][0] == 1.0
    # Diffusive at long horizons: the variance ratio stays within a factor of two of a random walk.
    assert all(0.5 < v < 2.0 for v in vol["variance_ratio"])


def test_same_seed_same_facts_and_json_round_trip(facts, tmp_path):
    assert stylised_facts(CST, books=BOOKS, seconds=SECONDS, seed=7) == facts
    assert stylised_facts(CST, books=BOOKS, seconds=SECONDS, seed=8)["events"] != facts["events"]
    path = write_json_atomic(tmp_path / "facts.json", facts)
    assert json.loads(path.read_text()) == facts


def test_figure_is_a_png(facts, tmp_path):
    path = plot_stylised_facts(facts, tmp_path / "sub" / "stylised_facts.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert [p.name for p in path.parent.iterdir()] == ["stylised_facts.png"]  # no temporary file left


def test_sampling_coarser_than_the_env_step_keeps_the_flow(facts):
    """5-second samples advance the flow in 1-second calls (and a tape sized for them): the same
    random streams give the same events; only the book samples are fewer."""
    coarse = stylised_facts(CST, books=BOOKS, seconds=SECONDS, seed=7, sample_dt=5.0)
    assert coarse["events"] == facts["events"]
    assert coarse["spread"]["samples"] + coarse["spread"]["one_sided_samples"] == BOOKS * (SECONDS / 5 + 1)
    assert coarse["volatility"]["horizon_s"] == [5.0, 10.0, 30.0, 60.0]
    np.testing.assert_allclose(coarse["volatility"]["std_ticks"], facts["volatility"]["std_ticks"][2:], rtol=0.1)


def test_non_book_presets_and_bad_arguments_are_refused():
    with pytest.raises(ConfigError, match=r"market.kind = 'reduced_form'.*allowed: market.kind = 'book'"):
        stylised_facts("as2008", books=1, seconds=1.0)
    name, market = book_market(CST)
    assert name == "custom" and book_market(market) == ("custom", market)
    with pytest.raises(ValueError, match="books = 0"):
        stylised_facts(CST, books=0, seconds=1.0)
    with pytest.raises(ValueError, match="sample_dt = -1"):
        stylised_facts(CST, books=1, seconds=1.0, sample_dt=-1.0)


# ----------------------------------------------------------------- the statistics on known answers
def _record(book: np.ndarray, t: np.ndarray, event: np.ndarray, books: int, bid=None, ask=None) -> FlowRecord:
    bid = np.full((books, 3), 100) if bid is None else bid
    ask = bid + 1 if ask is None else ask
    counts = np.zeros((books, F.N_EVENT_TYPES), dtype=np.int64)
    np.add.at(counts, (book, event), 1)
    return FlowRecord(name="synthetic", tick_size=0.5, books=books, seconds=float(bid.shape[1] - 1), warmup=0.0,
                      seed=0, sample_dt=1.0, best_bid=bid, best_ask=ask, depth_own=np.ones((2, 3)),
                      depth_own_samples=np.array([2, 4]), depth_opp=np.zeros((2, 3)),
                      depth_opp_samples=np.array([1, 1]), event_counts=counts, cancel_compensator=np.zeros(books),
                      tape_book=book, tape_t=t, tape_event=event, rejected=0)


def test_sign_autocorrelation_detects_runs_and_never_pairs_books():
    # Signs in runs of 4 (+ + + + - - - - ...): autocorrelation 1 - k / 2 at lags k = 1..4.
    n = 4000
    signs = np.repeat(np.tile([1, -1], n // 8), 4)
    event = np.where(signs > 0, F.EVENT_MARKET_BUY, F.EVENT_MARKET_SELL)
    rec = _record(np.zeros(n, dtype=np.int64), np.arange(n, dtype=float), event, 1)
    acf = facts_from_record(rec, max_lag=4)["sign_acf"]["acf"]
    np.testing.assert_allclose(acf, [0.5, 0.0, -0.5, -1.0], atol=0.01)
    # Two books, each all buys then all sells: within a book the signs persist; pairs across the
    # book boundary (sell of book 0 then buy of book 1) must not be formed.
    half = np.r_[np.full(50, F.EVENT_MARKET_BUY), np.full(50, F.EVENT_MARKET_SELL)]
    rec = _record(np.repeat([0, 1], 100), np.tile(np.arange(100.0), 2), np.r_[half, half], 2)
    sa = facts_from_record(rec, max_lag=1)["sign_acf"]
    assert sa["pairs"] == [198] and sa["acf"][0] == pytest.approx(1 - 4 / 198)


def test_inter_event_statistics_on_known_spacings():
    # Book 0: events every 0.1 s (CV 0); book 1: every 0.3 s. Pooled CV > 0, per-book CV 0.
    t0, t1 = np.arange(0, 10, 0.1), np.arange(0, 9, 0.3)
    rec = _record(np.r_[np.zeros(len(t0), int), np.ones(len(t1), int)], np.r_[t0, t1],
                  np.full(len(t0) + len(t1), F.EVENT_LIMIT_BID), 2)
    ie = facts_from_record(rec)["inter_event"]
    assert ie["n"] == len(t0) + len(t1) - 2
    assert ie["cv_per_book_mean"] == pytest.approx(0.0, abs=1e-6)
    assert ie["cv"] > 0.3 and ie["min"] == pytest.approx(0.1)


def test_spread_volatility_and_depth_on_a_known_book():
    # Mid moves +1 tick per sample on book 0 and not at all on book 1; book 1 loses its ask once.
    bid = np.array([[100, 101, 102], [100, 100, 100]])
    ask = np.array([[101, 103, 103], [102, B.NO_ASK, 102]])
    rec = _record(np.zeros(2, dtype=np.int64), np.array([0.0, 1.0]), np.zeros(2, dtype=np.int64), 2, bid, ask)
    f = facts_from_record(rec, horizons=(1.0, 2.0))
    assert f["spread"]["ticks"] == [1, 2] and f["spread"]["probability"] == [0.4, 0.6]
    assert f["spread"]["one_sided_samples"] == 1 and f["spread"]["mean"] == pytest.approx(1.6)
    vol = f["volatility"]
    assert vol["horizon_s"] == [1.0]  # 2 s needs more than half the 3-sample run
    d1 = np.array([1.5, 0.5])  # book 0's mid changes (book 1 has no mid at t = 1)
    assert vol["std_ticks"] == [pytest.approx(d1.std())] and vol["n_pairs"] == [2]
    assert vol["std_price"] == [pytest.approx(d1.std() * 0.5)]
    assert facts_from_record(rec, horizons=(0.2,))["volatility"]["horizon_s"] == [1.0]  # none left: one sample
    assert f["depth"]["from_own_best"]["bid"] == [0.5] * 3 and f["depth"]["from_own_best"]["ask"] == [0.25] * 3
