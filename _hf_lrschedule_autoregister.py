"""Registers `linear_refined` with transformers as soon as transformers' own modules load (stdlib only).

Installed with hf_lrschedule, `hf_lrschedule.pth` imports this module at interpreter start, so a stock training
script that never imports hf_lrschedule still accepts `--lr_scheduler_type linear_refined` and can unpickle a
`training_args.bin` that names it. It costs one dict lookup per import until transformers loads. Set
HF_LRSCHEDULE_AUTOREGISTER=0 to switch it off (then `import hf_lrschedule` registers instead).

The hook never raises into an import: if registration fails (a transformers or Python it does not know, a broken
install), transformers imports and works without `linear_refined` and one `RegistrationWarning` says what failed and
how to switch the hook off. Only under `hf-lrschedule pilot` (either phase) is a failure an error, so that a pilot
can neither silently run the full budget nor run its full phase without the refined schedule.

The enum is extended right after `transformers.trainer_utils` executes (before any HfArgumentParser can freeze
its choices) and the factory is added right after `transformers.optimization` executes; each hook imports only
what has already loaded, so no import cycle can form.
"""

from __future__ import annotations

import importlib.abc
import os
import sys

ENV_SWITCH = "HF_LRSCHEDULE_AUTOREGISTER"
_HOOKS = {
    "transformers.trainer_utils": ("hf_lrschedule.integrations.transformers", "extend_scheduler_type"),
    "transformers.optimization": ("hf_lrschedule.integrations.transformers", "register_scheduler_function"),
    # a linear_refined Trainer gets its recorder, schedule report and health checks; under `hf-lrschedule pilot`,
    # each Trainer gets its phase (the pilot records and stops early)
    "transformers.trainer": ("hf_lrschedule.integrations.trainer_patch", "patch_trainer"),
}
CALLBACKS_SWITCH = "HF_LRSCHEDULE_CALLBACKS"


class RegistrationWarning(UserWarning):
    """`linear_refined` could not be registered; transformers works as without hf_lrschedule."""


_failed = False


def _run_hook(module_name: str) -> None:
    """Run the hook of `module_name`. It never raises into the import, except in a pilot, which must fail loudly."""
    global _failed
    protocol, phase = _pilot_phase()
    if module_name == "transformers.trainer" and phase is None and not _callbacks_enabled():
        return  # nothing to patch: keep the import of transformers.trainer untouched
    if _failed and phase is None:
        return  # one warning per process is enough; the other hooks would fail the same way
    module, function = _HOOKS[module_name]
    try:
        import importlib

        getattr(importlib.import_module(module), function)()
    except Exception as error:  # whatever breaks, the user's `import transformers` must not
        _failed = True
        message = _failure_message(module_name, error)
        if phase is not None:  # either phase of a pilot must fail loudly, never train on the wrong schedule
            protocol.report_error(message)  # where `hf-lrschedule pilot` reads a child's error
            raise
        import warnings

        warnings.warn(message, RegistrationWarning, stacklevel=2)


_protocol = None


def _pilot_phase():
    """The pilot's protocol module and this process's phase ("pilot", "full" or None).

    `hf_lrschedule/pilot/protocol.py` (stdlib only) is loaded by its path, without importing the package, which may
    be what is broken; (None, None) only if even that file cannot be read."""
    global _protocol
    try:
        if _protocol is None:
            import importlib.util

            package = importlib.util.find_spec("hf_lrschedule")
            path = os.path.join(package.submodule_search_locations[0], "pilot", "protocol.py")
            spec = importlib.util.spec_from_file_location("_hf_lrschedule_pilot_protocol", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
            spec.loader.exec_module(module)
            _protocol = module
        return _protocol, _protocol.current_phase().name
    except Exception:  # noqa: BLE001
        return None, None


def _failure_message(module_name: str, error: Exception) -> str:
    try:
        from importlib.metadata import version

        transformers_version = version("transformers")
    except Exception:  # noqa: BLE001
        transformers_version = "unknown"
    if module_name == "transformers.trainer":
        return (
            f"hf_lrschedule could not patch transformers' Trainer ({type(error).__name__}: {error}; Python "
            f"{sys.version.split()[0]}, transformers {transformers_version}). Training works normally, but linear_refined "
            "runs get no automatic gradient-norm recorder, schedule report or health checks. Please report this at the "
            f"hf_lrschedule issue tracker; to stop the patch, set {CALLBACKS_SWITCH}=0."
        )
    return (
        f"hf_lrschedule could not register 'linear_refined' while {module_name} was imported "
        f"({type(error).__name__}: {error}; Python {sys.version.split()[0]}, transformers {transformers_version}). "
        "transformers works normally, without the 'linear_refined' scheduler type. Please report this at the "
        f"hf_lrschedule issue tracker; to switch the start-up hook off, set {ENV_SWITCH}=0."
    )


class _RegisteringLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, name: str):
        self._loader = loader
        self._name = name

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        _run_hook(self._name)

    def __getattr__(self, attribute):  # get_source, get_filename, ... for tools that inspect the loader
        return getattr(self._loader, attribute)


class _RegisteringFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in _HOOKS:
            return None
        try:
            return self._wrapped_spec(fullname, path, target)
        except Exception:  # noqa: BLE001 - let the normal finders import it (and raise their own errors, if any)
            return None

    def _wrapped_spec(self, fullname, path, target):
        spec = None
        for finder in sys.meta_path:  # whichever finder would have loaded it (path, editable installs, zip)
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _RegisteringLoader(spec.loader, fullname)
        return spec


def _callbacks_enabled() -> bool:
    return os.environ.get(CALLBACKS_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def install() -> None:
    """Install the import hook once; run the hooks of transformers modules that are already loaded."""
    if not any(isinstance(finder, _RegisteringFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisteringFinder())
    for name in _HOOKS:
        module = sys.modules.get(name)
        # A module still executing (we are inside its import chain) gets its hook when its loader finishes.
        if module is not None and not getattr(getattr(module, "__spec__", None), "_initializing", False):
            _run_hook(name)


if enabled():
    try:
        install()
    except Exception as _error:  # noqa: BLE001 - runs inside site.py at interpreter start: never break it
        import warnings

        warnings.warn(_failure_message("interpreter start-up", _error), RegistrationWarning, stacklevel=1)
