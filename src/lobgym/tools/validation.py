"""``lobgym validate``: does the simulated market look like a market?

The background order flow of a book-market preset is simulated alone (no agent) on a batch of
independent books, seeded ``seed, seed + 1, ...``. After ``market.warmup`` seconds of flow from the
preset's initial book, ``seconds`` more are recorded: the book is sampled every ``sample_dt``
seconds (best quotes and the top levels of each side) and every flow event is read from the
flow's event tape (time, type, price, size). From these recordings, with numpy over the whole
arrays, :func:`stylised_facts` measures

1. the **spread** distribution in ticks (probabilities of 1, 2, 3, ... ticks) and its mean;
2. the **mean depth profile**: mean lots at each tick from the own best quote (0 = at the best)
   and at distance 1..k from the *opposite* best (the convention of Cont, Stoikov & Talreja 2010);
3. **inter-event times** of all flow events: mean, coefficient of variation, log-binned density
   (Poisson flow: exponential waits, CV close to 1; self-exciting flow: CV > 1);
4. the **autocorrelation of market-order signs** (+1 buy, -1 sell) at lags 1..L (zero-intelligence
   flow: about 0; Hawkes or informed flow: positive, the long memory of real order flow);
5. **mid-price volatility by horizon**: the std of mid changes over h seconds, the signature plot
   std(h) / sqrt(h) and the variance ratio var(h) / (h / h_1 var(h_1)) against the shortest horizon
   (flat for a random walk; falling with h under bid-ask bounce / mean reversion);

plus the event counts by type (from the flow's counters, cross-checked against the tape) and
their rates per second of one book. :func:`plot_stylised_facts` draws them in one figure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from lobgym.config import BookMarket, ConfigError, load_env_config
from lobgym.io import write_atomic

#: Horizons (seconds) of the volatility / signature plot; those longer than half the run are skipped.
DEFAULT_HORIZONS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
DEFAULT_BOOKS = 16
DEFAULT_SECONDS = 600.0


def event_names() -> dict[int, str]:
    """Name of each flow event code (``flow.EVENT_*``), in code order."""
    from lobgym.market.book import flow as F

    names = {F.EVENT_LIMIT_BID: "limit_bid", F.EVENT_LIMIT_ASK: "limit_ask", F.EVENT_MARKET_BUY: "market_buy",
             F.EVENT_MARKET_SELL: "market_sell", F.EVENT_CANCEL_BID: "cancel_bid", F.EVENT_CANCEL_ASK: "cancel_ask"}
    return dict(sorted(names.items()))


def book_market(spec: Any) -> tuple[str, BookMarket]:
    """``(name, market)`` of a book-market env.

    ``spec`` is a preset name, a YAML path, a dict, a :class:`~lobgym.config.BookEnvConfig` or a
    :class:`~lobgym.config.BookMarket`.

    Raises:
        ConfigError: when the config is invalid, or its market is not an order book.
    """
    if isinstance(spec, BookMarket):
        return "custom", spec
    cfg = load_env_config(spec)
    if (kind := cfg.market.kind) != "book":
        raise ConfigError(
            f"{cfg.name}: market.kind = {kind!r}: validate simulates the background order flow of an order "
            f"book; allowed: market.kind = 'book' (book presets: {', '.join(_book_presets()) or 'none'})")
    return cfg.name, cfg.market


def _book_presets() -> list[str]:
    from lobgym import presets

    names = []
    for name, path in presets.list_presets("envs").items():
        try:
            market = presets.read_yaml(path).get("market")
        except (OSError, ValueError, yaml.YAMLError):
            continue
        if isinstance(market, dict) and market.get("kind") == "book":
            names.append(name)
    return names


# ------------------------------------------------------------------------------------ recording
@dataclass
class FlowRecord:
    """What :func:`record_flow` measured, before any statistic.

    Times are seconds since the end of the warm-up; prices are ticks. Tape rows are grouped by book
    and in time order within a book.
    """

    name: str
    tick_size: float
    books: int
    seconds: float  #: recorded seconds per book (a whole number of sample_dt)
    warmup: float
    seed: int
    sample_dt: float
    best_bid: np.ndarray  #: (books, S + 1) int64 at t = 0, sample_dt, ..., seconds (NO_BID if empty)
    best_ask: np.ndarray  #: (books, S + 1) int64 (NO_ASK if empty)
    depth_own: np.ndarray  #: (2, K) summed lots at 0..K-1 ticks from the side's own best
    depth_own_samples: np.ndarray  #: (2,) samples in which that side was not empty
    depth_opp: np.ndarray  #: (2, K) summed lots at 1..K ticks from the opposite best
    depth_opp_samples: np.ndarray  #: (2,) samples in which the opposite side was not empty
    event_counts: np.ndarray  #: (books, N_EVENT_TYPES) events applied while recording (flow counters)
    cancel_compensator: np.ndarray  #: (books,) integral of the total cancellation intensity while recording
    tape_book: np.ndarray  #: (E,) book of each recorded event
    tape_t: np.ndarray  #: (E,) time of each event
    tape_event: np.ndarray  #: (E,) event code (flow.EVENT_*)
    rejected: int  #: background limit orders rejected by full books (0 unless max_orders is too small)


def record_flow(market: BookMarket, *, books: int = DEFAULT_BOOKS, seconds: float = DEFAULT_SECONDS, seed: int = 0,
                sample_dt: float = 1.0, depth_levels: int = 10, name: str = "custom",
                progress: Callable[[float], None] | None = None) -> FlowRecord:
    """Simulate ``market``'s background flow alone on ``books`` books and record it (see the module doc).

    ``progress`` is called with the seconds recorded so far after each sample.
    """
    from lobgym.compile_notice import announce_compiles
    from lobgym.flow_config import build_flow_params
    from lobgym.market.book import flow as F
    from lobgym.market.book import lob as B
    from lobgym.market.constants import ASK, BID
    from lobgym.market.rng import make_rng, seed_rng

    announce_compiles()
    _check_positive(books=books, seconds=seconds, sample_dt=sample_dt, depth_levels=depth_levels)
    if seed < 0:
        raise ValueError(f"seed = {seed}: must be >= 0")
    n_steps = max(1, int(round(seconds / sample_dt)))
    params = build_flow_params(market.flow, market.informed)
    book = B.make_book(books, market.levels, market.max_orders)
    fills = B.make_fill_log(books, 256)
    capacity = 4096
    flow = F.make_flow_state(books, tape_capacity=capacity)
    rng = make_rng(books)
    seed_rng(rng, seed + np.arange(books, dtype=np.uint64))
    ib = market.initial_book
    for i in range(books):
        F.seed_book(book, flow, fills, i, market.s0_tick, ib.depth, ib.orders_per_level, params.size)

    # The flow is advanced at most one env step (market.dt) and one second per call: windows are
    # recentred between calls (as in the env), and the tape is emptied after each call. The warm-up
    # measures the busiest call so that the tape holds any later call with a wide margin (and it
    # grows if a call fills half of it).
    call_dt = min(market.dt, 1.0)
    peak_rate = 0.0
    t = 0.0
    n_warm = int(math.ceil(market.warmup / call_dt - 1e-9)) if market.warmup > 0 else 0
    for k in range(1, n_warm + 1):
        t_next = min(k * call_dt, market.warmup)
        before = flow.events.sum(axis=1)
        F.advance(book, flow, params, rng, fills, t_next)
        peak_rate = max(peak_rate, float((flow.events.sum(axis=1) - before).max()) / (t_next - t))
        t = t_next
        flow.tape_len[:] = 0
    sub = max(1, int(math.ceil(sample_dt / call_dt - 1e-9)))  # calls per sample
    if n_warm:
        capacity = max(1024, int(10 * peak_rate * sample_dt / sub) + 256)
        flow = flow._replace(tape=np.zeros((books, capacity, flow.tape.shape[2]), dtype=flow.tape.dtype))
    t0 = t

    k_lv = depth_levels
    bid_px, bid_qty, ask_px, ask_qty = (np.zeros((books, k_lv), dtype=np.int64) for _ in range(4))
    best_bid = np.empty((books, n_steps + 1), dtype=np.int64)
    best_ask = np.empty((books, n_steps + 1), dtype=np.int64)
    depth_own = np.zeros((2, k_lv))
    depth_opp = np.zeros((2, k_lv))
    own_samples = np.zeros(2, dtype=np.int64)
    opp_samples = np.zeros(2, dtype=np.int64)
    chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    start_counts = flow.events.copy()
    start_cancel = flow.cancel_intensity.copy()
    for s in range(n_steps + 1):
        if progress is not None:
            progress(s * sample_dt)
        for j in range(1, sub + 1) if s > 0 else ():
            before = flow.events.copy()
            t_rel = ((s - 1) * sub + j) * (sample_dt / sub)
            F.advance(book, flow, params, rng, fills, t0 + t_rel)
            chunks.append(_harvest(flow, flow.events - before, t_rel))
            if flow.tape_len.max() * 2 > capacity:  # (already harvested) grow for the next calls
                capacity *= 2
                flow = flow._replace(tape=np.zeros((books, capacity, flow.tape.shape[2]), dtype=flow.tape.dtype))
            flow.tape_len[:] = 0
        bb = book.best_bid.copy()
        ba = book.best_ask.copy()
        best_bid[:, s] = bb
        best_ask[:, s] = ba
        B.snapshot(book, k_lv, bid_px, bid_qty, ask_px, ask_qty)
        has = np.stack([bb != B.NO_BID, ba != B.NO_ASK])  # (2, books)
        best = np.stack([np.where(has[BID], bb, 0), np.where(has[ASK], ba, 0)])  # no sentinel arithmetic
        for side, px, qty, sign in ((BID, bid_px, bid_qty, 1), (ASK, ask_px, ask_qty, -1)):
            other = ASK if side == BID else BID
            live = (qty > 0) & has[side][:, None]
            d_own = sign * (best[side][:, None] - px)  # 0 at the own best, growing away from the spread
            m = live & (d_own < k_lv)
            depth_own[side] += np.bincount(d_own[m], weights=qty[m], minlength=k_lv)[:k_lv]
            own_samples[side] += int(has[side].sum())
            d_opp = sign * (best[other][:, None] - px)  # 1 at one tick from the opposite best
            m = live & has[other][:, None] & (d_opp >= 1) & (d_opp <= k_lv)
            depth_opp[side] += np.bincount(d_opp[m] - 1, weights=qty[m], minlength=k_lv)[:k_lv]
            opp_samples[side] += int(has[other].sum())

    tape_book = np.concatenate([c[0] for c in chunks])
    order = np.argsort(tape_book, kind="stable")  # chunks are chronological: stable keeps time order
    tape_t = np.concatenate([c[1] for c in chunks])[order] - t0
    tape_event = np.concatenate([c[2] for c in chunks])[order]
    return FlowRecord(
        name=name, tick_size=float(market.tick_size), books=books, seconds=n_steps * sample_dt,
        warmup=float(market.warmup), seed=int(seed), sample_dt=float(sample_dt), best_bid=best_bid,
        best_ask=best_ask, depth_own=depth_own, depth_own_samples=own_samples, depth_opp=depth_opp,
        depth_opp_samples=opp_samples, event_counts=flow.events - start_counts,
        cancel_compensator=flow.cancel_intensity - start_cancel, tape_book=tape_book[order], tape_t=tape_t,
        tape_event=tape_event, rejected=int(book.n_rejected.sum()))


def _harvest(flow, applied: np.ndarray, t_rel: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Book (int32), time and event code (int8) of the tape rows of one call.

    Raises if a full tape dropped events.
    """
    lens = flow.tape_len
    lost = (lens >= flow.tape.shape[1]) & (applied.sum(axis=1) > lens)
    if lost.any():
        i = int(np.argmax(lost))
        raise RuntimeError(f"book {i}: the flow's event tape (capacity {flow.tape.shape[1]}) recorded {lens[i]} of "
                           f"{applied[i].sum()} events in the {t_rel:g} s chunk; use a smaller sample_dt")
    from lobgym.market.book import flow as F

    mask = np.arange(flow.tape.shape[1])[None, :] < lens[:, None]
    rows = flow.tape[mask]
    return (np.nonzero(mask)[0].astype(np.int32), rows[:, F.TAPE_T].copy(),
            rows[:, F.TAPE_EVENT].astype(np.int8))


