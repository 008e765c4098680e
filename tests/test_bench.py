"""The benchmark's book row measures real work: events applied by the engine and the same draws bare."""

from __future__ import annotations

from lobgym.bench import bench_book_env, bench_book_flow


def test_book_flow_row_counts_events_and_memory():
    row = bench_book_flow(n_books=4, seconds_simulated=5.0)
    # CST (2010) rates sum to roughly 20-40 events per second per book.
    assert 4 * 5 * 10 < row["events"] < 4 * 5 * 100
    assert row["events_per_s"] > 0 and row["bare_events_per_s"] > 0
    # 1000 books x (200 levels x 4 + 1024 orders x 9 + 15) int64 words.
    assert row["memory_1000_books_200_levels_1024_orders_bytes"] == 1000 * 8 * (200 * 4 + 1024 * 9 + 15)


def test_book_env_row_counts_background_events_per_step():
    from lobgym.config import load_env_config
    from tests.test_book_env import small

    row = bench_book_env(load_env_config(small()), n_envs=3, min_seconds=0.05)
    # cst2010 runs ~38 background events per second and book; here each 20-step episode also starts
    # with a 30-second warm-up that the row counts, so ~38 * (20 + 30) / 20 per step
    assert 30 * 50 / 20 < row.events_per_step < 50 * 50 / 20
    assert row.steps_per_s > 0 and row.bare_steps_per_s > row.steps_per_s
