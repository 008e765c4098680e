"""``lobgym`` command line (also ``python -m lobgym``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lobgym import presets
from lobgym.config import ConfigError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="lobgym: market-making environments, analytic baselines and benchmarks.")
console = Console()

DEFAULT_AGENTS = ["avellaneda_stoikov", "avellaneda_stoikov_symmetric", "fixed_spread", "random"]


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code=2)


def _list(kind: str) -> None:
    table = Table(title=f"{kind} presets", show_lines=False)
    table.add_column("name", style="bold cyan")
    table.add_column("description")
    for name, path in presets.list_presets(kind).items():
        table.add_row(name, presets.describe(path))
    console.print(table)


@app.command()
def envs() -> None:
    """List the env presets."""
    _list("envs")


@app.command()
def agents() -> None:
    """List the agent presets."""
    _list("agents")


def _fmt(x: float, digits: int = 3) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


@app.command()
def evaluate(
    env: Annotated[str, typer.Option(help="env preset name or YAML path")] = "as2008",
    agent: Annotated[list[str] | None, typer.Option(help="agent preset name or YAML path; repeat to compare")] = None,
    episodes: Annotated[int, typer.Option(min=1, help="episodes per agent")] = 1000,
    seed: Annotated[int, typer.Option(min=0, help="episode j runs on market seed seed + j, for every agent")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the results as JSON here")] = None,
) -> None:
    """Evaluate agents side by side on common random numbers and print a metrics table."""
    from lobgym.agents import make_agent
    from lobgym.agents.evaluation import evaluate as run_evaluation
    from lobgym.config import load_agent_config, load_env_config
    from lobgym.io import write_json_atomic

    try:
        env_cfg = load_env_config(env)
        agent_cfgs = [load_agent_config(a) for a in (agent or DEFAULT_AGENTS)]
        made = [(cfg.name, make_agent(cfg, env_cfg)) for cfg in agent_cfgs]
    except (ConfigError, ValueError) as err:
        _fail(str(err))
    results = []
    with console.status("evaluating…"):
        for name, a in made:
            results.append(run_evaluation(a, env_cfg, episodes=episodes, seed=seed, name=name))
    table = Table(title=f"{env_cfg.name}: {episodes} episodes per agent, market seeds {seed}..{seed + episodes - 1}")
    cols = [("agent", None), ("PnL mean", "pnl_mean"), ("PnL std", "pnl_std"), ("Sharpe", "sharpe"),
            ("q_T mean", "final_inventory_mean"), ("q_T std", "final_inventory_std"),
            ("mean |q|", "mean_abs_inventory"), ("spread", "mean_spread"), ("fills", "fills_mean"),
            ("return", "return_mean")]
    for title, _ in cols:
        table.add_column(title, justify="left" if title == "agent" else "right")
    for r in results:
        table.add_row(r.agent, *[_fmt(r.summary[key]) for _, key in cols[1:]])
    console.print(table)
    console.print("Sharpe = mean(PnL) / std(PnL) over episodes; spread = mean quoted ask - bid; "
                  "fills = lots filled per episode.", style="dim")
    if json_out is not None:
        write_json_atomic(json_out, {"env": env_cfg.name, "episodes": episodes, "seed": seed,
                                     "agents": [r.to_json() for r in results]})
        console.print(f"wrote {json_out}")


@app.command()
def bench(
    env: Annotated[str, typer.Option(help="env preset name or YAML path")] = "as2008",
    n_envs: Annotated[str, typer.Option(help="comma-separated batch sizes")] = "1,100,1000,10000",
    seconds: Annotated[float, typer.Option(min=0.01, help="minimum timed seconds per measurement")] = 1.0,
    startup: Annotated[bool, typer.Option(help="also time import + first step in a fresh process")] = True,
    book: Annotated[bool, typer.Option(help="also measure the order book under CST flow")] = True,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the results as JSON here")] = None,
) -> None:
    """Measure env-steps/s (single env and batched) against a bare random-number loop."""
    from lobgym.bench import run
    from lobgym.io import write_json_atomic

    try:
        sizes = tuple(int(x) for x in n_envs.split(","))
        if any(n < 1 for n in sizes):
            raise ValueError
    except ValueError:
        _fail(f"--n-envs = {n_envs!r}: expected comma-separated integers >= 1, e.g. 1,100,1000")
    try:
        result = run(env, sizes, seconds, startup, book)
    except (ConfigError, ValueError) as err:
        _fail(str(err))
    table = Table(title=f"lobgym bench: env {result['env']}, {result['threads']} numba threads")
    for col in ("what", "N envs", "env-steps/s", "bare loop steps/s", "ratio to bare"):
        table.add_column(col, justify="left" if col == "what" else "right")
    for row in result["rows"]:
        bare, ratio = row["bare_steps_per_s"], row["ratio_to_bare"]
        table.add_row(row["what"], str(row["n_envs"]), f"{row['steps_per_s']:,.0f}",
                      f"{bare:,.0f}" if bare else "-", f"{ratio:.0%}" if ratio else "-")
    console.print(table)
    if "import_and_first_step_s" in result:
        console.print(f"import lobgym + make + reset + first step (numba cache warm): "
                      f"{result['import_and_first_step_s']:.2f} s")
    if "book_flow" in result:
        bf = result["book_flow"]
        console.print(f"order book under CST (2010) flow, {bf['n_books']} books, one core: "
                      f"{bf['events_per_s']:,.0f} events/s (bare loop of the same draws: "
                      f"{bf['bare_events_per_s']:,.0f}/s, ratio {bf['events_per_s'] / bf['bare_events_per_s']:.0%}); "
                      f"1000 books x 200 levels x 1024 orders: "
                      f"{bf['memory_1000_books_200_levels_1024_orders_bytes'] / 2**20:,.0f} MiB")
    if json_out is not None:
        write_json_atomic(json_out, result)
        console.print(f"wrote {json_out}")


def main() -> None:
    app()
