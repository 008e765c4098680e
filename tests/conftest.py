"""Shared test helpers."""

from __future__ import annotations

import numpy as np


def vec_trace(venv, actions) -> list[dict]:
    """Everything a VecEnv step hands back, for each step of ``actions`` (T, N, A): observations,
    rewards, dones, every info dict read out in full (as SB3's info buffer reads them), the count of
    episodes that ended and the running returns."""
    out = [{"obs": venv.reset().copy()}]
    for a in actions:
        obs, rewards, dones, infos = venv.step(a)
        out.append({"obs": obs, "rewards": rewards, "dones": dones, "n_done": venv.sim.n_done,
                    "ep_return": venv._ep_return.copy(), "metrics": venv.sim.buffers.metrics.copy(),
                    "infos": [_plain(infos[i]) for i in range(len(infos))]})
    return out


def _plain(info: dict) -> dict:
    info = dict(info)
    if "episode" in info:
        info["episode"] = {k: v for k, v in info["episode"].items() if k != "t"}  # wall time differs
    return info


def assert_traces_equal(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for t, (x, y) in enumerate(zip(a, b, strict=True)):
        assert x.keys() == y.keys()
        for k in x:
            if k == "infos":
                for i, (u, v) in enumerate(zip(x[k], y[k], strict=True)):
                    assert u.keys() == v.keys(), f"step {t}, env {i}: info keys {sorted(u)} != {sorted(v)}"
                    for key in u:
                        np.testing.assert_equal(u[key], v[key], err_msg=f"step {t}, env {i}: info[{key!r}]")
            else:
                np.testing.assert_array_equal(x[k], y[k], err_msg=f"step {t}: {k}")


def episode_ends(trace: list[dict]) -> tuple[int, int]:
    """(dones, dones whose info carries a terminal observation and an episode record) over a trace."""
    dones = sum(int(s["dones"].sum()) for s in trace[1:])
    full = sum(1 for s in trace[1:] for i in np.flatnonzero(s["dones"])
               if {"terminal_observation", "episode", "episode_metrics"} <= s["infos"][i].keys())
    return dones, full
