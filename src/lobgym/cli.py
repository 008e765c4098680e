"""``lobgym`` command line (also ``python -m lobgym``)."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lobgym import presets
from lobgym.config import ConfigError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="lobgym: market-making environments, analytic baselines and benchmarks.")
console = Console()


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code=2)


def _print_version(value: bool) -> None:
    if value:
        from lobgym.provenance import version_line

        typer.echo(version_line())
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="print lobgym's version (and git revision in a checkout) and exit")]
    = False,
) -> None:
    # Runs before every command: a cold numba cache announces its compile instead of a silent minute,
    # and torch (imported later, if at all) computes the same on every x86-64 machine.
    from lobgym import portable_math
    from lobgym.compile_notice import announce_compiles

    portable_math.pin()
    announce_compiles()


def _list(kind: str) -> None:
    table = Table(title=f"{kind} presets", show_lines=False)
    table.add_column("name", style="bold cyan")
    table.add_column("description")
    for name, path in presets.list_presets(kind).items():
        try:
            table.add_row(name, presets.describe(path))
        except ConfigError as err:  # one broken file in the folder: say so, list the others
            table.add_row(name, f"[red]unreadable: {escape(str(err))}[/]")
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


def _is_run(spec: str) -> bool:
    return (Path(spec) / "config.yaml").is_file()


@app.command()
def evaluate(
    env: Annotated[str | None, typer.Option(help="env preset name or YAML path",
                                            show_default="a trained run's env, else as2008")] = None,
    agent: Annotated[list[str] | None, typer.Option(help="agent preset name, YAML path, trained run folder "
                                                         "(runs/<name>: its best model) or an inline YAML mapping "
                                                         "('{name: g1, kind: avellaneda_stoikov, params: {gamma: 1}}'"
                                                         "); repeat to compare")] = None,
    episodes: Annotated[int, typer.Option(min=1, help="episodes per agent")] = 1000,
    seed: Annotated[int, typer.Option(min=0, help="episode j runs on market seed seed + j, for every agent")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the results as JSON here")] = None,
    reference: Annotated[str | None, typer.Option(help="agent name the others are compared with, episode by "
                                                       "episode", show_default="the first agent")] = None,
) -> None:
    """Evaluate agents side by side on common random numbers.

    Prints a metrics table and each agent's paired difference against the reference (mean, SE and 95%
    interval over the common episodes).
    """
    from lobgym.agents import make_agent
    from lobgym.config import load_agent_config, load_env_config
    from lobgym.evaluation import evaluate as run_evaluation
    from lobgym.evaluation import paired_differences
    from lobgym.io import write_json_atomic

    try:
        runs = [a for a in agent or [] if _is_run(a)]
        if env is None and runs:
            from lobgym.agents.training import RunConfig

            env_cfg = RunConfig.read(Path(runs[0])).env
        else:
            env_cfg = load_env_config(env if env is not None else "as2008")  # --env "" is an error
        from lobgym import market_kinds

        defaults = market_kinds.of(env_cfg).default_baselines
        made, skipped = [], []
        for spec in agent or defaults:
            if _is_run(spec):
                from lobgym.agents.training import trained_agent

                made.append((Path(spec).name, trained_agent(spec, env_cfg=env_cfg)))
            else:
                inline = spec.lstrip().startswith("{")
                cfg = load_agent_config(presets.load_yaml(spec, source="--agent") if inline else spec)
                try:
                    made.append((cfg.name, make_agent(cfg, env_cfg)))
                except ConfigError as err:
                    if agent:
                        raise  # asked for by name: its error is the user's to see
                    skipped.append(f"{cfg.name} ({err})")  # a default this env cannot take (CJ without phi)
    except (ConfigError, ValueError) as err:
        _fail(str(err))
    for why in skipped:
        console.print(f"[dim]skipped the default baseline {why}[/]", highlight=False)
    names = [name for name, _ in made]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        _fail(f"--agent: {', '.join(map(repr, twice))} given twice; every agent needs its own name "
              "(inline agents: set name: ...)")
    reference = names[0] if reference is None else reference
    if reference not in names:
        _fail(f"--reference {reference!r}: not one of the evaluated agents ({', '.join(names)})")
    results = []
    with console.status("evaluating…"):
        for name, a in made:
            results.append(run_evaluation(a, env_cfg, episodes=episodes, seed=seed, name=name))
    paired = {p.agent: p for p in paired_differences(results, reference)}
    table = Table(title=f"{env_cfg.name}: {episodes} episodes per agent, market seeds {seed}..{seed + episodes - 1}")
    cols = [("agent", None), ("PnL mean", "pnl_mean"), ("PnL std", "pnl_std"), ("Sharpe", "sharpe"),
            ("q_T mean", "final_inventory_mean"), ("q_T std", "final_inventory_std"),
            ("mean |q|", "mean_abs_inventory"), ("spread", "mean_spread"), ("fills", "fills_mean"),
            ("return", "return_mean")]
    if "spread_pnl_mean" in results[0].summary:  # order-book envs: the PnL decomposition and fill ratio
        cols[-1:-1] = [("spread PnL", "spread_pnl_mean"), ("inventory PnL", "inventory_pnl_mean"),
                       ("fees", "fees_mean"), ("fill ratio", "fill_ratio_mean"), ("uptime", "quote_uptime")]
    for title, _ in cols:
        table.add_column(title, justify="left" if title == "agent" else "right")
    for r in results:
        table.add_row(r.agent, *[_fmt(r.summary[key]) for _, key in cols[1:]])
    console.print(table)
    console.print("Sharpe = mean(PnL) / std(PnL) over episodes; spread = mean quoted ask - bid; "
                  "fills = lots filled per episode.", style="dim")
    if paired:
        _print_paired(list(paired.values()))
    if json_out is not None:
        write_json_atomic(json_out, {"env": env_cfg.name, "episodes": episodes, "seed": seed, "reference": reference,
                                     "agents": [r.to_json() | (paired[r.agent].to_json() if r.agent in paired else {})
                                                for r in results]})
        console.print(f"wrote {json_out}")


def _print_paired(paired: list) -> None:
    """The second table of ``lobgym evaluate``: agent - reference in return and PnL, episode by episode."""
    from lobgym.stats import describe

    cis = [c for p in paired for m, c in p.diffs.items() if m in ("return", "pnl")]
    table = Table(title=f"paired differences, agent - {paired[0].reference} on the same episodes "
                        f"(mean, SE, {describe(cis, 'episodes')})")
    table.add_column("agent")
    for title in ("return diff", "SE", "interval", "PnL diff", "SE", "interval", "n"):
        table.add_column(title, justify="right")
    for p in paired:
        ret, pnl = p.diffs["return"], p.diffs["pnl"]
        table.add_row(p.agent, *[cell for c in (ret, pnl) for cell in
                                 (_fmt(c.mean), _fmt(c.se), f"[{_fmt(c.low)}, {_fmt(c.high)}]")], str(ret.n))
    console.print(table)


@app.command()
def train(
    env: Annotated[str, typer.Option(help="env preset name or YAML path")] = "as2008",
    agent: Annotated[str, typer.Option(help="training preset name or YAML path (ppo, sac, ppo_adaptive_lr, ...)")]
    = "ppo",
    seed: Annotated[int, typer.Option(min=0, help="model seed; training env i runs on market seed seed + i")] = 0,
    timesteps: Annotated[int | None, typer.Option(min=1, help="training budget", show_default="the preset's")] = None,
    name: Annotated[str | None, typer.Option(help="run folder name", show_default="<agent>-<env>-seed<seed>")] = None,
    runs_dir: Annotated[Path, typer.Option(help="where run folders go")] = Path("runs"),
    resume: Annotated[Path | None, typer.Option(help="continue this run folder from its newest checkpoint")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Train PPO or SAC on an env; writes runs/<name>/ (config, TensorBoard, checkpoints, models, report)."""
    from lobgym.agents import training

    try:
        if resume is not None:
            run_dir = training.resume(resume, progress=progress, command=sys.argv)
        else:
            run_dir = training.start(env, agent, seed=seed, timesteps=timesteps, name=name, runs_dir=runs_dir,
                                     progress=progress, command=sys.argv)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        _fail(str(err))
    console.print((run_dir / "report.md").read_text(), highlight=False)
    console.print(f"run folder: {run_dir}  (TensorBoard: tensorboard --logdir {run_dir / 'tb'})", highlight=False)


