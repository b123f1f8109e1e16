"""The TFLite interpreter, from whichever runtime is installed: ai-edge-litert first, tflite-runtime as fallback.

Both packages expose the same ``Interpreter`` class; this module picks one, once, and reports which. Neither has
armv7l (32-bit Raspberry Pi OS) wheels on PyPI, and tflite-runtime only works with numpy<2, so a missing runtime
raises one :class:`RuntimeMissingError` that says all of that.

Example::

    interp = open_interpreter(Path("pose_detection.tflite"), runtime="auto", threads=2)
    print(interp.runtime.name, interp.runtime.version)
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.metadata
import os
import platform
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DetectError, InvalidArgument, ModelError, RuntimeMissingError

#: Config value -> (import name, interpreter module, distribution name), in "auto" preference order.
RUNTIMES: dict[str, tuple[str, str, str]] = {
    "litert": ("ai_edge_litert", "ai_edge_litert.interpreter", "ai-edge-litert"),
    "tflite": ("tflite_runtime", "tflite_runtime.interpreter", "tflite-runtime"),
}
RUNTIME_CHOICES = ("auto", *RUNTIMES)


@dataclass(frozen=True, slots=True)
class RuntimeInfo:
    """Which runtime was loaded: ``name`` is the import name (``ai_edge_litert``/``tflite_runtime``)."""

    name: str
    version: str
    module: Any

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


def _missing_message(errors: list[str], *, lead: str = "no TFLite runtime could be imported") -> str:
    machine = platform.machine()
    msg = (
        f"{lead}. Install one of: "
        "`pip install ai-edge-litert` (the default; works with numpy 1.x and 2.x), or "
        "`pip install tflite-runtime 'numpy<2'` (the fallback; needs numpy<2, Python <= 3.11, and is the one that "
        "loads a Coral Edge TPU delegate). Neither package has wheels for armv7l (32-bit Raspberry Pi OS): use the "
        f"64-bit OS. This machine: {machine}, numpy {np.__version__}."
    )
    if errors:
        msg += " Import errors: " + "; ".join(errors)
    return msg


#: Signals whose Python handlers stop a command (Ctrl-C, a hang-up, a kill): held back while a native runtime imports.
STOP_SIGNALS: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def stop_signals_deferred() -> Iterator[None]:
    """Run a stop signal's Python handler after the block, not inside it.

    ai-edge-litert's pybind11 module turns any exception raised while it initialises (a KeyboardInterrupt from
    Ctrl-C, or from doorkeep demo's hang-up handler) into an ImportError, and a retry then fails with "already
    registered": the stop would read as "no TFLite runtime". Only the handlers are swapped (a signal mask is per
    thread, and CPython runs handlers on the main thread whichever thread the kernel picked).
    """
    if threading.current_thread() is not threading.main_thread():  # handlers can only be set (and run) there
        yield
        return
    caught: list[int] = []
    old: dict[int, Any] = {}
    try:
        for sig in STOP_SIGNALS:
            if callable(signal.getsignal(sig)):  # SIG_DFL/SIG_IGN run no Python code: leave them be
                old[sig] = signal.signal(sig, lambda signum, _frame: caught.append(signum))
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(caught):  # now, through the command's own handler
            signal.raise_signal(sig)


def load_runtime(runtime: str = "auto") -> RuntimeInfo:
    """Import the interpreter module of ``runtime`` (``auto``, ``litert`` or ``tflite``).

    Raises:
        RuntimeMissingError: the requested runtime (or, for ``auto``, both) cannot be imported.
        ValueError: ``runtime`` is not one of :data:`RUNTIME_CHOICES`.
    """
    if runtime not in RUNTIME_CHOICES:
        raise InvalidArgument(f"runtime {runtime!r} must be one of {', '.join(RUNTIME_CHOICES)}")
    keys = list(RUNTIMES) if runtime == "auto" else [runtime]
    errors: list[str] = []
    for key in keys:
        name, mod_name, dist = RUNTIMES[key]
        try:
            with stop_signals_deferred():
                mod = importlib.import_module(mod_name)
        except Exception as exc:  # noqa: BLE001 - a broken install is "missing" too; the message keeps the cause
            errors.append(f"{dist}: {type(exc).__name__}: {exc}")
            continue
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            version = str(getattr(importlib.import_module(name), "__version__", "unknown"))
        return RuntimeInfo(name=name, version=version, module=mod)
    raise RuntimeMissingError(_missing_message(errors))


#: What the runtimes' C++ code prints on stderr for every interpreter it creates: noise on every command.
NATIVE_NOISE = (b"Created TensorFlow Lite XNNPACK delegate",)


@contextmanager
def filtered_native_stderr(drop: tuple[bytes, ...] = NATIVE_NOISE) -> Iterator[None]:
    """Hold back file descriptor 2 while the native runtime builds an interpreter, then replay it minus ``drop``.

    The runtime writes from C++, below Python's ``sys.stderr``, so only the fd can catch it. Nothing else is lost:
    whatever any thread writes to stderr meanwhile (a log line) is written afterwards, in order. Used only around
    interpreter creation (milliseconds), never around inference.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable stderr (a daemon): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held:
                if not any(d in line for d in drop):
                    os.write(2, line)