def _check_positive(**values: float) -> None:
    for field, value in values.items():
        if not value > 0 or not math.isfinite(value):
            raise ValueError(f"{field} = {value!r}: must be a finite number > 0")


# ------------------------------------------------------------------------------------ statistics
def stylised_facts(cfg_or_market: Any, *, books: int = DEFAULT_BOOKS, seconds: float = DEFAULT_SECONDS,
                   seed: int = 0, sample_dt: float = 1.0, depth_levels: int = 10, max_lag: int = 20,
                   horizons: tuple[float, ...] = DEFAULT_HORIZONS,
                   progress: Callable[[float], None] | None = None) -> dict:
    """Simulate the background flow of a book market alone and measure its stylised facts.

    Args:
        cfg_or_market: env preset name, YAML path, dict, ``BookEnvConfig`` or ``BookMarket``.
        books: independent books (book ``i`` seeded ``seed + i``).
        seconds: recorded seconds per book, after ``market.warmup`` seconds of warm-up.
        seed: seed of the first book.
        sample_dt: seconds between book samples (spread, depth, mid).
        depth_levels: ticks of the depth profile.
        max_lag: largest lag of the market-order sign autocorrelation.
        horizons: seconds of the volatility / signature plot (rounded to multiples of sample_dt).
        progress: called with the seconds recorded so far (per book) after each sample.

    Returns:
        A JSON-ready dict (lists, floats, ints; ``None`` for an undefined statistic); see
        :func:`facts_from_record` for its keys.

    Raises:
        ConfigError: the config is invalid or not a book market. ValueError: a bad argument.
    """
    name, market = book_market(cfg_or_market)
    record = record_flow(market, books=books, seconds=seconds, seed=seed, sample_dt=sample_dt,
                         depth_levels=depth_levels, name=name, progress=progress)
    facts = facts_from_record(record, max_lag=max_lag, horizons=horizons)
    facts["flow"] = market.flow.model_dump(mode="json")
    facts["informed"] = None if market.informed is None else market.informed.model_dump(mode="json")
    return facts


