"""Tune the ``book_quoter`` reference of each book task on training seeds and write the results.

    python experiments/tasks/tune_book_quoter.py                 # cst2010, hawkes, queue_reactive
    python experiments/tasks/tune_book_quoter.py --env hawkes    # one task (the others' rows are kept)

Every point of :data:`lobgym.tasks.TUNING_GRID` (offset x size x skew x max_inventory, 192 points),
and of the task's extension grid in :data:`lobgym.tasks.TUNING_EXTENSIONS` if it has one, runs the same
200 episodes on market seeds 0..199 (:func:`lobgym.tasks.tune_book_quoter`); the point with the highest
mean return becomes ``agents/book_quoter_<env>.yaml``, the preset the task scores 1 with. ``--reuse``
takes the points already in the table (same episodes and seeds) from there instead of running them again.
The full table goes to ``experiments/tasks/book_quoter_tuning.json`` (written atomically, with provenance).
The task's own held-out seed block is never used here.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from lobgym import presets
from lobgym.io import write_json_atomic, write_text_atomic
from lobgym.provenance import provenance
from lobgym.tasks import TASKS, TUNING_EPISODES, TUNING_SEED, tune_book_quoter, tuned_preset_yaml

HERE = Path(__file__).resolve().parent
OUT = HERE / "book_quoter_tuning.json"


def main() -> None:
    book = [n for n, t in TASKS.items() if t.kind == "book"]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", action="append", choices=book, help="book task to tune (repeat; default: all)")
    ap.add_argument("--episodes", type=int, default=TUNING_EPISODES, help="episodes per grid point")
    ap.add_argument("--seed", type=int, default=TUNING_SEED, help="first tuning seed")
    ap.add_argument("--out", type=Path, default=OUT, help="tuning table (JSON)")
    ap.add_argument("--no-presets", action="store_true", help="do not write agents/book_quoter_<env>.yaml")
    ap.add_argument("--reuse", action="store_true", help="take points already in the table from there")
    args = ap.parse_args()
    table = json.loads(args.out.read_text()) if args.out.is_file() else {}
    table.setdefault("tasks", {})
    table.pop("note", None)  # a hand-written note on how the previous table was made
    for name in args.env or book:
        start = time.perf_counter()

        def progress(done: int, total: int, row: dict, name: str = name) -> None:
            print(f"{name} {done:3d}/{total} {row['params']} return {row['return_mean']:.4f} "
                  f"+- {row['return_se']:.4f}", flush=True)

        old = table["tasks"].get(name, {})
        same = old.get("episodes") == args.episodes and old.get("seeds", [None])[0] == args.seed
        known = old.get("rows", []) if args.reuse and same else []
        result = tune_book_quoter(name, episodes=args.episodes, seed=args.seed, progress=progress, known=known)
        result["seconds"] = round(time.perf_counter() - start, 1) + (old.get("seconds", 0.0) if known else 0.0)
        result["reused_rows"] = sum(1 for r in result["rows"] if any(r["params"] == k["params"] for k in known))
        b = result["best"]
        print(f"{name}: best {b['params']} return {b['return_mean']:.4f} +- {b['return_se']:.4f} "
              f"({result['seconds']} s)", flush=True)
        table["tasks"][name] = result
        table["provenance"] = provenance()
        write_json_atomic(args.out, table)
        if not args.no_presets:
            path = presets.preset_dir("agents") / f"book_quoter_{name}.yaml"
            write_text_atomic(path, tuned_preset_yaml(result))
            print(f"wrote {path}", flush=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
