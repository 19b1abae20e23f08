"""`diziner bench`: iteration-0 vs refined F1 on the shared benchmarks, side by side."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    from diziner.benchmarks.registry import DATASETS  # a dict of names and labels; light
    from diziner.options import DEFAULTS

    pilot = DEFAULTS.pilot

    @app.command("bench")
    def bench_cmd(
        datasets: List[str] = typer.Argument(..., help="Dataset names of the shared benchmarks: "
                                             + ", ".join(sorted(DATASETS)) + "."),
        pool: Path = typer.Option(..., "--pool", help="Pool YAML: annotators (and supervisor)."),
        out: Path = typer.Option(..., "--out", help="Output folder: <dataset>.json, results.md, runs."),
        test_size: int = typer.Option(300, help="Seeded sample of test sentences, the same for every system."),
        seed: int = typer.Option(pilot.seed),
        iterations: int = typer.Option(pilot.iterations, help="Pilot iterations (on the dev split, gold never shown)."),
        sample_size: int = typer.Option(pilot.sample_size, help="Documents per pilot iteration."),
        oracle_all: bool = typer.Option(False, help="Also run every iteration's guideline on test (for the oracle)."),
        naive: bool = typer.Option(True, "--naive/--no-naive",
                                   help="Also score each pool model with a plain 3-shot prompt (no guideline) on the test sample."),
        disjoint_from: Optional[int] = typer.Option(None, help="Screening: draw the test sample from outside the N-sentence "
                                                    "sample of the same seed (the reported one), e.g. --disjoint-from 300."),
        aggregation: Optional[str] = typer.Option(None, help="Delivered aggregation (as refine --aggregation); "
                                                  "default the project's."),
        with_initial: bool = typer.Option(True, "--with-initial/--selected-only",
                                          help="Deliver as refine does: over the selected and the iteration-0 guideline's "
                                          "runs when they differ, else over iteration 0's and its companion's "
                                          "(default), or the selected guideline's only."),
        cache: Optional[Path] = typer.Option(None, help="Response cache (SQLite)."),
        no_cache: bool = typer.Option(False, "--no-cache"),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the planned calls and token estimate; call nothing."),
        quiet: bool = typer.Option(False, "--quiet", "-q"),
    ) -> None:
        """Measure whether refinement lifts F1 without labels, on the shared benchmarks.

        Example: diziner bench crossner_politics bc5cdr --pool examples/pool-local.yaml --out bench-out --test-size 300
        """
        from diziner.bench import run_bench
        from diziner.errors import DizinerError
        from diziner.llm.pool import load_pool
        from diziner.loop import RefineOptions

        pl = load_pool(pool)
        if test_size < 1:
            raise DizinerError(f"--test-size: test size must be at least 1 (got {test_size})")
        if disjoint_from is not None and disjoint_from < 0:
            raise DizinerError(f"--disjoint-from: must be at least 0 (got {disjoint_from})")
        # every option in range, one line, before any data is loaded or anything created (as refine)
        RefineOptions(iterations=iterations, sample_size=sample_size, seed=seed,
                      final_aggregation=aggregation if aggregation is not None else pl.aggregation).check()
        if dry_run:
            from diziner.benchmarks.registry import load_split, schema_path
            from diziner.commands.refine import _estimate
            from diziner.bench import screening_sample
            from diziner.guideline import Guideline
            from diziner.schema import load_schema

            plan = {}
            for name in datasets:
                g0 = Guideline.initial(load_schema(schema_path(name)))
                dev = load_split(name, "dev").documents
                test = screening_sample(load_split(name, "test").documents, test_size, seed, disjoint_from)
                pilot = dev[: iterations * sample_size]
                p = _estimate(pilot, g0, pl, 1)
                te = _estimate(test, g0, pl, 2 + (iterations - 1 if oracle_all else 0))
                n_naive = len(test) * len({a.model for a in pl.annotators}) if naive else 0
                plan[name] = {"pilot": p, "test": te, "naive_calls": n_naive, "calls": p["calls"] + te["calls"] + n_naive,
                              "tokens_in_est": p["tokens_in_est"] + te["tokens_in_est"],
                              "tokens_out_est": p["tokens_out_est"] + te["tokens_out_est"]}
            plan["total"] = {k: sum(v[k] for v in plan.values()) for k in ("calls", "tokens_in_est", "tokens_out_est")}
            plan["note"] = ("estimates: prompt chars / 4 with the iteration-0 guideline, 60 output tokens per call; test "
                            "= iteration-0 and selected guideline; naive = one plain-prompt call per sentence and pool model; "
                            "an LLM supervisor adds 4 calls per iteration")
            typer.echo(json.dumps(plan, indent=2))
            return
        command = (f"diziner bench {' '.join(datasets)} --pool {pool} --out {out} --test-size {test_size} --seed {seed} "
                   f"--iterations {iterations} --sample-size {sample_size}" + (" --oracle-all" if oracle_all else "")
                   + ("" if naive else " --no-naive") + (f" --disjoint-from {disjoint_from}" if disjoint_from else "")
                   + (f" --aggregation {aggregation}" if aggregation is not None else "")
                   + ("" if with_initial else " --selected-only"))
        results = run_bench(datasets, pl, out, test_size=test_size, seed=seed, iterations=iterations,
                            sample_size=sample_size, oracle_all=oracle_all, cache_path=cache, no_cache=no_cache,
                            quiet=quiet, command=command, naive=naive, disjoint_from=disjoint_from,
                            aggregation=aggregation, with_initial=with_initial)
        for r in results:
            nv = ", ".join(f"{m} {v:.3f}" for m, v in r["naive"].items())
            typer.echo(f"{r['dataset']}: delivered F1 {r['delivered_iteration0']:.3f} -> {r['delivered']:.3f} "
                       f"(selected iteration {r['selected_iteration']})" + (f"; plain prompt {nv}" if nv else "")
                       + f"; {out / (r['dataset'] + '.json')}")