@app.command()
def study(
    spec: Annotated[str, typer.Argument(help="study spec: a name in experiments/ or a YAML path")],
    out: Annotated[Path | None, typer.Option(help="study folder", show_default="runs/studies/<name>")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="trials run at once",
                                                show_default="the spec's, else the cores")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar over trials")] = True,
    backend: Annotated[str, typer.Option(help="where trials run: local (a process pool) or ray (Ray tasks, "
                                              "on a local Ray instance or a cluster; needs Ray installed)")] = "local",
    address: Annotated[str | None, typer.Option(help="with --backend ray: an existing Ray cluster's address",
                                                show_default="start a local Ray instance")] = None,
) -> None:
    """Run a grid of trainings (resumes: finished trials are skipped), then write its report.

    A spec with ``kind: benchmark`` (experiments/env_benchmark.yaml) runs as ``lobgym bench --all``.
    """
    from lobgym.tools.report import write_report
    from lobgym.tools.study import run_study

    if _spec_kind(spec) == "benchmark":
        _bench_all(spec, out)
        return
    try:
        folder = run_study(spec, out=out, workers=workers, progress=progress, backend=backend, address=address)
        report = write_report(folder)
    except (ConfigError, ValueError) as err:
        _fail(str(err))
    console.print(f"study folder: {folder}; results: {folder / 'results.csv'}; report: {report}", highlight=False)