def int8_is_slow(runtime: str = "auto") -> bool:
    """True where full-int8 models run far slower than float ones: tflite-runtime on x86_64 (its quantized kernels
    are not XNNPACK's; measured ~100x slower than ai-edge-litert here). On aarch64 (a Pi) both runtimes run int8
    through XNNPACK/ruy, faster than float."""
    try:
        info = load_runtime(runtime)
    except RuntimeMissingError:
        return False
    return info.name == "tflite_runtime" and platform.machine().lower() in ("x86_64", "amd64")


class Interpreter:
    """A loaded model: thin wrapper over the runtime's interpreter with the input/output tensors resolved once.

    ``input`` is a view of the model's input tensor only valid until the next ``invoke``; write into it with
    :meth:`set_input` (one copy into the runtime's own buffer).
    """

    def __init__(self, raw: Any, runtime: RuntimeInfo, *, delegate: str | None) -> None:
        self._raw = raw
        self.runtime = runtime
        self.delegate = delegate
        raw.allocate_tensors()
        self.input_details = raw.get_input_details()
        self.output_details = raw.get_output_details()
        self._in_index = int(self.input_details[0]["index"])
        self._out_indices = [int(d["index"]) for d in self.output_details]
        self.input_shape = tuple(int(s) for s in self.input_details[0]["shape"])
        self.input_dtype = np.dtype(self.input_details[0]["dtype"])

    def set_input(self, array: np.ndarray) -> None:
        self._raw.set_tensor(self._in_index, array)

    def invoke(self) -> None:
        self._raw.invoke()

    def output(self, i: int) -> np.ndarray:
        """Output tensor ``i`` (a copy owned by the caller, as the runtime returns it)."""
        return self._raw.get_tensor(self._out_indices[i])  # type: ignore[no-any-return]

    @property
    def output_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(int(s) for s in d["shape"]) for d in self.output_details]


def open_interpreter(
    model_path: Path, *, runtime: str = "auto", threads: int = 2, delegate: str | None = None
) -> Interpreter:
    """Load ``model_path`` into an interpreter of the chosen runtime.

    ``delegate`` is a shared-library path (e.g. ``libedgetpu.so.1`` for a Coral Edge TPU) loaded with the runtime's
    ``load_delegate``; with a delegate, ``auto`` prefers tflite-runtime (whose delegate ABI libedgetpu targets).

    Raises:
        RuntimeMissingError: no runtime importable.
        ModelError: the runtime refused the model file.
        DetectError: the delegate could not be loaded.
    """
    if delegate and runtime == "auto":
        try:
            info = load_runtime("tflite")
        except RuntimeMissingError:
            info = load_runtime("auto")
    else:
        info = load_runtime(runtime)
    kwargs: dict[str, Any] = {"model_path": str(model_path), "num_threads": int(threads)}
    if delegate:
        try:
            # Probe the library first: a failed load_delegate leaves an object whose __del__ raises.
            ctypes.CDLL(delegate)
            kwargs["experimental_delegates"] = [info.module.load_delegate(delegate)]
        except (ValueError, OSError, RuntimeError) as exc:
            raise DetectError(f"could not load the delegate {delegate!r} with {info}: {exc}") from exc
    try:
        with filtered_native_stderr():
            raw = info.module.Interpreter(**kwargs)
            return Interpreter(raw, info, delegate=delegate)
    except (ImportError, AttributeError, SystemError) as exc:
        # tflite-runtime imports under numpy 2 but fails here ("_ARRAY_API not found").
        lead = f"{info} is installed but cannot create an interpreter with numpy {np.__version__}"
        raise RuntimeMissingError(_missing_message([f"{type(exc).__name__}: {exc}"], lead=lead)) from exc
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"{info} could not load the model {model_path}: {exc}") from exc
