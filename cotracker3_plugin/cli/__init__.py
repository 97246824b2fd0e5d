"""`cotracker3 …`: one thin entry point, one module per subcommand.

Each subcommand module defines a ``Config`` dataclass (its field docstrings are the
``--help`` text, via tyro) and ``run(cfg) -> int | None``. Modules are imported only
when their subcommand is called, so ``cotracker3 --help`` stays fast and the viewer
and nerfstudio integrations stay optional.
"""

from __future__ import annotations

import importlib
import logging
import sys

#: name -> (module, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("cotracker3_plugin.cli.run", "The main job: video -> tracks -> cameras -> points -> nerfstudio dataset."),
    "track": ("cotracker3_plugin.cli.track", "Track points through a video (tracks.npz, overlay mp4, summary)."),
    "reconstruct": ("cotracker3_plugin.cli.reconstruct", "Track, then estimate cameras and 3D points with pycolmap."),
    "view": ("cotracker3_viser.cli", "Open an output folder in the viser web viewer."),
    "train": ("cotracker3_plugin.cli.train", "Supervised training on synthetic or Kubric ground truth."),
    "finetune": ("cotracker3_plugin.cli.finetune", "Pseudo-label fine-tuning on real videos."),
    "evaluate": ("cotracker3_plugin.cli.evaluate", "TAP-Vid / BADJA evaluation of a model."),
    "make-benchmark": ("cotracker3_plugin.cli.make_benchmark", "Make a TAP-Vid-format benchmark from real images."),
}


def _usage() -> str:
    lines = ["usage: cotracker3 COMMAND [--help] [ARGS...]", "", "commands:"]
    width = max(len(n) for n in COMMANDS)
    lines += [f"  {name:<{width}}  {desc}" for name, (_, desc) in COMMANDS.items()]
    lines += ["", "Run `cotracker3 COMMAND --help` for the flags of a command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the process exit code."""
    import tyro

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"cotracker3: unknown command {name!r}.\n\n{_usage()}", file=sys.stderr)
        return 2
    verbose = "--verbose" in rest
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        module = importlib.import_module(COMMANDS[name][0])
    except ImportError as e:
        print(f"cotracker3 {name}: a dependency is missing ({e}). Install the extras: "
              "pip install -c constraints.txt 'cotracker3-plugin[all]'", file=sys.stderr)
        return 2
    from cotracker3_plugin.cli._common import run_reporting_errors

    def call() -> int | None:
        cfg = tyro.cli(module.Config, args=rest, prog=f"cotracker3 {name}", description=module.__doc__)
        return module.run(cfg)

    return run_reporting_errors(call, verbose=verbose)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