def facts_from_record(rec: FlowRecord, *, max_lag: int = 20, horizons: tuple[float, ...] = DEFAULT_HORIZONS) -> dict:
    """The stylised facts of a :class:`FlowRecord` (all statistics vectorised over its arrays).

    Keys: ``env, books, seconds, book_seconds, warmup, seed, sample_dt, tick_size, rejected`` and
    ``events`` (counts and rates per book-second by type, from the flow's counters and the tape),
    ``spread``, ``depth``, ``inter_event``, ``sign_acf``, ``volatility``.
    """
    book_seconds = rec.books * rec.seconds
    return {
        "env": rec.name, "books": rec.books, "seconds": rec.seconds, "book_seconds": book_seconds,
        "warmup": rec.warmup, "seed": rec.seed, "sample_dt": rec.sample_dt, "tick_size": rec.tick_size,
        "rejected": rec.rejected,
        "events": _events(rec, book_seconds),
        "spread": _spread(rec),
        "depth": _depth(rec),
        "inter_event": _inter_event(rec),
        "sign_acf": _sign_acf(rec, max_lag),
        "volatility": _volatility(rec, horizons),
    }


def _float(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _events(rec: FlowRecord, book_seconds: float) -> dict:
    names = event_names()
    counts = rec.event_counts.sum(axis=0)
    tape = np.bincount(rec.tape_event, minlength=len(names))
    total = int(counts.sum())
    return {
        "counts": {n: int(counts[c]) for c, n in names.items()},
        "rates_per_s": {n: float(counts[c] / book_seconds) for c, n in names.items()},
        "tape_counts": {n: int(tape[c]) for c, n in names.items()},
        "total": total,
        "total_rate_per_s": float(total / book_seconds),
        "per_book_total_std": float(rec.event_counts.sum(axis=1).std()),
        # Cancellations minus this integral of their intensity is a martingale: they agree within
        # a few sqrt(integral) whatever the state dependence of the cancellation rate.
        "cancel_compensator": float(rec.cancel_compensator.sum()),
    }


def _spread(rec: FlowRecord) -> dict:
    from lobgym.market.book import lob as B

    two_sided = (rec.best_bid != B.NO_BID) & (rec.best_ask != B.NO_ASK)
    spread = (rec.best_ask - rec.best_bid)[two_sided]
    if spread.size == 0:
        return {"ticks": [], "probability": [], "mean": None, "min": None, "max": None, "samples": 0,
                "one_sided_samples": int((~two_sided).sum())}
    counts = np.bincount(spread - spread.min())
    ticks = np.arange(spread.min(), spread.max() + 1)
    return {
        "ticks": ticks.tolist(), "probability": (counts / spread.size).tolist(), "mean": float(spread.mean()),
        "min": int(spread.min()), "max": int(spread.max()), "samples": int(spread.size),
        "one_sided_samples": int((~two_sided).sum()),
    }


def _depth(rec: FlowRecord) -> dict:
    from lobgym.market.constants import ASK, BID

    own = rec.depth_own / np.maximum(rec.depth_own_samples, 1)[:, None]
    opp = rec.depth_opp / np.maximum(rec.depth_opp_samples, 1)[:, None]
    k = own.shape[1]
    return {
        "from_own_best": {"distance": list(range(k)), "bid": own[BID].tolist(), "ask": own[ASK].tolist()},
        "from_opposite_best": {"distance": list(range(1, k + 1)), "bid": opp[BID].tolist(), "ask": opp[ASK].tolist()},
    }


def _same_book_diffs(book: np.ndarray, x: np.ndarray, lag: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(x[j], x[j + lag])`` of the same book (rows grouped by book, in time order)."""
    same = book[lag:] == book[:-lag]
    return x[:-lag][same], x[lag:][same]


def _inter_event(rec: FlowRecord, bins: int = 40) -> dict:
    a, b = _same_book_diffs(rec.tape_book, rec.tape_t)
    gaps = b - a
    if gaps.size < 2:
        return {"n": int(gaps.size), "mean": None, "std": None, "cv": None, "cv_per_book_mean": None,
                "min": None, "median": None, "max": None, "hist": {"edges": [], "density": []}}
    mean, std = gaps.mean(), gaps.std()
    # CV of each book separately (its own mean rate), then averaged: free of between-book rate spread.
    book_of_gap = rec.tape_book[1:][rec.tape_book[1:] == rec.tape_book[:-1]]
    n_b = np.bincount(book_of_gap, minlength=rec.books)
    s1 = np.bincount(book_of_gap, weights=gaps, minlength=rec.books)
    s2 = np.bincount(book_of_gap, weights=gaps**2, minlength=rec.books)
    ok = n_b > 1
    m_b = s1[ok] / n_b[ok]
    cv_b = np.sqrt(np.maximum(s2[ok] / n_b[ok] - m_b**2, 0.0)) / m_b
    positive = gaps[gaps > 0]
    lo, hi = positive.min(), positive.max()
    edges = np.logspace(math.log10(lo), math.log10(hi), bins + 1) if hi > lo else np.array([lo, lo * 2])
    edges[0], edges[-1] = lo, max(hi, edges[-1])  # exactly: rounding in logspace must not drop the extremes
    hist, _ = np.histogram(positive, bins=edges)
    return {
        "n": int(gaps.size), "mean": float(mean), "std": float(std), "cv": float(std / mean),
        "cv_per_book_mean": _float(cv_b.mean()) if cv_b.size else None,
        "min": float(gaps.min()), "median": float(np.median(gaps)), "max": float(gaps.max()),
        "hist": {"edges": edges.tolist(), "density": (hist / (gaps.size * np.diff(edges))).tolist()},
    }


def _sign_acf(rec: FlowRecord, max_lag: int) -> dict:
    from lobgym.market.book import flow as F

    is_mo = (rec.tape_event == F.EVENT_MARKET_BUY) | (rec.tape_event == F.EVENT_MARKET_SELL)
    book = rec.tape_book[is_mo]
    sign = np.where(rec.tape_event[is_mo] == F.EVENT_MARKET_BUY, 1.0, -1.0)
    n = int(sign.size)
    lags = list(range(1, max_lag + 1))
    acf: list[float | None] = []
    pairs: list[int] = []
    mean = sign.mean() if n else 0.0
    var = sign.var() if n else 0.0
    for lag in lags:  # a handful of lags, each vectorised over every market order
        a, b = _same_book_diffs(book, sign - mean, lag) if n > lag else (np.empty(0), np.empty(0))
        pairs.append(int(a.size))
        acf.append(_float((a * b).mean() / var) if a.size and var > 0 else None)
    return {"lags": lags, "acf": acf, "pairs": pairs, "n_market_orders": n,
            "buy_fraction": _float((sign > 0).mean()) if n else None,
            "band95": _float(1.96 / math.sqrt(n)) if n else None}


def _volatility(rec: FlowRecord, horizons: tuple[float, ...]) -> dict:
    from lobgym.market.book import lob as B

    two_sided = (rec.best_bid != B.NO_BID) & (rec.best_ask != B.NO_ASK)
    mid = np.where(two_sided, (rec.best_bid.astype(np.float64) + rec.best_ask) / 2.0, np.nan)
    n_samples = mid.shape[1]
    steps = sorted({int(round(h / rec.sample_dt)) for h in horizons} - {0})
    steps = [k for k in steps if k <= (n_samples - 1) // 2] or ([1] if n_samples >= 3 else [])  # else: one sample
    out: dict[str, list] = {"horizon_s": [], "std_ticks": [], "std_price": [], "signature": [],
                            "variance_ratio": [], "n_pairs": []}
    base = None
    for k in steps:  # a handful of horizons, each vectorised over every book and sample
        d = mid[:, k:] - mid[:, :-k]
        d = d[np.isfinite(d)]
        if d.size < 2:
            continue
        h = k * rec.sample_dt
        std = float(d.std())
        if base is None:
            base = (h, std**2)
        out["horizon_s"].append(h)
        out["std_ticks"].append(std)
        out["std_price"].append(std * rec.tick_size)
        out["signature"].append(std / math.sqrt(h))
        out["variance_ratio"].append(_float(std**2 / (base[1] * h / base[0])) if base[1] > 0 else None)
        out["n_pairs"].append(int(d.size))
    return out


# ------------------------------------------------------------------------------------ figure
def plot_stylised_facts(facts: dict, path: str | Path) -> Path:
    """Draw the five stylised facts of ``facts`` (from :func:`stylised_facts`) in one PNG at ``path``.

    The file is written atomically (temporary file, then rename).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 8.5), layout="constrained")
    ax = fig.subplots(2, 3)
    ev = facts["events"]
    fig.suptitle(f"{facts['env']}: background flow alone, {facts['books']} books x {facts['seconds']:g} s "
                 f"after {facts['warmup']:g} s warm-up, {ev['total_rate_per_s']:.1f} events/s per book")

    sp = facts["spread"]
    a = ax[0, 0]
    a.bar(sp["ticks"], sp["probability"], color="tab:blue")
    a.set(title=f"spread (mean {_num(sp['mean'])} ticks)", xlabel="spread (ticks)", ylabel="probability")

    a = ax[0, 1]
    own = facts["depth"]["from_own_best"]
    opp = facts["depth"]["from_opposite_best"]
    a.plot(own["distance"], own["bid"], "o-", color="tab:green", label="bid, from own best")
    a.plot(own["distance"], own["ask"], "o-", color="tab:red", label="ask, from own best")
    a.plot(opp["distance"], opp["bid"], "s--", color="tab:green", alpha=0.5, label="bid, from opposite best")
    a.plot(opp["distance"], opp["ask"], "s--", color="tab:red", alpha=0.5, label="ask, from opposite best")
    a.set(title="mean depth profile", xlabel="distance (ticks)", ylabel="mean lots")
    a.legend(fontsize=8)

    ie = facts["inter_event"]
    a = ax[0, 2]
    if ie["hist"]["edges"]:
        edges = np.asarray(ie["hist"]["edges"])
        centers = np.sqrt(edges[:-1] * edges[1:])
        dens = np.asarray(ie["hist"]["density"])
        keep = dens > 0
        a.loglog(centers[keep], dens[keep], "o", ms=4, label="simulated")
        a.loglog(centers, np.exp(-centers / ie["mean"]) / ie["mean"], "k--", lw=1, label="exponential, same mean")
        a.legend(fontsize=8)
    a.set(title=f"inter-event times (mean {_num(ie['mean'], 4)} s, CV {_num(ie['cv'])})", xlabel="seconds",
          ylabel="density")

    sa = facts["sign_acf"]
    a = ax[1, 0]
    acf = [np.nan if x is None else x for x in sa["acf"]]
    a.bar(sa["lags"], acf, color="tab:purple")
    if sa["band95"] is not None:
        a.axhspan(-sa["band95"], sa["band95"], color="grey", alpha=0.25, label="95% band of 0")
        a.legend(fontsize=8)
    a.axhline(0.0, color="k", lw=0.8)
    a.set(title=f"market-order sign autocorrelation ({sa['n_market_orders']} orders)", xlabel="lag (orders)",
          ylabel="autocorrelation")

    vol = facts["volatility"]
    a = ax[1, 1]
    if vol["horizon_s"]:
        h = np.asarray(vol["horizon_s"])
        a.loglog(h, vol["std_ticks"], "o-", label="std of mid change")
        a.loglog(h, vol["std_ticks"][0] * np.sqrt(h / h[0]), "k--", lw=1, label="sqrt(h) from the first")
        a.legend(fontsize=8)
    a.set(title="mid-price volatility by horizon", xlabel="horizon h (s)", ylabel="std (ticks)")

    a = ax[1, 2]
    if vol["horizon_s"]:
        a.semilogx(vol["horizon_s"], vol["signature"], "o-", label="std(h) / sqrt(h)")
        a.set_ylim(bottom=0)
        b = a.twinx()
        b.semilogx(vol["horizon_s"], vol["variance_ratio"], "s--", color="tab:orange", label="variance ratio")
        b.set_ylabel("variance ratio var(h) / (h / h1 var(h1))", color="tab:orange")
        b.set_ylim(bottom=0)
        lines = a.get_lines() + b.get_lines()
        a.legend(lines, [x.get_label() for x in lines], fontsize=8, loc="lower left")
    a.set(title="signature plot", xlabel="horizon h (s)", ylabel="ticks / sqrt(s)")

    return write_atomic(path, lambda fh: fig.savefig(fh, format="png", dpi=110))


def _num(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"
