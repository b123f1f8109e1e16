"""One error tree: every error doorkeep raises on purpose is a DoorkeepError, and no refusal is an OSError.

The first test reads every module of the package (AST) and resolves what each ``raise`` names, so a new
``raise ValueError(...)`` (or a third-party exception raised on purpose) anywhere fails the suite.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import importlib
import inspect
import pkgutil
import typing
from pathlib import Path

import pytest
from doorkeep.device.errors import DoorkeepError
from doorkeep.tools.demo import Interrupted

PACKAGES = ("doorkeep.device", "doorkeep.provisioning", "doorkeep.tools")
# Allowed outside the tree: the marker of an interface method a subclass must override, argparse's protocol for
# a ``type=`` converter (argparse turns it into a usage error naming the option), and the KeyboardInterrupt raised by a
# signal handler so SIGHUP/SIGTERM take Ctrl-C's clean-up path (tools/demo.py ``interrupted_by``: ``Interrupted``).
ALLOWED = {NotImplementedError, argparse.ArgumentTypeError, KeyboardInterrupt, Interrupted}
# A timeout is an I/O condition (socket.timeout is a TimeoutError too); nothing else in the tree may be an OSError.
OSERROR_ALLOWED = {"PublishTimeout", "ConsoleTimeout", "ChannelTimeout"}


def _modules() -> list[object]:
    mods = []
    for pkg_name in PACKAGES:
        pkg = importlib.import_module(pkg_name)
        mods.append(pkg)
        for info in pkgutil.walk_packages(pkg.__path__, pkg_name + "."):
            mods.append(importlib.import_module(info.name))
    return mods


def _imported_names(tree: ast.Module, module: str, is_pkg: bool) -> dict[str, tuple[str, str]]:
    """Names bound by any ``from X import Y`` in the file (top level or local): name -> (absolute module, attr)."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                anchor = parts if is_pkg else parts[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                out[alias.asname or alias.name] = (base, alias.name)
    return out


def _resolve(expr: ast.expr, mod: object, imported: dict[str, tuple[str, str]]) -> object | None:
    """The object a raise names (``Foo``, ``Foo(...)``, ``errors.Foo(...)``), or None for a variable (a re-raise)."""
    if isinstance(expr, ast.Call):
        expr = expr.func
    chain: list[str] = []
    while isinstance(expr, ast.Attribute):
        chain.insert(0, expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return None
    name = expr.id
    if name in vars(mod):
        obj = vars(mod)[name]
    elif name in imported:
        src, attr = imported[name]
        obj = getattr(importlib.import_module(src), attr, None)
    elif hasattr(builtins, name):
        obj = getattr(builtins, name)
    else:
        return None  # a local variable: re-raising something caught
    for attr in chain:
        obj = getattr(obj, attr, None)
    if inspect.isfunction(obj):  # ``raise _bad(...)``: a helper that builds the exception
        obj = typing.get_type_hints(obj).get("return")
    return obj


def _raises() -> list[tuple[str, int, object]]:
    found = []
    for mod in _modules():
        path = Path(inspect.getfile(mod))  # type: ignore[arg-type]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = _imported_names(tree, mod.__name__, path.name == "__init__.py")  # type: ignore[attr-defined]
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and node.exc is not None:
                obj = _resolve(node.exc, mod, imported)
                if obj is not None:
                    found.append((f"{mod.__name__}:{node.lineno}", node.lineno, obj))  # type: ignore[attr-defined]
    return found


def test_every_raise_in_the_package_is_a_doorkeep_error() -> None:
    raises = _raises()
    assert len(raises) > 100  # the walk really found the package's raises
    bad = [f"{where}: raises {getattr(obj, '__name__', obj)}" for where, _, obj in raises
           if not (inspect.isclass(obj) and issubclass(obj, DoorkeepError)) and obj not in ALLOWED]
    assert not bad, "raise a DoorkeepError leaf (device/errors.py) instead:\n" + "\n".join(bad)


def _tree() -> list[type[DoorkeepError]]:
    _modules()  # every class defined anywhere in the package is now a subclass on record
    seen: list[type[DoorkeepError]] = []
    todo: list[type[DoorkeepError]] = [DoorkeepError]
    while todo:
        cls = todo.pop()
        if cls not in seen:
            seen.append(cls)
            todo.extend(cls.__subclasses__())
    return seen


def test_no_error_of_the_tree_is_an_oserror_but_timeouts() -> None:
    tree = _tree()
    assert len(tree) > 30
    oserrors = sorted(c.__name__ for c in tree if issubclass(c, OSError))
    assert set(oserrors) <= OSERROR_ALLOWED, f"only timeouts may be OSErrors (never a refusal): {oserrors}"


@pytest.mark.parametrize("name", ["ReleaseError", "ProvisionRefused", "BadSignature", "PairingMismatch",
                                  "StaleCounter", "WrongDevice", "UnsafePermissions", "PublishRefused",
                                  "PayloadError", "FormatError", "PassphraseError", "HashMismatchError"])
def test_refusals_are_not_caught_by_an_io_handler(name: str) -> None:
    cls = {c.__name__: c for c in _tree()}[name]
    assert not issubclass(cls, OSError)
    assert issubclass(cls, DoorkeepError)


def test_a_forged_grant_is_not_an_io_error(tmp_path: Path) -> None:
    """A real refusal: ``except OSError`` around a release must not swallow a grant signed by someone else."""
    import nacl.public
    from doorkeep.device.errors import ReleaseError
    from doorkeep.device.vault.grants import ReplaySet, check_grant, issue_grant
    from doorkeep.device.vault.keys import SecretKeys

    owner, thief = SecretKeys.generate("owner"), SecretKeys.generate("owner")
    recipient = SecretKeys.generate("recipient")
    sealed = nacl.public.SealedBox(thief.public.box_key).encrypt(bytes(32))
    grant = issue_grant(thief, device_id="dk-test", sealed_keys={"clip1": sealed}, recipient=recipient.public,
                        recipient_name="R", purpose="p", requester="q").to_bytes()
    with pytest.raises(ReleaseError) as info:
        try:
            check_grant(grant, owner=owner.public, device_id="dk-test", existing=["clip1"],
                        replay=ReplaySet(tmp_path / "replay"))
        except OSError:  # what an I/O handler around a release looks like
            pytest.fail("a forged grant was caught as an I/O error")
    assert info.value.reason == "bad_signature", info.value
