"""`arcoseg models`: list and manage the model registry (versions, activation, rollback)."""

from __future__ import annotations

import argparse
from typing import Any, Callable

from arcoseg.commands.common import HelpFormatter, add_device_arguments, existing_path
from arcoseg.fileutil import expand_user
from arcoseg.io.outputs import output_path
from arcoseg.progress import Reporter
from arcoseg.ranges import WINDOW_BATCH
from arcoseg.registry import Registry, RegistryError
from arcoseg.registry.names import parse_ref

# The cli adds --progress to `models` itself; the actions accept it too so that it may also
# follow them (`arcoseg models list --progress json`). SUPPRESS keeps the cli's default.
_PROGRESS = argparse.ArgumentParser(add_help=False)
_PROGRESS.add_argument("--progress", choices=("text", "json", "none"), default=argparse.SUPPRESS,
                       help="text (default), json (JSON lines for programs) or none")
_SPEC_HELP = "NAME (its active version), NAME@VERSION, or a model folder"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `models` and its actions."""
    p = sub.add_parser("models", help="list and manage registered models and their versions",
                       description="The model registry ($ARCOSEG_HOME, default ~/.arcoseg): "
                                   "named models, each with immutable versions (imported base "
                                   "models and adapted versions) and one active version.",
                       formatter_class=HelpFormatter)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        return actions.add_parser(name, help=help_text, description=help_text,
                                  parents=[_PROGRESS], formatter_class=HelpFormatter)

    action("list", "list every model version: models by name, each newest first, the "
                   "active one marked")
    action("show", "show one model version: network, classes, provenance, registry fields"
           ).add_argument("spec", help=_SPEC_HELP)
    action("activate", "make a version the active one").add_argument("spec",
                                                                      help="NAME@VERSION")
    action("rollback", "re-activate the previously active version").add_argument(
        "name", help="model name")
    imp = action("import", "add a model folder or exported .zip as a new base version")
    imp.add_argument("path", type=existing_path, help="model folder or .zip archive")
    imp.add_argument("--name", help="model name (default: the folder or archive name)")
    exp = action("export", "copy a model version to a folder or a .zip archive")
    exp.add_argument("spec", help=_SPEC_HELP)
    exp.add_argument("dest", type=output_path, help="new folder, existing folder to copy into, or .zip")
    exp.add_argument("--with-history", action="store_true",
                     help="also export the training history (training/: metrics, options, "
                          "curves); by default only model.safetensors and model.json (which "
                          "holds the provenance)")
    check = action("check", "load a model and run it once on a blank batch of windows, as "
                            "segment would: says whether it works on this device and how long "
                            "loading and the first pass take; in `arcoseg serve` the model then "
                            "stays loaded and ready, so the next segment starts at once")
    check.add_argument("spec", help=_SPEC_HELP)
    check.add_argument("--batch", type=WINDOW_BATCH, default=8,
                       help="windows in the pass: the segment --batch it prepares for")
    add_device_arguments(check)
    rm = action("remove", "delete a version (NAME@VERSION) or a whole model (NAME)")
    rm.add_argument("spec", help="NAME@VERSION or NAME")
    rm.add_argument("--force", action="store_true",
                    help="also remove the active version or versions others were adapted from")
    return p


def run(args: argparse.Namespace, reporter: Reporter, stop: Callable[[], bool]) -> dict[str, Any]:
    """Carry out one registry action; the result always names the registry home."""
    registry = Registry()
    result = _ACTIONS[args.action](registry, args, reporter)
    return {"home": str(registry.home), **result}


def _list(registry: Registry, args: argparse.Namespace, reporter: Reporter) -> dict[str, Any]:
    versions = registry.list()
    reporter.show("\n".join(_list_line(v) for v in versions) or "No models registered yet.",
                  covers=["versions"])
    return {"versions": versions}


def _list_line(version: dict[str, Any]) -> str:
    """One version in `models list`'s text form (the result keeps every field)."""
    held_out = version.get("held_out")
    return (f"{'*' if version['active'] else ' '} {version['ref']:<28} {version['kind']:<8} "
            f"{version['created']}  parent {version['parent'] or '-'}  "
            f"{version.get('method', '')}"
            + (f"  {_held_out_text(held_out)}" if isinstance(held_out, dict) else ""))


