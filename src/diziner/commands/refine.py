"""`diziner refine` and `diziner annotate`: the main job of the tool."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer


def _load_texts(path: Path, fmt: str | None, text_field: str = "text"):
    from diziner.corpus.readers import read_corpus

    corpus = read_corpus(path, fmt, text_field=text_field)
    if not corpus.documents:
        from diziner.errors import InputError

        raise InputError(path, None, "no documents found")
    return corpus.documents


def _load_gold(path: Path | None, fmt: str | None, documents) -> dict | None:
    if path is None:
        return None
    from diziner.corpus.readers import read_corpus
    from diziner.errors import InputError

    corpus = read_corpus(path, fmt)
    by_id = {d.id: d for d in corpus.documents}
    missing = [d.id for d in documents if d.id not in by_id]
    if missing:
        raise InputError(path, None, f"gold lacks {len(missing)} of the documents (first: {missing[0]!r}); ids must match the texts")
    for d in documents:
        if by_id[d.id].text != d.text:
            raise InputError(path, None, f"gold text of document {d.id!r} differs from the texts file")
    return {d.id: corpus.spans_of(d.id) for d in documents}


def _estimate(documents, guideline, pool, calls_per_doc: int) -> dict:
    """Planned calls and a token estimate (prompt characters / 4) without calling anything."""
    from diziner.annotate.prompt import build_request
    from diziner.llm.ledger import lookup_price

    est = {"annotators": {}, "calls": 0, "tokens_in_est": 0, "tokens_out_est": 0, "cost_usd_est": 0.0}
    unknown = []
    sample = documents[: min(len(documents), 50)]
    for a in pool.annotators:
        chars = 0
        for d in sample:
            req = build_request(guideline, a.id, a.prompt_style, d.text, params=a.params or None)
            body = req.prompt if req.prompt is not None else "".join(m["content"] for m in req.messages or [])
            chars += len(body)
        per_doc_in = chars / max(1, len(sample)) / 4
        n = len(documents) * calls_per_doc
        tin = int(per_doc_in * n)
        tout = int(n * 60)
        price = lookup_price(a.backend, a.model, getattr(a, "price", None))
        cost = None if price is None else round((tin * price.input_per_mtok + tout * price.output_per_mtok) / 1e6, 4)
        est["annotators"][a.id] = {"calls": n, "tokens_in_est": tin, "tokens_out_est": tout, "cost_usd_est": cost}
        est["calls"] += n
        est["tokens_in_est"] += tin
        est["tokens_out_est"] += tout
        if cost is None:
            unknown.append(a.id)
        else:
            est["cost_usd_est"] = round(est["cost_usd_est"] + cost, 4)
    if unknown:  # a sum over known prices only would read as the whole cost
        est["cost_usd_est"] = None
        est["cost_unknown_for"] = unknown
    return est


def same_delivery_command(run: Path, summary: dict, pool: Path) -> str | None:
    """The ``annotate`` command that annotates more texts as the run's final annotation did, when it
    ran more than one guideline (metrics.json ``final_guidelines``); None otherwise."""
    guidelines = summary.get("final_guidelines") or []
    if len(guidelines) < 2:
        return None
    return ("diziner annotate " + " ".join(f"--guideline {run / g}" for g in guidelines)
            + f" --pool {pool} --texts TEXTS --out OUT")


def _check_budget(budget: float | None) -> None:
    """A negative budget is refused before anything is created (the ledger refuses it only once open)."""
    if budget is not None and budget < 0:
        from diziner.errors import DizinerError

        raise DizinerError(f"--budget: budget must be >= 0 (got {budget:g})")


def _check_annotate_out(out: Path, texts: Path, ids: list[str], folder_ok: bool = False) -> None:
    """Before any call: ``out`` can be written, and neither it nor a file written beside it
    (``<stem>.<annotator>.jsonl``, ``.failed``, ``.ledger``, the ``.partial`` files) is the texts."""
    from diziner.atomic import file_in_the_way
    from diziner.errors import InputError
    from diziner.stream import StreamPaths

    if out.is_dir() and not folder_ok:
        raise InputError(out, None, "is a folder; --out names the output JSONL file")
    blocker = file_in_the_way(out)
    if blocker is not None:
        raise InputError(out, None, f"cannot write: {blocker} is a file, not a folder")
    paths = StreamPaths.of(out, ids)
    written = [*paths.finals(), *paths.partials(), paths.state, paths.ledger]
    if texts.resolve() in {p.resolve() for p in written}:
        raise InputError(out, None, f"would write over the input {texts} (a file annotate writes beside --out); "
                         "choose another --out")


def register(app: typer.Typer) -> None:
    from diziner.options import DEFAULTS  # the one place of every default (also RefineOptions, Limits, StreamOptions)

    pilot, analysis, annotation = DEFAULTS.pilot, DEFAULTS.analysis, DEFAULTS.annotation

    @app.command("refine")
    def refine_cmd(
        schema: Path = typer.Option(..., "--schema", help="Schema YAML (labels, definitions, examples, goal)."),
        texts: Path = typer.Option(..., "--texts", help="Unlabelled documents: text (one per line), JSONL, CoNLL (tags ignored), GENIA, CSV or Parquet."),
        pool: Path = typer.Option(..., "--pool", help="Pool YAML: annotators and supervisor."),
        out: Path = typer.Option(..., "--out", help="Run directory (created; re-run the same command to resume)."),
        iterations: int = typer.Option(pilot.iterations, help="Maximum number of pilot iterations."),
        sample_size: int = typer.Option(pilot.sample_size, help="Documents per iteration (disjoint, lexically diverse sets)."),
        seed: int = typer.Option(pilot.seed, help="Seed for the iteration sets."),
        fmt: Optional[str] = typer.Option(None, "--format", help="Format of --texts/--gold: conll, jsonl, text, genia, csv, parquet (default: detect)."),
        text_field: str = typer.Option("text", "--text-field", help="The text of a JSONL record / the text column of a CSV file."),
        gold: Optional[Path] = typer.Option(None, help="Gold annotations: scored and reported only, never used to select."),
        supervisor: Optional[str] = typer.Option(None, help="consensus | llm (default: the pool's supervisor)."),
        gold_supervised: bool = typer.Option(False, help="Ablation: gold replaces the consensus as the supervisor's reference."),
        freeze_goal: bool = typer.Option(False, help="Ablation: never update the goal G."),
        remove_goal: bool = typer.Option(False, help="Ablation: annotate without the goal G."),
        drop_low_agreement: bool = typer.Option(False, help="Drop an annotator ≥ 0.10 below the mean agreement (keeps ≥ 2)."),
        patience: int = typer.Option(pilot.patience, help="Stop after this many iterations without a rise in agreement."),
        percentile: float = typer.Option(analysis.percentile, help="Hotspot threshold: percentile of the hot score H = max(U*, 2·D_type) over disputed tokens."),
        weights: str = typer.Option(analysis.weights, help="Annotator weights: f1 | hybrid."),
        max_change_ratio: float = typer.Option(DEFAULTS.limits.max_change_ratio, help="Largest allowed change between consecutive guidelines."),
        min_support: Optional[float] = typer.Option(None, help="Shorthand for --aggregation vote:X (0 = union)."),
        aggregation: Optional[str] = typer.Option(None, help="Delivered aggregation: consensus | union | vote:X | "
                                                  "reliability | reliability:label (default: the project's, docs/analysis.md)."),
        no_final: bool = typer.Option(False, "--no-final", help="Skip annotating the whole corpus with the selected guideline."),
        with_initial: bool = typer.Option(True, "--with-initial/--selected-only",
                                          help="The final annotation also runs a second guideline and delivers over "
                                          "both (the default): the iteration-0 one when a refined guideline is "
                                          "selected (BENCHMARKS.md §14), else its companion, iteration 0 plus the "
                                          "mentions its pilot agreed on (final/companion-guideline.yaml, §15); or "
                                          "runs the selected guideline only."),
        cache: Optional[Path] = typer.Option(None, help="Response cache (SQLite); default ~/.cache/diziner/llm-cache.sqlite."),
        no_cache: bool = typer.Option(False, "--no-cache", help="Do not read the response cache."),
        budget: Optional[float] = typer.Option(None, help="Stop making new calls once this many USD are spent."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the planned calls and a token estimate; call nothing."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
        as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
    ) -> None:
        """Refine the annotation guideline by disagreement between LLM annotators, then annotate the corpus.

        Example: diziner refine --schema examples/schema.yaml --texts examples/texts.jsonl --pool examples/pool-local.yaml --out runs/demo
        """
        from diziner.guideline import Guideline
        from diziner.llm.pool import load_pool
        from diziner.loop import RefineOptions, refine
        from diziner.schema import load_schema

        sch = load_schema(schema)
        pl = load_pool(pool)
        docs = _load_texts(texts, fmt, text_field)
        gold_spans = _load_gold(gold, fmt, docs)
        if gold_supervised and gold_spans is None:
            from diziner.errors import DizinerError

            raise DizinerError("--gold-supervised needs --gold")
        opts = RefineOptions(iterations=iterations, sample_size=sample_size, seed=seed, percentile=percentile,
                             weights=weights, patience=patience, drop_low_agreement=drop_low_agreement,
                             supervisor=supervisor, max_change_ratio=max_change_ratio, gold_supervised=gold_supervised,
                             freeze_goal=freeze_goal, remove_goal=remove_goal, final_annotation=not no_final,
                             final_min_support=min_support, final_aggregation=aggregation,
                             final_with_initial=with_initial)
        opts.check()  # every option in range, one line, before anything is created or loaded
        _check_budget(budget)
        if dry_run:
            pilot = min(len(docs), iterations * sample_size)
            g0 = Guideline.initial(sch)
            plan = {"pilot_documents": pilot, "corpus_documents": len(docs), "iterations": iterations,
                    "pilot": _estimate(docs[:pilot], g0, pl, 1),
                    "final": _estimate(docs, g0, pl, 2 if with_initial else 1) if not no_final else None,
                    "note": "token figures are estimates (prompt characters / 4, 60 output tokens per call) with the "
                            "iteration-0 guideline; refined guidelines are longer; re-asks and an LLM supervisor add "
                            "calls; final: the corpus under the selected guideline and a second one, iteration 0's or "
                            "its companion (half of it with --selected-only, or when iteration 0 is selected and its "
                            "pilot agreed on no mention); cost_usd_est from prices.yaml / "
                            "the pool's price:, null where a price is unknown"}
            parts = [plan["pilot"]] + ([plan["final"]] if plan["final"] else [])
            plan["cost_usd_est"] = (None if any(p["cost_usd_est"] is None for p in parts)
                                    else round(sum(p["cost_usd_est"] for p in parts), 4))
            typer.echo(json.dumps(plan, indent=2))
            return
        command = "diziner " + " ".join(sys.argv[1:])
        res = refine(sch, docs, pl, out, opts, gold=gold_spans, cache_path=cache, no_cache=no_cache,
                     budget_usd=budget, quiet=quiet or as_json, command=command)
        summary = json.loads((res.out / "metrics.json").read_text())
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
            return
        if not quiet:
            typer.echo(f"selected iteration {res.selected_iteration} ({res.stopped_because})")
            for r in res.iterations:
                f1 = f"  F1(consensus) {r.f1['consensus']:.3f}" if "consensus" in r.f1 else ""
                by_label = f" (over labels {r.label_macro_f1:.3f})" if r.label_macro_f1 is not None else ""
                typer.echo(f"  iteration {r.iteration}: agreement {r.mean_pairwise_f1:.3f}{by_label}  "
                           f"hotspots {r.hotspots}{f1}")
            if res.final_f1:
                typer.echo("final F1 vs gold: " + ", ".join(f"{k} {v:.3f}" for k, v in res.final_f1.items()))
            typer.echo(f"guideline: {res.out / 'final' / 'guideline.md'}")
            typer.echo(f"annotations: {res.out / 'final' / 'annotations.jsonl'}")
            again = same_delivery_command(res.out, summary, pool)
            if again:
                typer.echo(f"delivered over {len(summary['final_guidelines'])} guidelines; more texts the same way: {again}")

    @app.command("annotate")
    def annotate_cmd(
        guideline: Optional[List[Path]] = typer.Option(
            None, "--guideline", help="Guideline YAML (e.g. RUN/final/guideline.yaml). Repeat it to annotate with several "
            "guidelines (each annotator under each; runs <annotator>@it<iteration>) and deliver over all of them, as "
            "refine's final annotation does with the selected and the iteration-0 guideline."),
        schema: Optional[Path] = typer.Option(None, "--schema", help="Instead of --guideline: a schema YAML, annotated with its "
                                              "iteration-0 guideline (no pilot)."),
        pool: Path = typer.Option(..., "--pool", help="Pool YAML: annotators."),
        texts: Path = typer.Option(..., "--texts", help="Documents to annotate (text, JSONL, CoNLL, CSV or Parquet)."),
        out: Path = typer.Option(..., "--out", help="Output JSONL (consensus spans with support); per-annotator files beside it."),
        fmt: Optional[str] = typer.Option(None, "--format", help="Format of --texts (default: detect)."),
        text_field: str = typer.Option("text", "--text-field", help="The text of a JSONL record / the text column of a CSV file."),
        min_support: Optional[float] = typer.Option(None, help="Shorthand for --aggregation vote:X (0 = union)."),
        aggregation: Optional[str] = typer.Option(None, help="Delivered aggregation: consensus | union | vote:X | "
                                                  "reliability | reliability:label (default: the project's, docs/analysis.md)."),
        cache: Optional[Path] = typer.Option(None, help="Response cache (SQLite). --engine ray: used only when "
                                             "named; on a local disk of every machine (docs/scale.md)."),
        no_cache: bool = typer.Option(False, "--no-cache", help="Do not read the response cache."),
        budget: Optional[float] = typer.Option(None, help="Stop making new calls once this many USD are spent "
                                               "(--engine ray: no shard is started once they are; docs/scale.md)."),
        force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
        batch_size: int = typer.Option(annotation.batch_size, "--batch-size", min=1, help="Documents read, annotated and written per batch (memory is bounded by a few batches)."),
        weight_sample: Optional[int] = typer.Option(None, "--weight-sample", min=1, help="Documents whose analysis fixes the annotator weights and hotspot threshold (default: 2 batches)."),
        weights: str = typer.Option(analysis.weights, help="Annotator weights: f1 | hybrid."),
        percentile: float = typer.Option(analysis.percentile, help="Hotspot threshold: percentile of the hot score H = max(U*, 2·D_type) over the weight sample's disputed tokens."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the planned calls and a token estimate; call nothing."),
        engine: str = typer.Option("local", "--engine", help="local (one process) | ray (Ray Data: a cluster, vLLM "
                                   "engine replicas; pip install 'diziner\\[ray]'; docs/scale.md)."),
        ray_address: Optional[str] = typer.Option(None, "--ray-address", help="--engine ray: the cluster (default: "
                                                  "RAY_ADDRESS, else a local runtime)."),
        shard_size: int = typer.Option(10_000, "--shard-size", min=1, help="--engine ray: documents per shard (the unit "
                                       "of output and of resume)."),
        output_format: str = typer.Option("jsonl", "--output-format", help="--engine ray: jsonl (the local engine's "
                                          "files) | parquet (OUT becomes a folder of shards)."),
        quiet: bool = typer.Option(False, "--quiet", "-q"),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Annotate documents with a (refined) guideline by every annotator of the pool, aggregated with support.

        Documents are streamed in batches and results appended to OUT.partial files, renamed
        when all are done; re-run the same command to resume an interrupted run.

        Example: diziner annotate --guideline runs/demo/final/guideline.yaml --pool examples/pool-local.yaml --texts examples/texts.txt --out out.jsonl
        """
        from diziner.errors import DizinerError
        from diziner.guideline import load_guideline
        from diziner.llm.pool import load_pool
        from diziner.stream import StreamOptions, annotate_file, run_ids

        if (not guideline) == (schema is None):
            raise DizinerError("give either --guideline (a refined guideline) or --schema (its iteration-0 guideline)")
        also = []
        if guideline:
            g, *also = [load_guideline(p) for p in guideline]
        else:
            from diziner.guideline import Guideline
            from diziner.schema import load_schema

            g = Guideline.initial(load_schema(schema))
        if also:
            from diziner.annotate.runner import guideline_runs

            guideline_runs([], [g, *also])  # one schema, before anything is read or written
        pl = load_pool(pool)
        if not texts.is_file():
            from diziner.errors import InputError

            raise InputError(texts, None, "is a directory, not a file" if texts.is_dir() else "no such file")
        sopts = StreamOptions(batch_size=batch_size, weight_sample=weight_sample, min_support=min_support,
                              aggregation=aggregation, weights=weights, percentile=percentile)
        sopts.check()
        _check_budget(budget)
        if dry_run:
            docs = _load_texts(texts, fmt, text_field)
            plan = _estimate(docs, g, pl, 1 + len(also))
            from diziner.aggregation import Aggregation

            agg = Aggregation.parse(Aggregation.pick(sopts.aggregation, sopts.min_support, pl.aggregation), sopts.min_support)
            plan.update({"documents": len(docs), "aggregation": str(agg),
                         "note": "estimates: prompt characters / 4, 60 output tokens per call; re-asks add calls"})
            typer.echo(json.dumps(plan, indent=2))
            return
        if out.exists() and not force:
            raise DizinerError(f"{out}: exists; refusing to overwrite it", hint="pass --force or choose another --out")
        if out.resolve() == texts.resolve():
            raise DizinerError(f"{out}: is the input file; choose another --out")
        _check_annotate_out(out, texts, run_ids(pl, g, also), folder_ok=engine == "ray" and output_format == "parquet")
        if engine == "ray":
            from diziner.scale import RayOptions, annotate_file_ray

            ropts = RayOptions(address=ray_address, shard_size=shard_size, output_format=output_format)
            ropts.check()
            summary = annotate_file_ray(g, texts, pl, out, fmt=fmt, text_field=text_field, options=sopts,
                                        ray_options=ropts, quiet=quiet or as_json, cache_path=cache,
                                        no_cache=no_cache, budget_usd=budget, also=also)
        elif engine != "local":
            raise DizinerError(f"unknown engine {engine!r} (use local or ray)")
        else:
            summary = annotate_file(g, texts, pl, out, fmt=fmt, text_field=text_field, count=not (quiet or as_json),
                                    options=sopts, cache_path=cache, no_cache=no_cache, budget_usd=budget,
                                    quiet=quiet or as_json, also=also)
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
        elif not quiet:
            typer.echo(f"{summary['documents']} documents, {summary['spans']} consensus spans -> {out}")
            for a, n in summary["failed"].items():
                if n:
                    typer.echo(f"  {a}: {n} documents failed ({'; '.join(summary['failure_reasons'].get(a, []))})")