def _spec_kind(spec: str) -> str | None:
    """The ``kind:`` of an experiments/ spec (``benchmark``), or None (a training study)."""
    try:
        data = presets.read_yaml(presets.resolve("experiments", spec))
    except (ValueError, FileNotFoundError):
        return None  # run_study reports the missing spec with its own message
    return data.get("kind") if isinstance(data, dict) else None


def _bench_all(spec: str, out: Path | None) -> None:
    from lobgym.tools.bench import load_bench_spec, rich_tables, run_spec

    try:
        bench_spec = load_bench_spec(spec)
        folder = out if out is not None else Path("experiments") / bench_spec.name
        result = run_spec(bench_spec, folder)
    except (ConfigError, ValueError) as err:
        _fail(str(err))
    for table in rich_tables(result):
        console.print(table)
    console.print(f"wrote {folder / 'README.md'}, {folder / 'benchmark.json'}, {folder / 'throughput.png'}",
                  highlight=False)


@app.command()
def report(
    folder: Annotated[Path, typer.Argument(help="a study folder (holding spec.yaml and results.csv)")],
) -> None:
    """Write report.md and figures for a study folder."""
    from lobgym.tools.report import write_report

    try:
        path = write_report(folder)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        _fail(str(err))
    console.print(f"wrote {path}", highlight=False)


@app.command()
def warmup(
    presets: Annotated[list[str] | None, typer.Argument(help="env presets or YAML paths",
                                                        show_default="every shipped env preset")] = None,
    threads: Annotated[bool, typer.Option(help="also the threaded kernels (batches at or above the kind's "
                                               "threshold)")] = True,
) -> None:
    """Compile the kernels of env presets into numba's cache ahead of time (e.g. in a Docker build)."""
    from lobgym.presets import list_presets
    from lobgym.tools.warmup import warm

    names = presets or list(list_presets("envs"))
    table = Table(title="lobgym warmup: seconds to compile (or load from the cache)")
    for col in ("preset", "market", "serial (N = 1, evaluation, small batches)", "threaded"):
        table.add_column(col, justify="left" if col in ("preset", "market") else "right")
    total = time.perf_counter()
    for name in names:
        console.print(f"warming {name} ...", highlight=False)
        try:
            w = warm(name, threads)
        except (ConfigError, ValueError) as err:
            _fail(str(err))
        threaded = "-" if w.threaded_seconds is None else f"{w.threaded_seconds:.1f} (N >= {w.threaded_min_envs})"
        table.add_row(w.preset, w.kind, f"{w.serial_seconds:.1f}", threaded)
    console.print(table)
    console.print(f"total {time.perf_counter() - total:.1f} s; numba cache: {_numba_cache_dir()}", highlight=False)


def _numba_cache_dir() -> str:
    import os

    from numba.core.config import CACHE_DIR

    return CACHE_DIR or os.environ.get("NUMBA_CACHE_DIR") or "next to the package's sources (__pycache__)"