def _held_out_text(held_out: dict[str, Any]) -> str:
    """A version's held-out check in words: 'held-out Dice 0.91 (parent 0.88, copy 0.80)'."""
    def dice(key: str) -> str | None:
        value = held_out.get(key)
        return f"{value:.2f}" if isinstance(value, (int, float)) else None

    if dice("adapted_dice") is None:
        return "no held-out check"
    rivals = [f"{label} {dice(key)}" for label, key in (("parent", "parent_dice"),
                                                         ("copy", "copy_dice")) if dice(key)]
    return f"held-out Dice {dice('adapted_dice')}" + (f" ({', '.join(rivals)})" if rivals else "")


def _show(registry: Registry, args: argparse.Namespace, reporter: Reporter) -> dict[str, Any]:
    return registry.show(args.spec)


def _activate(registry: Registry, args: argparse.Namespace, reporter: Reporter
              ) -> dict[str, Any]:
    name, version = parse_ref(args.spec)
    if version is None:
        current = registry.active(name)
        raise RegistryError(f"Say which version of {name} to activate, e.g. `arcoseg models "
                            f"activate {name}@VERSION` ({current} is active now).")
    return {"active": str(registry.activate(name, version))}


def _rollback(registry: Registry, args: argparse.Namespace, reporter: Reporter
              ) -> dict[str, Any]:
    return {"active": str(registry.rollback(args.name))}


def _import(registry: Registry, args: argparse.Namespace, reporter: Reporter) -> dict[str, Any]:
    ref = registry.import_model(args.path, name=args.name)
    return {"imported": str(ref), "path": str(registry.resolve(str(ref)))}


def _export(registry: Registry, args: argparse.Namespace, reporter: Reporter) -> dict[str, Any]:
    from arcoseg.fileutil import full_suffix
    from arcoseg.io.outputs import check_output_file, check_output_folder

    dest = expand_user(args.dest)  # a .zip file, else a folder (never 'x.tar.gz/')
    check_output_file(dest) if full_suffix(dest) == ".zip" else check_output_folder(dest)
    return {"exported": str(registry.export(args.spec, dest, with_history=args.with_history))}


def _check(registry: Registry, args: argparse.Namespace, reporter: Reporter) -> dict[str, Any]:
    import time

    from arcoseg.device import describe_device, resolve_device  # torch: only when run
    from arcoseg.inference import warm_up
    from arcoseg.modelfile import segmentation_plan
    from arcoseg.serve_cache import load_model  # kept loaded inside `arcoseg serve`

    device, start = resolve_device(args.device), time.perf_counter()
    folder = registry.resolve(args.spec)
    model, metadata = load_model(folder, device=device)
    loaded = time.perf_counter()
    warm_up(model, segmentation_plan(metadata, folder), metadata.network["in_channels"], device,
            batch_size=args.batch, amp=args.amp)
    return {"model": str(folder), "device": describe_device(device)["name"],
            "classes": [c["name"] for c in metadata.classes],
            "load_seconds": round(loaded - start, 3),
            "first_pass_seconds": round(time.perf_counter() - loaded, 3)}


def _remove(registry: Registry, args: argparse.Namespace, reporter: Reporter) -> dict[str, Any]:
    return {"removed": [str(ref) for ref in registry.remove(args.spec, force=args.force)]}


_ACTIONS = {"list": _list, "show": _show, "activate": _activate, "rollback": _rollback,
            "import": _import, "export": _export, "check": _check, "remove": _remove}
