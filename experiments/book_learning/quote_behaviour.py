"""How agents quote against the book's state: quote width and skew binned by imbalance and trade flow.

Runs each agent deterministically on the same market seeds (common random numbers) and records, at
every decision, what the agent saw - the best-quote imbalance ``(bid - ask) / (bid + ask)`` lots and
the signed background trade flow ``(B - S) / (B + S)`` (both as defined in ``lobgym.book_spaces``,
read from the engine whatever the agent's own observation is) - and what it then asked for: its
best wanted bid and ask (``state.want_px`` / ``want_lots``, ticks). Per bin it reports

- bid / ask distance: the best wanted bid's (ask's) distance from the observed background mid,
  ticks (steps quoting that side);
- bid / ask on: the share of steps with a bid (an ask) wanted;
- width: best ask - best bid wanted, ticks (steps quoting both sides);
- centre: their midpoint minus the observed background mid, ticks (> 0: quotes shaded up, the bid
  more eager and the ask less: leaning to buy);
- lots: the lots wanted on both sides together, all levels.

Over all steps it adds the fills' markout at 1, 10 and 100 steps (the mid's move in the agent's
favour after its fills, ticks per lot; negative = adverse selection), a t interval over episodes.

Each bin's value is a mean over episodes of the episode's mean in that bin, with a 95% t interval
over episodes (``lobgym.stats.mean_ci``), so steps of one episode are not treated as independent.

    python experiments/book_learning/quote_behaviour.py --env hawkes \
        --agent experiments/book_learning/models/hawkes --agent book_quoter_hawkes \
        --episodes 200 --seed 5400000 --out experiments/book_learning/figures/quote_behaviour_hawkes.png

Writes the PNG and a JSON of the binned values beside it (atomically) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lobgym.io import write_atomic, write_json_atomic
from lobgym.market.constants import ASK, BID
from lobgym.stats import mean_ci
from lobgym.tasks import build_agent, get_task, resolve_agent

EDGES = np.linspace(-1.0, 1.0, 9)  # 8 bins over [-1, 1] for both state variables
STATES = ("imbalance", "trade_flow")
QUANTITIES = ("bid_dist", "ask_dist", "bid_on", "ask_on", "width", "centre", "lots")
#: what the tables show per bin (all of QUANTITIES go into the JSON)
SHOWN = ("bid_dist", "ask_dist", "bid_on", "ask_on", "lots")
MARKOUTS = (1, 10, 100)  # steps after a fill


def record(agent, cfg, episodes: int, seed: int) -> dict[str, np.ndarray]:
    """Per step and episode: the state the agent saw and the quotes it wanted, shape (steps, episodes)."""
    from lobgym.vec_env import make_vec_env

    acts_on = getattr(agent, "acts_on", None)  # book_quoter quotes through the env's offsets twin
    cfg = acts_on if acts_on is not None else cfg
    venv = make_vec_env(cfg, n_envs=episodes, seed=seed)
    st = venv.sim.state
    obs = venv.reset()
    n_steps = cfg.market.n_steps
    out = {k: np.full((n_steps, episodes), np.nan) for k in STATES + QUANTITIES + ("mid", "bought", "sold")}
    tick = venv.sim.params.tick_size
    for t in range(n_steps):
        out["mid"][t] = st.mid / tick
        qb, qa = st.seen_qty[:, BID, 0].astype(float), st.seen_qty[:, ASK, 0].astype(float)
        tot = qb + qa
        out["imbalance"][t] = np.divide(qb - qa, tot, out=np.zeros(episodes), where=tot > 0)
        b, a = st.trade_ewma[:, BID], st.trade_ewma[:, ASK]
        out["trade_flow"][t] = np.divide(b - a, b + a, out=np.zeros(episodes), where=(b + a) > 0)
        mid2 = (st.seen_bg[:, BID] + st.seen_bg[:, ASK]).astype(float)
        actions, _ = agent.predict(obs, deterministic=True)
        obs, _r, dones, _i = venv.step(actions)
        # the wanted levels of this step's action (decoded by the codec before the market moved)
        lots = st.want_lots
        bid_ok, ask_ok = (lots[:, BID, :] > 0).any(axis=1), (lots[:, ASK, :] > 0).any(axis=1)
        bid = np.where(lots[:, BID, :] > 0, st.want_px[:, BID, :], np.iinfo(np.int64).min).max(axis=1)
        ask = np.where(lots[:, ASK, :] > 0, st.want_px[:, ASK, :], np.iinfo(np.int64).max).min(axis=1)
        both = bid_ok & ask_ok
        out["bought"][t], out["sold"][t] = venv.sim.outcome.bid_lots, venv.sim.outcome.ask_lots
        mid_px = 0.5 * mid2
        out["bid_on"][t], out["ask_on"][t] = bid_ok, ask_ok
        out["bid_dist"][t] = np.where(bid_ok, mid_px - bid, np.nan)
        out["ask_dist"][t] = np.where(ask_ok, ask - mid_px, np.nan)
        out["lots"][t] = lots.sum(axis=(1, 2))
        out["width"][t] = np.where(both, ask - bid, np.nan)
        out["centre"][t] = np.where(both, 0.5 * (bid + ask) - 0.5 * mid2, np.nan)
    if not dones.all():
        raise RuntimeError("episodes did not end together at the horizon")
    return out


def markout(rec: dict[str, np.ndarray], h: int) -> np.ndarray:
    """Per episode: mean mid move in the agent's favour ``h`` steps after its fills, ticks per lot.

    A lot bought in step t at a mid m_t gains m_{t+h} - m_t, a lot sold m_t - m_{t+h} (m_t: the
    background mid at the start of the step, as for ``spread_pnl``). Negative = adverse selection:
    the market moves against the agent's fills. Fills in the last ``h`` steps are left out; an
    episode without counted fills gives NaN.
    """
    m, b, s = rec["mid"], rec["bought"], rec["sold"]
    move = m[h:] - m[:-h]
    gain = (b[:-h] * move - s[:-h] * move).sum(axis=0)
    lots = (b[:-h] + s[:-h]).sum(axis=0)
    return np.divide(gain, lots, out=np.full(gain.shape, np.nan), where=lots > 0)


def binned(rec: dict[str, np.ndarray], state: str, quantity: str) -> list[dict]:
    """Per bin of ``state``: mean over episodes of the episode mean of ``quantity`` (95% t interval)."""
    x, y = rec[state], rec[quantity]
    rows = []
    for lo, hi in zip(EDGES[:-1], EDGES[1:], strict=True):
        inside = (x >= lo) & ((x < hi) | (hi == EDGES[-1])) & np.isfinite(y)
        counts = inside.sum(axis=0)
        per_episode = np.where(inside, y, 0.0).sum(axis=0)[counts > 0] / counts[counts > 0]
        row = {"bin": [float(lo), float(hi)], "episodes": int(per_episode.size), "steps": int(counts.sum())}
        if per_episode.size >= 2:
            ci = mean_ci(per_episode, method="t")
            row |= {"mean": ci.mean, "ci": [ci.low, ci.high]}
        else:
            row |= {"mean": None, "ci": None}
        rows.append(row)
    return rows


def figure(results: dict, env_name: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {"distance from mid (ticks)": ("bid_dist", "ask_dist"), "share of steps quoting": ("bid_on", "ask_on"),
              "lots wanted (both sides)": ("lots",)}
    fig, axes = plt.subplots(len(panels), 2, figsize=(11, 10), sharex=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for col, state in enumerate(STATES):
        for row, (label, qs) in enumerate(panels.items()):
            ax = axes[row, col]
            for a, (name, r) in enumerate(results["agents"].items()):
                for q, style in zip(qs, ("-", "--")[:len(qs)], strict=True):
                    rows = [b for b in r[state][q] if b["mean"] is not None]
                    xs = [0.5 * sum(b["bin"]) for b in rows]
                    side = "" if len(qs) == 1 else f" {q.split('_')[0]}"
                    ax.errorbar(xs, [b["mean"] for b in rows], yerr=[[b["mean"] - b["ci"][0] for b in rows],
                                [b["ci"][1] - b["mean"] for b in rows]], marker="o", ms=3, capsize=2,
                                linestyle=style, color=colours[a % len(colours)], label=f"{name}{side}")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            if row == len(panels) - 1:
                ax.set_xlabel(f"{state} seen at the decision")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"{env_name}: quotes against the book's state ({results['episodes']} episodes from seed "
                 f"{results['seed']}, 95% t intervals over episodes)")
    fig.tight_layout()
    write_atomic(out, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)


def table(results: dict) -> str:
    lines = []
    for state in STATES:
        head = " | ".join(f"{a}: bid dist / ask dist / bid on / ask on / lots" for a in results["agents"])
        lines += [f"| {state} bin | {head} |",
                  "|---|" + "---|" * len(results["agents"])]
        for k in range(len(EDGES) - 1):
            cells = []
            for r in results["agents"].values():
                vals = (r[state][q][k]["mean"] for q in SHOWN)
                cells.append(" / ".join("-" if v is None else f"{v:.2f}" for v in vals))
            lo, hi = EDGES[k], EDGES[k + 1]
            lines.append(f"| [{lo:+.2f}, {hi:+.2f}) | " + " | ".join(cells) + " |")
        lines.append("")
    marks = " | ".join(f"markout +{h} steps, ticks/lot [95% t]" for h in MARKOUTS)
    lines += [f"| agent | bid dist | ask dist | bid on | ask on | width | lots | {marks} |",
              "|---|---|---|---|---|---|---|" + "---|" * len(MARKOUTS)]
    for name, r in results["agents"].items():
        o = r["overall"]
        mk = [f"{o[f'markout_{h}']['mean']:+.3f} [{o[f'markout_{h}']['ci'][0]:+.3f}, {o[f'markout_{h}']['ci'][1]:+.3f}]"
              for h in MARKOUTS]
        lines.append(f"| {name} | {o['bid_dist']:.2f} | {o['ask_dist']:.2f} | {o['bid_on']:.2f} | {o['ask_on']:.2f} | "
                     f"{o['width']:.2f} | {o['lots']:.2f} | "
                     + " | ".join(mk) + " |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", required=True, help="a book task (lobgym tasks)")
    ap.add_argument("--agent", action="append", required=True, help="a run folder or an agent preset; repeatable")
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--seed", type=int, default=None, help="first market seed [default: the task's test block]")
    ap.add_argument("--out", type=Path, required=True, help="the PNG; the JSON goes beside it")
    args = ap.parse_args()
    if args.episodes < 2:
        ap.error(f"--episodes {args.episodes}: must be >= 2 (intervals over episodes)")
    task = get_task(args.env)
    if task.kind != "book":
        ap.error(f"--env {args.env!r}: a {task.kind} task; quote behaviour needs a book task")
    seed = task.seed if args.seed is None else args.seed
    results: dict = {"env": args.env, "episodes": args.episodes, "seed": seed, "agents": {}}
    for spec in args.agent:
        agent, cfg = build_agent(resolve_agent(spec), task)
        rec = record(agent, cfg, args.episodes, seed)
        name = "/".join(Path(spec).parts[-2:]) if Path(spec).exists() else spec
        overall = {q: float(np.nanmean(rec[q])) for q in QUANTITIES}
        for h in MARKOUTS:
            mk = markout(rec, h)
            ci = mean_ci(mk[np.isfinite(mk)], method="t")
            overall[f"markout_{h}"] = {"mean": ci.mean, "ci": [ci.low, ci.high], "episodes": int(np.isfinite(mk).sum())}
        results["agents"][name] = {s: {q: binned(rec, s, q) for q in QUANTITIES} for s in STATES} | {
            "overall": overall}
    figure(results, args.env, args.out)
    write_json_atomic(args.out.with_suffix(".json"), results)
    print(table(results))
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