def _batch_sizes(option: str, text: str) -> tuple[int, ...]:
    """Comma-separated batch sizes, or a clear error naming the option."""
    try:
        sizes = tuple(int(x) for x in text.split(","))
        if any(n < 1 for n in sizes):
            raise ValueError
    except ValueError:
        _fail(f"{option} = {text!r}: expected comma-separated integers >= 1, e.g. 1,100,1000")
    return sizes


def _bench_crossover(env: str, sizes: tuple[int, ...], seconds: float, json_out: Path | None) -> None:
    """``lobgym bench --crossover``: serial against threaded kernels per batch size, as a table (and JSON)."""
    from lobgym.config import load_env_config
    from lobgym.io import write_json_atomic
    from lobgym.provenance import provenance
    from lobgym.tools.bench import bench_crossover

    try:
        cfg = load_env_config(env)
        record = provenance()
        rows = bench_crossover(cfg, sizes, seconds)
    except (ConfigError, ValueError) as err:
        _fail(str(err))
    table = Table(title=f"lobgym bench --crossover: env {cfg.name}, {rows[0]['threads']} numba threads")
    for col in ("N envs", "serial env-steps/s", "threaded env-steps/s", "threaded / serial", "lobgym picks"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(f"{r['n_envs']:,}", f"{r['serial_steps_per_s']:,.0f}", f"{r['threaded_steps_per_s']:,.0f}",
                      f"{r['threaded_over_serial']:.2f}x", r["lobgym_picks"])
    console.print(table)
    if json_out is not None:
        write_json_atomic(json_out, {"env": cfg.name, "crossover": rows} | record)
        console.print(f"wrote {json_out}")


@app.command()
def bench(
    env: Annotated[str, typer.Option(help="env preset name or YAML path")] = "as2008",
    n_envs: Annotated[str, typer.Option(help="comma-separated batch sizes")] = "1,100,1000,10000",
    seconds: Annotated[float, typer.Option(min=0.01, help="minimum timed seconds per measurement")] = 1.0,
    startup: Annotated[bool, typer.Option(help="also time import + first step in a fresh process")] = True,
    book: Annotated[bool, typer.Option(help="also measure the order book under CST flow")] = True,
    gym_vector: Annotated[bool, typer.Option(help="also measure gymnasium.make_vec: lobgym's VectorEnv and "
                                                  "Gymnasium's SyncVectorEnv over single envs")] = True,
    train: Annotated[list[str] | None, typer.Option(help="also time training with this preset (repeat: "
                                                         "--train ppo --train sac) and the env's share of it")] = None,
    train_timesteps: Annotated[int, typer.Option(min=1, help="timesteps per training measurement")] = 50_000,
    crossover: Annotated[str | None, typer.Option(help="instead: serial against threaded kernels of --env at these "
                                                       "comma-separated batch sizes (where threads pay)")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the results as JSON here")] = None,
    all_: Annotated[bool, typer.Option("--all", help="run the benchmark spec (--spec) instead: every market, N, "
                                                     "book events/s, memory, training; writes a report")] = False,
    spec: Annotated[str, typer.Option(help="with --all: benchmark spec, a name in experiments/ or a YAML path")]
    = "env_benchmark",
    out: Annotated[Path | None, typer.Option(help="with --all: report folder",
                                             show_default="experiments/<spec name>")] = None,
) -> None:
    """Measure env-steps/s (single env and batched) against a bare random-number loop."""
    from lobgym.io import write_json_atomic
    from lobgym.tools.bench import run

    if all_:
        _bench_all(spec, out)
        return
    if crossover is not None:
        _bench_crossover(env, _batch_sizes("--crossover", crossover), seconds, json_out)
        return
    sizes = _batch_sizes("--n-envs", n_envs)
    try:
        result = run(env, sizes, seconds, startup, book, tuple(train or ()), train_timesteps, progress=True,
                     gym_vector=gym_vector)
    except (ConfigError, ValueError) as err:
        _fail(str(err))
    table = Table(title=f"lobgym bench: env {result['env']}, {result['threads']} numba threads")
    for col in ("what", "N envs", "env-steps/s", "bare loop steps/s", "ratio to bare", "minimal kernel steps/s",
                "ratio to minimal"):
        table.add_column(col, justify="left" if col == "what" else "right")
    for row in result["rows"]:
        bare, ratio = row["bare_steps_per_s"], row["ratio_to_bare"]
        limit, limit_ratio = row.get("limit_steps_per_s"), row.get("ratio_to_limit")
        what = row["what"]
        if row.get("events_per_step"):
            what += f" ({row['steps_per_s'] * row['events_per_step']:,.0f} book events/s)"
        table.add_row(what, str(row["n_envs"]), f"{row['steps_per_s']:,.0f}",
                      f"{bare:,.0f}" if bare else "-", f"{ratio:.0%}" if ratio else "-",
                      f"{limit:,.0f}" if limit else "-", f"{limit_ratio:.2f}x" if limit_ratio else "-")
    console.print(table)
    for r in result.get("gym_vector", []):
        sync = f", {r['make_vec_over_sync']:,.1f}x the SyncVectorEnv" if r["make_vec_over_sync"] else ""
        console.print(f"gymnasium.make_vec, N = {r['n_envs']:,}: {r['make_vec_over_vec_env']:.2f}x the SB3 VecEnv"
                      f"{sync}", highlight=False)
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
    if "book_env" in result:
        be = result["book_env"]
        console.print(f"order-book env cst2010, {be['n_envs']} books, {result['threads']} threads: "
                      f"{be['steps_per_s']:,.0f} env-steps/s, "
                      f"{be['steps_per_s'] * be['events_per_step']:,.0f} background events/s "
                      f"({be['events_per_step']:.1f} per step; bare loop of the same draws: "
                      f"{be['bare_steps_per_s']:,.0f} steps/s, ratio {be['ratio_to_bare']:.0%})")
    for tr in result.get("training", []):
        console.print(f"{tr['what']} on {tr['env']}, {tr['n_envs']} envs: {tr['timesteps_per_s']:,.0f} timesteps/s "
                      f"({tr['timesteps']:,} in {tr['seconds']:.1f} s); time inside the env: "
                      f"{tr['env_seconds']:.2f} s = {tr['env_share']:.1%} of the wall time; SB3 reading the "
                      f"infos: {tr['info_read_seconds']:.2f} s = {tr['info_read_share']:.1%}", highlight=False)
    if json_out is not None:
        write_json_atomic(json_out, result)
        console.print(f"wrote {json_out}")


@app.command()
def validate(
    env: Annotated[str, typer.Argument(help="book-market env preset name or YAML path, e.g. cst2010")],
    books: Annotated[int, typer.Option(min=1, help="independent books (book i seeded seed + i)")] = 16,
    seconds: Annotated[float, typer.Option(min=0.001, help="seconds recorded per book, after the warm-up")] = 600.0,
    seed: Annotated[int, typer.Option(min=0, help="seed of the first book")] = 0,
    sample_dt: Annotated[float, typer.Option(min=0.001, help="seconds between book samples")] = 1.0,
    out: Annotated[Path | None, typer.Option(help="folder for the figure and JSON",
                                             show_default="runs/validate/<env>")] = None,
    json_print: Annotated[bool, typer.Option("--json", help="print the facts as JSON instead of tables")] = False,
) -> None:
    """Simulate a book market's background flow alone and report its stylised facts (+ figure, JSON)."""
    import json

    from lobgym.io import write_json_atomic
    from lobgym.progress import ProgressLines, is_terminal
    from lobgym.tools.validation import book_market, plot_stylised_facts, stylised_facts

    try:
        name, _ = book_market(env)
        if is_terminal(console):
            with console.status(f"simulating {books} books x {seconds:g} s of {name}…"):
                facts = stylised_facts(env, books=books, seconds=seconds, seed=seed, sample_dt=sample_dt)
        else:  # plain lines for logs; with --json stdout holds the facts only
            with ProgressLines(f"validate {name}", seconds, f"s recorded of {books} books",
                               file=sys.stderr if json_print else None) as lines:
                facts = stylised_facts(env, books=books, seconds=seconds, seed=seed, sample_dt=sample_dt,
                                       progress=lines.update)
    except (ConfigError, ValueError, RuntimeError) as err:
        _fail(str(err))
    folder = out if out is not None else Path("runs") / "validate" / name
    png = plot_stylised_facts(facts, folder / "stylised_facts.png")
    js = write_json_atomic(folder / "stylised_facts.json", facts)
    if json_print:
        typer.echo(json.dumps(json.loads(js.read_text())))
        Console(stderr=True).print(f"wrote {png} and {js}", highlight=False)
        return
    _print_facts(facts)
    console.print(f"wrote {png} and {js}", highlight=False)


def _print_facts(f: dict) -> None:
    ev = f["events"]
    console.print(f"[bold]{f['env']}[/]: background flow alone, {f['books']} books x {f['seconds']:g} s = "
                  f"{f['book_seconds']:g} book-seconds after {f['warmup']:g} s warm-up, seeds {f['seed']}.."
                  f"{f['seed'] + f['books'] - 1}; rejected orders: {f['rejected']}", highlight=False)
    table = Table(title="events (flow counters)")
    for col in ("type", "count", "per second per book"):
        table.add_column(col, justify="left" if col == "type" else "right")
    for kind, count in ev["counts"].items():
        table.add_row(kind, f"{count:,}", f"{ev['rates_per_s'][kind]:.3f}")
    table.add_row("all", f"{ev['total']:,}", f"{ev['total_rate_per_s']:.3f}", style="bold")
    console.print(table)

    sp, ie, sa = f["spread"], f["inter_event"], f["sign_acf"]
    table = Table(title="stylised facts")
    table.add_column("fact")
    table.add_column("value", justify="right")
    table.add_column("what to expect", style="dim")
    probs = dict(zip(sp["ticks"], sp["probability"], strict=True))
    table.add_row("spread: mean (ticks)", _fmt(sp["mean"]), "a few ticks at most in a liquid market")
    table.add_row("spread: P(1), P(2), P(3), P(>=4)",
                  ", ".join(f"{p:.3f}" for p in (probs.get(1, 0.0), probs.get(2, 0.0), probs.get(3, 0.0),
                                                  sum(v for k, v in probs.items() if k >= 4))), "")
    table.add_row("inter-event time: mean (s)", _fmt(ie["mean"], 5), "1 / total event rate")
    table.add_row("inter-event time: CV (pooled; per book)", f"{_fmt(ie['cv'])}; {_fmt(ie['cv_per_book_mean'])}",
                  "1 for Poisson flow, > 1 when clustered")
    lags = {lag: v for lag, v in zip(sa["lags"], sa["acf"], strict=True) if lag in (1, 2, 5, 10)}
    table.add_row("market-order sign ACF: " + ", ".join(f"lag {lag}" for lag in lags),
                  ", ".join(_fmt(v) for v in lags.values()),
                  f"0 for zero-intelligence flow (95% band +/-{_fmt(sa['band95'])}); > 0 when herding")
    table.add_row("market orders: buy fraction", _fmt(sa["buy_fraction"]), "0.5 for a symmetric flow")
    console.print(table)

    depth = f["depth"]["from_own_best"]
    table = Table(title="mean depth (lots) by distance from the own best quote (ticks)")
    table.add_column("side")
    for d in depth["distance"]:
        table.add_column(str(d), justify="right")
    for side in ("bid", "ask"):
        table.add_row(side, *[f"{x:.2f}" for x in depth[side]])
    console.print(table)

    vol = f["volatility"]
    table = Table(title="mid-price volatility by horizon")
    for col in ("horizon (s)", "std (ticks)", "std (price)", "std / sqrt(h)", "variance ratio", "pairs"):
        table.add_column(col, justify="right")
    for i, h in enumerate(vol["horizon_s"]):
        table.add_row(f"{h:g}", _fmt(vol["std_ticks"][i]), _fmt(vol["std_price"][i], 4), _fmt(vol["signature"][i]),
                      _fmt(vol["variance_ratio"][i]), f"{vol['n_pairs'][i]:,}")
    console.print(table)
    console.print("variance ratio = var(h) / (h / h1 var(h1)) against the shortest horizon h1: 1 for a random walk, "
                  "< 1 under bid-ask bounce or mean reversion.", style="dim")


@app.command()
def tasks() -> None:
    """List the standard tasks: market kind, evaluation protocol and the agents that score 0 and 1."""
    from lobgym.tasks import TASKS

    table = Table(title="tasks (lobgym score): score = (R - R_random) / (R_reference - R_random), "
                        "R = mean episode return on the protocol's seeds")
    for title in ("task", "market", "seeds", "episodes", "score 0", "score 1"):
        table.add_column(title, style="bold cyan" if title == "task" else None,
                         justify="right" if title == "episodes" else "left")
    for t in TASKS.values():
        table.add_row(t.name, t.kind, t.seeds, f"{t.episodes:,}", t.zero, t.reference)
    console.print(table)
    console.print("Episode j of every agent runs on market seed (first seed) + j (common random numbers); the "
                  "references are re-run on the same seeds in every `lobgym score`.", style="dim")
    for t in TASKS.values():
        console.print(f"{t.name}: {t.reference} — {t.why}", style="dim", highlight=False)


@app.command()
def score(
    agent: Annotated[str, typer.Option(help="the agent to score: what `lobgym evaluate --agent` takes (a preset "
                                            "name, a YAML path, an inline YAML mapping or a trained run folder)")],
    task: Annotated[list[str] | None, typer.Option(help="task to score on (repeat; see `lobgym tasks`)",
                                                   show_default="every task of the agent's market kind")] = None,
    episodes: Annotated[int | None, typer.Option(help="episodes per task, overriding the protocol (at least 2)",
                                                 show_default="the task's protocol")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the scores as JSON here")] = None,
) -> None:
    """Normalised score of an agent on the standard tasks (random = 0, the task's reference = 1).

    Each score comes with a 95% interval from a paired bootstrap over the common episodes.
    """
    from lobgym import tasks as suite
    from lobgym.io import write_json_atomic
    from lobgym.provenance import version_line
    from lobgym.stats import describe

    try:
        suite.check_episodes(episodes)
        spec = suite.resolve_agent(agent)
        chosen = [suite.get_task(name) for name in task] if task else \
            [suite.TASKS[name] for name in suite.applicable_tasks(spec)]
    except (ConfigError, ValueError) as err:
        _fail(str(err))
    built, skipped = {}, {}
    for t in chosen:
        try:
            built[t.name] = suite.build_agent(spec, t)
        except (ConfigError, ValueError) as err:
            if task:  # asked for by name: an error, before anything runs
                _fail(f"--task {t.name}: {err}" if not str(err).startswith("--task") else str(err))
            skipped[t.name] = str(err)  # a default task the agent does not build on: say so, score the others
    if not built:
        _fail(f"--agent {agent!r}: applies to no task ({'; '.join(f'{k}: {v}' for k, v in skipped.items())})")
    results = []
    with console.status("scoring…") as status:
        for name, pair in built.items():
            status.update(f"scoring {spec.name} on {name} (and random and the reference, same seeds)…")
            try:
                results.append(suite.score(spec, name, episodes, built=pair))
            except (ConfigError, ValueError) as err:
                _fail(str(err))
    table = Table(title=f"{spec.name}: normalised score (random = 0, reference = 1; "
                        f"{describe([r.score for r in results], 'episodes')})")
    for title in ("task", "score", "95% interval", "return", "random", "reference", "reference agent", "episodes",
                  "seeds"):
        table.add_column(title, justify="left" if title in ("task", "reference agent", "seeds") else "right")
    for r in results:
        seeds = f"{r.seed}..{r.seed + r.episodes - 1}"
        table.add_row(r.task, _fmt(r.score.mean), f"[{_fmt(r.score.low)}, {_fmt(r.score.high)}]",
                      _fmt(r.returns["agent"], 4), _fmt(r.returns["zero"], 4), _fmt(r.returns["reference"], 4),
                      r.reference, f"{r.episodes:,}", seeds)
    console.print(table)
    console.print("return = mean episode return (the env's reward) of the agent, of random and of the reference, "
                  "on the same episodes.", style="dim")
    if episodes is not None and any(r.overridden for r in results):
        console.print(f"protocol overridden: --episodes {episodes} instead of the tasks' own episode counts "
                      "(scores are not comparable with the standard protocol's)", style="yellow", highlight=False)
    for r in results:
        if r.interface:
            console.print(f"{r.task}: {r.interface}", style="yellow", highlight=False)
    for name, why in skipped.items():
        console.print(f"skipped {name}: {why}", style="yellow", highlight=False)
    if json_out is not None:
        write_json_atomic(json_out, {"agent": spec.name, "agent_spec": agent, "lobgym": version_line(),
                                     "episodes_override": episodes,
                                     "protocol_overridden": any(r.overridden for r in results),
                                     "tasks": [r.to_json() for r in results], "skipped": skipped})
        console.print(f"wrote {json_out}")


def main() -> None:
    """Run the ``lobgym`` command line (what ``python -m lobgym`` calls)."""
    app()
