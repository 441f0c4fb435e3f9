"""Console scripts: ``neuromosaic`` (the Hydra app) and ``neuromosaic-plugins``.

Start-up stays light: plugin discovery and config composition import no torch; the heavy parts
run in the trial harness's own processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from neuromosaic_core.errors import ConfigError, DuplicateComponentError, NeuromosaicError, run_console_script
from neuromosaic_core.plugins import PluginSystem

_SYSTEM: PluginSystem | None = None


def _die(message: str, code: int = 2) -> None:
    print(f"neuromosaic: error: {message}", file=sys.stderr)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """``neuromosaic [hydra flags] [key=value ...]``: run a search with the composed configuration."""
    from neuromosaic_core.config import preflight, register_config_nodes, split_args, with_env_overrides

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        system = PluginSystem.load()
    except DuplicateComponentError as exc:
        _die(str(exc))
        return
    for name, error in system.errors().items():
        print(f"neuromosaic: warning: plugin {name!r} failed to load and is ignored: {error}", file=sys.stderr)
    register_config_nodes(system)
    args = with_env_overrides(args)
    overrides, check = split_args(args)
    if check:
        # `--cfg job` only prints the config: the database is checked only for a run, where a
        # missing folder or a dead server must stop it before Hydra makes the run directory.
        runs = not any(a in ("--cfg", "-c") or a.startswith("--cfg=") for a in args)
        try:
            preflight(overrides, system, storage=runs)
        except NeuromosaicError as exc:
            _die(str(exc), exc.exit_code)
    global _SYSTEM
    _SYSTEM = system
    sys.argv = [sys.argv[0] if sys.argv else "neuromosaic", *args]
    _hydra_app()()


def _hydra_app() -> Any:
    import hydra

    @hydra.main(config_path="pkg://neuromosaic_core.conf", config_name="config", version_base=None)
    def neuromosaic(cfg: Any) -> None:
        assert _SYSTEM is not None
        run_search(cfg, _SYSTEM)

    return neuromosaic


def run_search(cfg: Any, system: PluginSystem) -> dict[str, Any] | None:
    """One Hydra job: check the config, build the components, run the search, print the results."""
    debug = bool(cfg.get("debug", False)) if hasattr(cfg, "get") else False
    try:
        return _run_search(cfg, system)
    except NeuromosaicError as exc:
        if exc.exit_code == 0:
            return None
        _die(str(exc), exc.exit_code)
    except (KeyboardInterrupt, asyncio.CancelledError):
        _die("interrupted; finished trials are stored: run the same command again to resume", 130)
    except Exception as exc:
        if debug:
            raise
        _die(f"unexpected {type(exc).__name__}: {exc} (rerun with debug=true for the traceback)", 1)
    return None


def _run_search(cfg: Any, system: PluginSystem) -> dict[str, Any] | None:
    from hydra.core.hydra_config import HydraConfig
    from loguru import logger
    from rich.console import Console

    from neuromosaic_core.alerts import start_alerts, stop_alerts
    from neuromosaic_core.config import resolve
    from neuromosaic_core.constraints import check_fits_task
    from neuromosaic_core.display import print_summary
    from neuromosaic_core.logs import configure_logging
    from neuromosaic_core.orchestrator import ExperimentAlreadyDone, Orchestrator
    from neuromosaic_core.trackers import start_trackers, stop_trackers

    resolved = resolve(cfg, system)
    core = resolved.core
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    configure_logging(core.log.level, core.log.json, run_dir / "neuromosaic.log")
    components = build_components(resolved, system)
    try:
        if getattr(components.runner, "needs_code", True):  # a runner that looks results up builds nothing
            check_fits_task(components.encoder, components.task.input_shape, components.task.num_classes,
                            resolved.component("encoder").name, resolved.component("task").name)
        components.codegen.preflight()
    except NeuromosaicError:
        components.codegen.close()
        components.storage.close()
        raise
    orchestrator = Orchestrator(core, components, run_dir, hook=system.pm.hook, config=resolved.raw,
                                show_progress=not core.log.json)
    console = Console(width=None if sys.stdout.isatty() else 160)  # a log file gets the whole table
    # Alerts watch the search as an observer plugin, delivering on threads of their own.
    alerts = start_alerts(resolved.alerts, system, components)
    trackers = None
    try:
        # Experiment trackers (trackers=[mlflow]) likewise, each recording on a thread of its own.
        trackers = start_trackers(resolved.trackers, system)
        summary = asyncio.run(orchestrator.run(resolved.settings("runner")))
    except ExperimentAlreadyDone as exc:
        logger.bind(experiment=core.experiment.name).info(str(exc))
        summary = orchestrator.finalize()
    finally:
        stop_trackers(trackers, system)
        stop_alerts(alerts, system, sys.exc_info()[1])
        components.codegen.close()
        components.storage.close()
    print_summary(getattr(orchestrator, "top", []), core.search.metric,
                  f"Best architectures of {core.experiment.name} ({summary['trials']['completed']} completed"
                  + (f" of which {summary['trials']['pruned']} pruned" if summary['trials'].get('pruned') else "")
                  + f", {summary['trials']['failed']} failed, {summary['trials']['invalid']} invalid)", console)
    console.print(f"results: {run_dir / 'summary.json'}")
    if summary.get("stopped") == "max_failures":
        raise NeuromosaicError("the search stopped after search.max_failures consecutive failures; see the log above")
    return summary


def build_components(resolved: Any, system: PluginSystem) -> Any:
    """Instantiate the selected components with their checked settings.

    The code generator is built first. A strategy registered with the metadata ``uses_llm=True``
    also gets ``system=`` and, when the selected code generator is an
    :class:`~neuromosaic_core.interfaces.LLMProvider` and the strategy's ``provider`` setting is
    empty or names it, ``provider=`` that very instance: one model, with the user's
    ``codegen.*`` settings, writes the code and proposes the architectures.
    """
    from neuromosaic_core.interfaces import LLMProvider
    from neuromosaic_core.orchestrator import Components

    def make(kind: str, **kwargs: Any) -> Any:
        component, settings = resolved.components[kind]
        return component.factory(settings=settings, **kwargs)

    core = resolved.core
    encoder = make("encoder")
    codegen_name = resolved.component("codegen").name
    codegen = make("codegen")
    fallback = None
    if codegen_name != "template" and "template" in system.names("codegen"):
        template = system.get("codegen", "template")
        fallback = template.factory(settings=template.default_settings())
    strategy_kwargs: dict[str, Any] = {}
    if resolved.component("strategy").metadata.get("uses_llm"):
        strategy_kwargs["system"] = system
        wanted = getattr(resolved.settings("strategy"), "provider", "") or ""
        if wanted in ("", codegen_name) and isinstance(codegen, LLMProvider):
            strategy_kwargs["provider"] = codegen
    runner = make("runner")
    check_trust = getattr(runner, "check_code_trust", None)  # a runner that may lack a sandbox says whether it runs this code
    if check_trust is not None:
        try:
            check_trust(codegen, codegen_name)
        except NeuromosaicError:
            codegen.close()
            raise
    meta = None
    if resolved.meta is not None:
        meta_component, meta_settings = resolved.meta
        meta = meta_component.factory(space=encoder.search_space(), seed=core.experiment.seed, settings=meta_settings,
                                      metric=core.search.metric, maximize=core.search.direction == "maximize")
    task = make("task")
    scheduler = None
    if resolved.scheduler is not None:
        scheduler_component, scheduler_settings = resolved.scheduler
        if not getattr(runner, "needs_code", True):
            codegen.close()
            raise ConfigError(f"scheduler={scheduler_component.name} needs a runner that trains; "
                              f"runner={resolved.component('runner').name} looks results up (drop scheduler=...)")
        regression = getattr(task, "kind", "classification") == "regression"  # the learning curve's score
        scheduler = scheduler_component.factory(settings=scheduler_settings, max_epochs=core.training.epochs,
                                                metric="val_rmse" if regression else "val_accuracy", maximize=not regression)
    return Components(
        strategy=make("strategy", space=encoder.search_space(), seed=core.experiment.seed, metric=core.search.metric,
                      maximize=core.search.direction == "maximize", **strategy_kwargs),
        encoder=encoder,
        codegen=codegen,
        codegen_name=codegen_name,
        fallback=fallback,
        runner=runner,
        storage=_encrypted(make("storage"), core.encryption),
        task=task,
        task_settings=resolved.settings("task"),
        visualizers=[(c.name, c.factory(settings=s)) for c, s in resolved.visualizers],
        meta=meta,
        meta_settings=resolved.meta[1] if resolved.meta is not None else None,
        scheduler=scheduler,
    )


def _encrypted(storage: Any, settings: Any) -> Any:
    """The storage, behind encryption at rest: sealing what it writes when ``encryption.enabled``,
    and always opening what it reads (a stored value carries its key's fingerprint)."""
    from neuromosaic_core.encryption import EncryptedResultsDB, Keyring

    try:
        return EncryptedResultsDB(storage, Keyring.from_environment(settings.key_file), encrypt=settings.enabled)
    except NeuromosaicError:
        storage.close()
        raise


def plugins_main(argv: list[str] | None = None) -> None:
    """``neuromosaic-plugins [--json]``: list installed plugins; exit 1 when one fails to load."""
    parser = argparse.ArgumentParser(prog="neuromosaic-plugins", description="List Neuromosaic plugins and what they register.")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    args = parser.parse_args(argv)
    try:
        system = PluginSystem.load()
    except DuplicateComponentError as exc:
        print(f"neuromosaic-plugins: error: {exc}", file=sys.stderr)
        sys.exit(1)
    listing = system.listing()
    if args.json:
        print(json.dumps(listing, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="Neuromosaic plugins")
        for column in ("plugin", "distribution", "version", "components", "hooks"):
            table.add_column(column)
        for p in listing:
            comps = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(p["components"].items()))
            table.add_row(p["name"], p["distribution"] or "-", p["version"] or "-",
                          f"[red]failed: {p['error']}[/red]" if p["error"] else comps, ", ".join(p["hooks"]))
        Console().print(table)
    sys.exit(1 if system.errors() else 0)


def results_main(argv: list[str] | None = None) -> None:
    """``neuromosaic-results [--url URL] COMMAND ...``: query, export and back up stored results."""
    from neuromosaic_core.results import build_parser, run_command

    args = build_parser().parse_args(argv)
    # `neuromosaic-results export ... | head`: the reader left, nothing to report (BrokenPipeError)
    run_console_script("neuromosaic-results", lambda: run_command(args), quiet=(BrokenPipeError,))
