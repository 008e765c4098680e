"""Every flow model (CST, Hawkes, queue-reactive, informed) against what it must reproduce.

* the tape: replaying it on an aggregate (L2) book rebuilds the final book exactly;
* Hawkes: mean attempted rates (I - ||phi||)^-1 baseline and the count variance of Hawkes theory;
* queue-reactive: an isolated best queue is a birth-death chain with a known stationary law;
* informed flow: the mid follows the fundamental, the total market-order rate is unchanged;
* determinism (run twice, batch vs alone, fast vs agent-aware paths), agent orders never cancelled;
* the pydantic layer: defaults build non-degenerate books, every validation error names its field.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import WALL, isolated_bid_queue, queue_below_wall, sampled_queue_lengths
from pydantic import TypeAdapter, ValidationError

from lobgym import flow_config as FC
from lobgym.market.book import flow as F
from lobgym.market.book import lob as B
from lobgym.market.constants import ASK, BID
from lobgym.market.rng import make_rng, seed_rng

C = F.CST2010
MID = 10_000


def _cst():
    return F.cst_params(C["lam_table"], C["theta_table"], C["mu"], levels=10, k=C["k"], alpha=C["alpha"])


def _hawkes(order_cancel: float = 0.5):
    h = FC.HawkesFlow()
    return F.hawkes_params(h.baseline, h.alpha, h.beta, h.lam, h.theta, h.levels, k=h.k, lam_alpha=h.lam_alpha,
                           order_cancel=order_cancel)


def _qr():
    return FC.build_flow_params(FC.QueueReactiveFlow())


MODELS = {"cst": _cst, "hawkes": _hawkes, "queue_reactive": _qr}


def _books(n: int, seed: int = 0, tape: int = 0, levels: int = 200, orders: int = 1024, seeds=None):
    book, fills, flow = B.make_book(n, levels, orders), B.make_fill_log(n, 256), F.make_flow_state(n, tape)
    rng = make_rng(n)
    seed_rng(rng, np.asarray(seeds if seeds is not None else np.arange(n) + seed, dtype=np.uint64))
    for i in range(n):
        F.seed_book(book, flow, fills, i, MID, 10, 3, 1)
    return book, fills, flow, rng


def _run(params, n: int, seconds: int, seed: int = 0, tape: int = 0, seeds=None):
    book, fills, flow, rng = _books(n, seed, tape, seeds=seeds)
    for t in range(1, seconds + 1):
        F.advance(book, flow, params, rng, fills, float(t))
    return book, flow


def _mid(flow):
    return 0.5 * (flow.last_bid + flow.last_ask)


# ------------------------------------------------------------------------------------------------ tape
def _l2(dump: dict) -> tuple[dict, dict]:
    bids = {p: sum(q for _, q, _ in orders) for p, orders in dump["bids"]}
    asks = {p: sum(q for _, q, _ in orders) for p, orders in dump["asks"]}
    return bids, asks


def _take(opp: dict, lots: int, best, limit=None) -> int:
    """Execute up to ``lots`` against ``opp`` (best() picks its best price) within ``limit``."""
    done = 0
    while done < lots and opp:
        price = best(opp)
        if limit is not None and not limit(price):
            break
        take = min(lots - done, opp[price])
        opp[price] -= take
        done += take
        if opp[price] == 0:
            del opp[price]
    return done


def _replay(bids: dict, asks: dict, rows: np.ndarray, size: int) -> None:
    """Apply tape rows to an L2 book (dicts price -> lots), checking each row against it."""
    for _, event, price, qty in rows:
        event, qty = int(event), int(qty)
        if event in (F.EVENT_LIMIT_BID, F.EVENT_LIMIT_ASK):
            buy = event == F.EVENT_LIMIT_BID
            own, opp = (bids, asks) if buy else (asks, bids)
            px = int(price)
            assert qty == size
            limit = (lambda a, px=px: a <= px) if buy else (lambda b, px=px: b >= px)
            left = qty - _take(opp, qty, min if buy else max, limit)
            if left:
                own[px] = own.get(px, 0) + left
        elif event in (F.EVENT_MARKET_BUY, F.EVENT_MARKET_SELL):
            opp = asks if event == F.EVENT_MARKET_BUY else bids
            best = min if event == F.EVENT_MARKET_BUY else max
            if not opp:
                assert math.isnan(price) and qty == 0
                continue
            assert price == best(opp)  # the first execution price
            assert qty == min(size, sum(opp.values()))
            assert _take(opp, qty, best) == qty
        else:
            own = bids if event == F.EVENT_CANCEL_BID else asks
            px = int(price)
            assert 1 <= qty <= own.get(px, 0), (px, qty, own.get(px))
            own[px] -= qty
            if own[px] == 0:
                del own[px]


@pytest.mark.parametrize("model", sorted(MODELS))
def test_the_tape_replayed_on_an_aggregate_book_rebuilds_it(model):
    params = F.with_informed(MODELS[model](), rate=0.5, jump_ticks=3.0, kappa=0.5)
    n, seconds = 3, 40
    book, fills, flow, rng = _books(n, seed=11, tape=4000)
    starts = [_l2(B.dump_book(book, i)) for i in range(n)]
    for t in range(1, seconds + 1):
        F.advance(book, flow, params, rng, fills, float(t))
    assert (flow.tape_len == flow.events.sum(axis=1)).all() and (flow.tape_len < 4000).all()
    for i in range(n):
        rows = flow.tape[i, :flow.tape_len[i]]
        assert np.array_equal(np.bincount(rows[:, F.TAPE_EVENT].astype(int), minlength=6), flow.events[i])
        assert (np.diff(rows[:, F.TAPE_T]) > 0).all() and 0 < rows[0, F.TAPE_T] and rows[-1, F.TAPE_T] <= seconds
        bids, asks = starts[i]
        _replay(bids, asks, rows, params.size)
        assert (bids, asks) == _l2(B.dump_book(book, i))


def test_the_tape_stops_at_its_capacity_records_nothing_at_zero_and_is_reset_by_seed_book():
    params = _cst()
    book, fills, flow, rng = _books(2, tape=50)
    F.advance(book, flow, params, rng, fills, 10.0)
    assert (flow.tape_len == 50).all() and (flow.events.sum(axis=1) > 50).all()
    full = flow.tape.copy()
    F.advance(book, flow, params, rng, fills, 20.0)
    assert np.array_equal(flow.tape, full)  # a full tape is left alone
    F.seed_book(book, flow, fills, 0, MID, 10, 3, 1)
    assert flow.tape_len[0] == 0 and flow.tape_len[1] == 50
    book0, fills0, flow0, rng0 = _books(2, tape=0)
    F.advance(book0, flow0, params, rng0, fills0, 10.0)
    assert flow0.tape.shape == (2, 0, 4) and (flow0.tape_len == 0).all() and flow0.events.sum() > 0


# ---------------------------------------------------------------------------------------------- Hawkes
# A clustered test setting with one decay per row and a spectral radius of about 0.6.
HK_BASE = np.array([3.0, 3.0, 0.6, 0.6, 2.5, 2.5])
HK_BETA = np.array([8.0, 8.0, 15.0, 15.0, 5.0, 5.0])
HK_PHI = np.array([
    [0.30, 0.00, 0.00, 0.25, 0.00, 0.00],
    [0.00, 0.30, 0.25, 0.00, 0.00, 0.00],
    [0.00, 0.00, 0.40, 0.10, 0.00, 0.00],
    [0.00, 0.00, 0.10, 0.40, 0.00, 0.00],
    [0.20, 0.00, 0.00, 0.00, 0.30, 0.00],
    [0.00, 0.20, 0.00, 0.00, 0.00, 0.30],
])


def test_hawkes_mean_rates_and_count_variance_match_the_theory():
    params = F.hawkes_params(HK_BASE, HK_PHI * HK_BETA[:, None], HK_BETA, C["lam_table"], C["theta_table"], 10,
                             k=C["k"], lam_alpha=C["alpha"])
    assert 0.4 < F.hawkes_spectral_radius(params.hawkes_alpha, HK_BETA) < 1
    n, burn, horizon, step = 64, 5.0, 150.0, 0.5
    book, fills, flow, rng = _books(n, seed=3)
    F.advance(book, flow, params, rng, fills, burn)
    start = flow.events + flow.skipped
    for t in np.arange(burn + step, burn + horizon + step / 2, step):  # many stops: restarts must be exact
        F.advance(book, flow, params, rng, fills, float(t))
    attempts = (flow.events + flow.skipped - start).astype(float)  # (n, 6) attempted events per book
    inv = np.linalg.inv(np.eye(6) - HK_PHI)
    mean = inv @ HK_BASE
    assert np.allclose(mean, F.hawkes_mean_rates(HK_BASE, params.hawkes_alpha, HK_BETA))
    cov = inv @ np.diag(mean) @ inv.T  # asymptotic covariance of counts per unit time
    total = attempts.sum(axis=0)
    sd = np.sqrt(np.diag(cov) * n * horizon)
    assert (np.abs(total - mean * n * horizon) < 5 * sd).all(), (total / n / horizon, mean)
    assert (total / n / horizon > 1.3 * HK_BASE).all()  # the excitation matters
    # Clustering: per-book count variance is the Hawkes one (Poisson would be the mean).
    ratio = attempts.var(axis=0, ddof=1) / (np.diag(cov) * horizon)
    assert (0.55 < ratio).all() and (ratio < 1.6).all(), ratio
    assert (attempts.var(axis=0, ddof=1) / attempts.mean(axis=0)).mean() > 1.5  # theory: 2.1 to 3.0; Poisson: 1
    # The cancel compensator (attempted cancel intensity) integrates to the cancel attempts.
    assert abs(flow.cancel_intensity.sum() / n / (burn + horizon) - mean[4:].sum()) < 0.05 * mean[4:].sum()


def test_hawkes_construction_rejects_a_non_stationary_branching_matrix():
    alpha = np.eye(6) * 10.0  # ||phi|| = alpha / beta = 1 on the diagonal
    with pytest.raises(ValueError, match=r"alpha: .*spectral radius 1;.*< 1"):
        F.hawkes_params(HK_BASE, alpha, 10.0, C["lam_table"], C["theta_table"], 10)
    with pytest.raises(ValueError, match="spectral radius 1.2"):
        F.hawkes_params(HK_BASE, np.full((6, 6), 2.0), 10.0, C["lam_table"], C["theta_table"], 10)
    with pytest.raises(ValueError, match="beta"):
        F.hawkes_params(HK_BASE, HK_PHI, [1.0, 1.0, 1.0, 1.0, 1.0, 0.0], C["lam_table"], C["theta_table"], 10)
    with pytest.raises(ValueError, match="baseline"):
        F.hawkes_params(HK_BASE[:5], HK_PHI, 10.0, C["lam_table"], C["theta_table"], 10)
    F.hawkes_params(HK_BASE, np.eye(6) * 9.99, 10.0, C["lam_table"], C["theta_table"], 10)  # just below: fine


# -------------------------------------------------------------------------------------- queue-reactive
QMAX = 40
Q = np.arange(QMAX + 1)
QR_INSERT = 2.0 / (1.0 + 0.05 * Q)
QR_CANCEL = 0.25 * Q + 0.3 * np.sqrt(Q)
QR_MARKET = np.where(Q > 0, 0.4 + 0.6 / np.maximum(Q, 1), 0.0)


def test_queue_reactive_isolated_best_queue_has_the_birth_death_stationary_law():
    zeros = np.zeros((1, QMAX + 1))
    params = F.queue_reactive_params(insert=np.stack([QR_INSERT[None, :], zeros]),
                                     cancel=np.stack([QR_CANCEL[None, :], zeros]),
                                     market=np.stack([QR_MARKET, zeros[0]]))
    n_books, burn_in, samples = 200, 20, 300
    book, fills, flow, rng = isolated_bid_queue(n_books, 256, seed=7)
    counts = sampled_queue_lengths(book, flow, params, rng, fills, burn_in, samples)
    assert (book.n_rejected == 0).all() and (book.best_ask == WALL).all()
    assert (book.n_resting[:, BID] == queue_below_wall(book)).all()  # one queue only
    x_max = 200
    birth = QR_INSERT[np.minimum(np.arange(x_max), QMAX)]
    death = (QR_CANCEL + QR_MARKET)[np.minimum(np.arange(1, x_max + 1), QMAX)]
    weights = np.concatenate([[1.0], np.cumprod(birth[:-1] / death[:-1])])
    pi = weights / weights.sum()
    empirical = np.bincount(counts, minlength=x_max)[:x_max] / len(counts)
    assert 0.5 * np.abs(empirical - pi).sum() < 0.02, (empirical[:10], pi[:10])
    assert abs(counts.mean() - (pi * np.arange(x_max)).sum()) < 0.1
    # Cancellations: count minus the integral of their intensity is a martingale.
    n_cancel = flow.events[:, F.EVENT_CANCEL_BID].sum()
    assert abs(n_cancel - flow.cancel_intensity.sum()) < 4 * math.sqrt(flow.cancel_intensity.sum())
    assert flow.events[:, [F.EVENT_LIMIT_ASK, F.EVENT_MARKET_BUY, F.EVENT_CANCEL_ASK]].sum() == 0


def test_queue_reactive_builder_checks_shapes_and_ignores_the_empty_queue_columns():
    p = F.queue_reactive_params(np.ones((2, 5)), np.ones((2, 5)), np.ones(5), inside=[1.0, 2.0], far_cancel=0.5)
    assert p.qr_insert.shape == (2, 2, 5) and (p.qr_cancel[:, :, 0] == 0).all() and (p.qr_market[:, 0] == 0).all()
    assert p.qr_inside.tolist() == [1.0, 2.0] and p.qr_far_cancel.tolist() == [0.5, 0.5]
    with pytest.raises(ValueError, match="must match insert"):
        F.queue_reactive_params(np.ones((2, 5)), np.ones((3, 5)), np.ones(5))
    with pytest.raises(ValueError, match=r"market = .*>= 0"):
        F.queue_reactive_params(np.ones((2, 5)), np.ones((2, 5)), -np.ones(5))


# ------------------------------------------------------------------------------------------- informed
@pytest.mark.parametrize("model", sorted(MODELS))
def test_informed_flow_pulls_the_mid_towards_a_fundamental_jump(model):
    base = MODELS[model]()
    n = 48
    moves = {}
    for kappa in (0.0, 0.5):
        params = F.with_informed(base, rate=0.0, jump_ticks=1.0, kappa=kappa)
        book, fills, flow, rng = _books(n, seed=5)
        F.advance(book, flow, params, rng, fills, 5.0)
        start = _mid(flow)
        flow.fundamental[:] = start + 20.0  # a jump of +20 ticks
        for t in range(10, 46, 5):
            F.advance(book, flow, params, rng, fills, float(t))
        moves[kappa] = _mid(flow) - start
    assert moves[0.5].mean() > 8.0 and (moves[0.5] > 0).mean() > 0.9, moves[0.5]
    assert abs(moves[0.0].mean()) < 4.0  # without the tilt the mid just diffuses


def test_mid_changes_correlate_with_fundamental_changes_and_market_rate_is_unchanged():
    mu = C["mu"]
    params = F.with_informed(_cst(), rate=0.1, jump_ticks=6.0, kappa=0.5)
    n, horizon, every = 32, 400, 50  # the mid needs tens of seconds to catch up with a jump
    book, fills, flow, rng = _books(n, seed=9)
    f_path, m_path = [flow.fundamental.copy()], [_mid(flow)]
    for t in range(1, horizon + 1):
        F.advance(book, flow, params, rng, fills, float(t))
        if t % every == 0:
            f_path.append(flow.fundamental.copy())
            m_path.append(_mid(flow))
    d_f, d_m = np.diff(np.array(f_path), axis=0).ravel(), np.diff(np.array(m_path), axis=0).ravel()
    assert flow.jumps.sum() > 0.5 * 0.1 * n * horizon
    assert np.corrcoef(d_f, d_m)[0, 1] > 0.5
    markets = flow.events[:, F.EVENT_MARKET_BUY].sum() + flow.events[:, F.EVENT_MARKET_SELL].sum()
    expected = 2 * mu * n * horizon  # the tilt moves direction only: total rate 2 mu, Poisson
    assert abs(markets - expected) < 4 * math.sqrt(expected)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_without_tilt_market_orders_buy_half_the_time(model):
    params = F.with_informed(MODELS[model](), rate=1.0, jump_ticks=10.0, kappa=0.0)
    _, flow = _run(params, n=16, seconds=200, seed=2)
    buys, sells = flow.events[:, F.EVENT_MARKET_BUY].sum(), flow.events[:, F.EVENT_MARKET_SELL].sum()
    total = buys + sells
    assert total > 3000 and abs(buys - total / 2) < 4 * math.sqrt(total / 4)
    assert np.abs(flow.fundamental - MID).max() > 20  # F did wander; the flow ignored it


def test_with_informed_validates_its_arguments():
    for kwargs, name in (({"rate": -1.0}, "rate"), ({"jump_ticks": 0.0}, "jump_ticks"), ({"kappa": -0.1}, "kappa"),
                         ({"rate": math.nan}, "rate")):
        args = {"rate": 0.1, "jump_ticks": 1.0, "kappa": 0.5} | kwargs
        with pytest.raises(ValueError, match=name):
            F.with_informed(_cst(), **args)


# ------------------------------------------------------------------------------ determinism and agents
@pytest.mark.parametrize("model", sorted(MODELS))
def test_same_seed_same_books_in_a_batch_or_alone(model):
    params = F.with_informed(MODELS[model](), rate=0.5, jump_ticks=3.0, kappa=0.5)

    def run(n, seeds):
        book, flow = _run(params, n, 30, tape=3000, seeds=seeds)
        return ([B.dump_book(book, i) for i in range(n)], flow.events.copy(), flow.fundamental.copy(),
                [flow.tape[i, :flow.tape_len[i]].copy() for i in range(n)])

    first = run(3, [5, 6, 7])
    again = run(3, [5, 6, 7])
    alone = run(1, [6])
    assert first[0] == again[0] and np.array_equal(first[1], again[1]) and np.array_equal(first[2], again[2])
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(first[3], again[3], strict=True))
    assert alone[0][0] == first[0][1] and np.array_equal(alone[1][0], first[1][1])
    assert alone[2][0] == first[2][1] and np.array_equal(alone[3][0], first[3][1], equal_nan=True)
    assert first[0][0] != first[0][1]


def _advance_with_agent(params, n, seconds, flags, place):
    """Advance book by book with advance_one; if ``place``, rest agent orders a tick behind each best
    every 5 seconds. Returns the book, flow, lots placed and lots executed as maker, per book."""
    book, fills, flow, rng = _books(n, seed=21)
    placed, executed = np.zeros(n, np.int64), np.zeros(n, np.int64)
    for t in range(1, seconds + 1):
        for i in range(n):
            B.keep_centered(book, i, (flow.last_bid[i] + flow.last_ask[i]) // 2)
            if place and t % 5 == 1:
                for side, best, sign in ((BID, book.best_bid[i], -1), (ASK, book.best_ask[i], 1)):
                    if best not in (B.NO_BID, B.NO_ASK):
                        assert B.add_limit(book, i, side, best + sign, 2, B.OWNER_AGENT, fills) != B.NO_ORDER
                        placed[i] += 2
            F.advance_one(book, i, flow, params, rng, fills, float(t), flags, flags)
            k = fills.counts[i, 0]
            agent = fills.records[i, :k, B.F_MAKER_OWNER] == B.OWNER_AGENT
            executed[i] += fills.records[i, :k, B.F_QTY][agent].sum()
            fills.counts[i, 0] = 0
    return book, flow, placed, executed


@pytest.mark.parametrize("model", sorted(MODELS))
def test_agent_orders_are_never_cancelled_and_the_agent_aware_path_changes_nothing(model):
    params = MODELS[model]()
    n, seconds = 4, 60
    fast = _advance_with_agent(params, n, seconds, 0, place=False)
    slow = _advance_with_agent(params, n, seconds, 1, place=False)  # walks the queues instead: same result
    assert [B.dump_book(fast[0], i) for i in range(n)] == [B.dump_book(slow[0], i) for i in range(n)]
    assert np.array_equal(fast[1].events, slow[1].events)
    book, flow, placed, executed = _advance_with_agent(params, n, seconds, 1, place=True)
    resting = np.array([(book.o_qty[i] * ((book.o_owner[i] == B.OWNER_AGENT) & (book.o_status[i] != B.FREE))).sum()
                        for i in range(n)])
    assert (placed > 0).all() and (executed > 0).any()
    assert np.array_equal(resting + executed, placed)  # every agent lot still rests or was executed
    assert (book.n_cancel == flow.events[:, F.EVENT_CANCEL_BID] + flow.events[:, F.EVENT_CANCEL_ASK]).all()


# ------------------------------------------------------------------------------------- pydantic layer
FLOW = TypeAdapter(FC.FlowConfig)


def test_default_configs_build_stationary_books_of_cst_like_activity():
    h = FC.HawkesFlow()
    mean = F.hawkes_mean_rates(h.baseline, h.alpha, h.beta)
    assert np.allclose(mean[:2], 9.4, atol=0.1) and np.allclose(mean[2:4], 0.94, atol=0.02)
    cst = FC.build_flow_params(FLOW.validate_python({"model": "cst"}))
    assert np.array_equal(cst.lam, _cst().lam) and np.array_equal(cst.theta, _cst().theta)
    rates = {}
    for model in ("cst", "hawkes", "queue_reactive"):
        params = FC.build_flow_params(FLOW.validate_python({"model": model}), FC.InformedConfig())
        n, seconds = 8, 150
        book, fills, flow, rng = _books(n, seed=1)
        empty = spread = 0.0
        for t in range(1, seconds + 1):
            F.advance(book, flow, params, rng, fills, float(t))
            one_sided = (book.best_bid == B.NO_BID) | (book.best_ask == B.NO_ASK)
            empty += one_sided.mean() / seconds
            spread += np.where(one_sided, 0, book.best_ask - book.best_bid).mean() / seconds
        rates[model] = flow.events.sum() / n / seconds
        assert book.n_rejected.sum() == 0 and book.n_resting.sum(axis=1).min() > 10, model
        assert empty < 0.02 and spread < 2.5, (model, empty, spread)
    assert all(0.6 < r / rates["cst"] < 1.4 for r in rates.values()), rates


def _error(model_cls, **kwargs):
    with pytest.raises(ValidationError) as info:
        model_cls(**kwargs)
    err = info.value.errors()[0]
    return ".".join(str(x) for x in err["loc"]), err["msg"], err.get("input")


def test_hawkes_config_names_alpha_and_its_spectral_radius():
    loc, msg, value = _error(FC.HawkesFlow, alpha=[[12.0] + [0.0] * 5] + [[0.0] * 6] * 5)
    assert loc == "alpha" and "spectral radius 1.2" in msg and "< 1" in msg and value[0][0] == 12.0
    loc, msg, _ = _error(FC.HawkesFlow, alpha=[[0.0] * 6] * 5)
    assert loc == "alpha" and "6 x 6" in msg
    loc, msg, _ = _error(FC.HawkesFlow, baseline=[1.0] * 5)
    assert loc == "baseline" and "6 entries" in msg
    loc, msg, _ = _error(FC.HawkesFlow, baseline=[1.0, 1.0, 1.0, 1.0, 1.0, -1.0])
    assert loc == "baseline.5" and "greater than or equal to 0" in msg
    loc, msg, _ = _error(FC.HawkesFlow, beta=0.0)
    assert loc == "beta" and "> 0" in msg
    loc, msg, _ = _error(FC.HawkesFlow, beta=[1.0, 2.0])
    assert loc == "beta" and "6 entries" in msg
    loc, msg, _ = _error(FC.HawkesFlow, k=1.0, lam_alpha=None)
    assert "give both" in msg
    loc, msg, _ = _error(FC.HawkesFlow, order_cancel=-1.0)
    assert loc == "order_cancel"
    # per-row decay that makes the same matrix stationary is accepted
    FC.HawkesFlow(alpha=[[12.0] + [0.0] * 5] + [[0.0] * 6] * 5, beta=[20.0] + [10.0] * 5)


def test_cst_config_errors_name_the_field():
    assert _error(FC.CSTFlow, mu=-1.0)[0] == "mu"
    loc, msg, _ = _error(FC.CSTFlow, lam=[1.0] * 12, levels=10)
    assert "lam has 12 entries but levels = 10" in msg
    loc, msg, _ = _error(FC.CSTFlow, alpha=None)
    assert "k = 1.92, alpha = None" in msg
    loc, msg, _ = _error(FC.CSTFlow, theta=[0.5, 0.0])
    assert loc == "theta" and "must be > 0" in msg
    assert _error(FC.CSTFlow, size=0)[0] == "size"
    assert _error(FC.CSTFlow, levels=0)[0] == "levels"
    assert _error(FC.CSTFlow, mu=math.inf)[0] == "mu"
    assert _error(FC.CSTFlow, lam=[])[0] == "lam"
    assert _error(FC.CSTFlow, bogus=1)[0] == "bogus"
    assert FC.CSTFlow(lam=[1.0, 2.0], k=None, alpha=None, levels=3).levels == 3


def test_queue_reactive_config_errors_and_tables():
    loc, msg, _ = _error(FC.QueueReactiveFlow, cancel=[0.5, 0.5])
    assert "cancel has 2 levels but insert has 10" in msg
    loc, msg, _ = _error(FC.QueueReactiveFlow, insert=[[1.0] * 5], cancel=[0.5], q_max=3)
    assert "insert: a table has 5 entries" in msg and "q_max + 1 = 4" in msg
    assert _error(FC.QueueReactiveFlow, far_cancel=0.0)[0] == "far_cancel"
    assert _error(FC.QueueReactiveFlow, market=-1.0)[0].startswith("market")
    assert _error(FC.QueueReactiveFlow, inside=-1.0)[0] == "inside"
    cfg = FC.QueueReactiveFlow(insert=[[2.0, 1.0], 0.5], cancel=[0.3, [0.0, 1.0, 1.5]], market=[0.0, 2.0, 1.0], q_max=4)
    p = FC.build_flow_params(cfg)
    assert p.qr_insert[BID].tolist() == [[2.0, 1.0, 1.0, 1.0, 1.0], [0.5] * 5]
    assert p.qr_cancel[ASK].tolist() == [[0.0, 0.3, 0.6, 0.3 * 3, 1.2], [0.0, 1.0, 1.5, 1.5, 1.5]]
    assert p.qr_market[BID].tolist() == [0.0, 2.0, 1.0, 1.0, 1.0]


def test_informed_and_union_errors():
    assert _error(FC.InformedConfig, rate=-1.0)[0] == "rate"
    assert _error(FC.InformedConfig, jump_ticks=0.0)[0] == "jump_ticks"
    assert _error(FC.InformedConfig, kappa=-1.0)[0] == "kappa"
    with pytest.raises(ValidationError, match="model"):
        FLOW.validate_python({"model": "garch"})
    p = FC.build_flow_params(FLOW.validate_python({"model": "hawkes"}), FC.InformedConfig(rate=0.2, kappa=0.0))
    assert p.model == F.FLOW_HAWKES and p.informed and p.informed_rate == 0.2 and p.informed_kappa == 0.0
    assert not FC.build_flow_params(FLOW.validate_python({"model": "cst"})).informed
