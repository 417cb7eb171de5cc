"""`write_report`: one self-contained HTML file of one run or several side by side.

Findings and a status banner first, then the per-layer table, the figures and the run's
config; with several runs, a comparison (speed bars and tables next to each other, the
findings of each) before each run in full. The file holds its figures inline (SVG, PNG)
and fetches nothing: it opens the same offline, in a mail, or years later.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gradprobe._version import __version__
from gradprobe.diagnose.finding import Finding
from gradprobe.record.record import Record
from gradprobe.viz import report_embed, report_theory
from gradprobe.viz.report_run import TABLE_QUANTITIES, RunView, as_source, build_view, figure_names

TEMPLATE = "report.html.j2"


def _as_list(runs: Any) -> list:
    if isinstance(runs, (str, Path, Record)):
        return [runs]
    if isinstance(runs, Sequence) and runs:
        return list(runs)
    raise ValueError(
        f"runs must be a run directory, a Record, or a non-empty list of them; got {runs!r}"
    )


def _per_run(value: Any, n_runs: int, name: str, single: Callable[[Any], bool]) -> list:
    """`value` as one entry per run: None for all, a single item for one run, or a list."""
    if value is None:
        return [None] * n_runs
    if n_runs == 1 and single(value):
        return [value]
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == n_runs:
        return list(value)
    raise ValueError(f"{name} must hold one entry per run ({n_runs} runs); got {value!r}")


def _flat_findings(value: Any) -> bool:
    # findings=[Finding, ...] for a single run, versus [[...], [...]] for several
    return isinstance(value, Sequence) and all(isinstance(f, Finding) for f in value)


def _one_model(value: Any) -> bool:
    return not isinstance(value, (list, tuple))


_one_prediction = _one_model  # one Prediction for a single run, not a list of them


def _shared_ylim(figs: list) -> None:
    """Give the first axes of every figure one y-scale and one y-range, so bars compare by
    eye: log for all when any is log (one run's speeds span decades, another's do not)."""
    axes = [fig.axes[0] for fig in figs if fig.axes]
    if len(axes) < 2:
        return
    if any(ax.get_yscale() == "log" for ax in axes):
        for ax in axes:
            if ax.get_yscale() == "linear":
                ax.set_yscale("log")
                ax.relim()
                ax.autoscale_view()
    if len({ax.get_yscale() for ax in axes}) != 1:
        return  # e.g. symlog next to log: no common range to give
    limits = [ax.get_ylim() for ax in axes]
    low, high = min(lo for lo, _ in limits), max(hi for _, hi in limits)
    for ax in axes:
        ax.set_ylim(low, high)


def _comparison_bars(views: list[RunView], sources: list) -> list:
    """Speed bars of every run on one y-range; a run that cannot draw them is missing."""
    module = report_embed.figures_module()
    figs = {}
    for view, source in zip(views, sources):
        try:
            figs[view.anchor] = module.speed_bars(source.record)
        except ValueError as err:
            figs[view.anchor] = err
    _shared_ylim([f for f in figs.values() if not isinstance(f, ValueError)])
    return [
        report_embed.missing("speed_bars", str(f))
        if isinstance(f, ValueError)
        else report_embed.embed("speed_bars", f, f"{anchor}-cmp-")
        for anchor, f in figs.items()
    ]


def _title(views: list[RunView]) -> str:
    names = [v.name for v in views]
    return "gradprobe report: " + (names[0] if len(names) == 1 else " vs ".join(names))


def _environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        # Run names, layer names, config values and error messages come from users:
        # escaped everywhere; only the figures' own markup is passed through as safe.
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_report(
    runs: Any,
    *,
    title: str | None = None,
    findings: Any = None,
    model: Any = None,
    data: Any = None,
    figures: Sequence[str] | None = None,
    predictions: Any = None,
) -> str:
    """The report as an HTML string; see `write_report` for the arguments."""
    items = _as_list(runs)
    sources = [as_source(run, i) for i, run in enumerate(items)]
    per_findings = _per_run(findings, len(sources), "findings", _flat_findings)
    models = _per_run(model, len(sources), "model", _one_model)
    preds = report_theory.check_predictions(
        _per_run(predictions, len(sources), "predictions", _one_prediction)
    )
    if any(m is not None for m in models) and data is None:
        raise ValueError("model= draws the decision surface and needs data=(x, y); got none")
    views = []
    for i, (source, given, net) in enumerate(zip(sources, per_findings, models)):
        view = build_view(source, i, given)
        names = figure_names(source.record, figures, net)
        view.figures = report_embed.draw(source.record, names, view.anchor, net, data)
        view.theory = report_theory.theory_view(preds[i], source.record, f"{view.anchor}t-")
        views.append(view)
    compare = _comparison_bars(views, sources) if len(views) > 1 else []
    page = (
        _environment()
        .get_template(TEMPLATE)
        .render(
            title=title or _title(views),
            runs=views,
            compare=compare,
            quantities=TABLE_QUANTITIES,
            version=__version__,
            created=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        )
    )
    return page


def write_report(
    runs: Any,
    out: str | Path,
    *,
    title: str | None = None,
    findings: Any = None,
    model: Any = None,
    data: Any = None,
    figures: Sequence[str] | None = None,
    predictions: Any = None,
) -> Path:
    """Write one self-contained HTML report of one run or several side by side.

    Args:
        runs: a run directory (str or Path) or a Record, or a list of them.
        out: the HTML file to write; parent directories are created.
        title: the page title; default "gradprobe report: <run names>".
        findings: per run, a list of Findings (a plain list for a single run); None
            reads RUN_DIR/findings.json when it is newer than the run's data, else runs
            `gp.diagnose`.
        model: a trained torch module (or one per run, None where absent) whose decision
            surface over `data` is drawn.
        data: (x, y) of a 2-D dataset: x array of shape (n_samples, 2), y of shape
            (n_samples,); needed with `model`.
        figures: figure names of `gradprobe.viz.figures` to draw for each run; default,
            every one the record can draw (`available(rec)`). The comparison of several
            runs draws its speed bars in any case.
        predictions: a gradprobe.theory.Prediction (or one per run, None for a run the
            theory does not cover): the run's section then shows predicted vs measured
            per-layer log-gain (`gradprobe.theory.compare`), as a table and a figure.

    Returns:
        the path written.

    Raises:
        FileNotFoundError, NotADirectoryError: a run directory is missing or holds no run.
        TypeError: a run is neither a path nor a Record; a prediction is not a Prediction.
        ValueError: findings, model or predictions not one per run; model without data;
            no runs.
    """
    page = render_report(
        runs,
        title=title,
        findings=findings,
        model=model,
        data=data,
        figures=figures,
        predictions=predictions,
    )
    return write_page(page, out)


def write_page(page: str, out: str | Path) -> Path:
    """Write an HTML page to `out` atomically (parents created); returns the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)  # a browser open on the old page never reads half a file
    return out
