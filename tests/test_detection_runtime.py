"""Runtime selection: LiteRT first, tflite-runtime fallback, one clear error when neither imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from doorkeep.device.detect.runtime import RUNTIME_CHOICES, load_runtime
from doorkeep.device.errors import DetectError, RuntimeMissingError

# Block both runtime packages in a fresh interpreter, whatever is installed, and show the error the user sees.
_BLOCK_BOTH = textwrap.dedent("""
    import sys
    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("ai_edge_litert", "tflite_runtime"):
                raise ImportError(f"No module named {name!r} (blocked by the test)")
            return None
    sys.meta_path.insert(0, _Block())
    from doorkeep.device.detect.runtime import load_runtime
    from doorkeep.device.errors import RuntimeMissingError
    try:
        load_runtime(RUNTIME)
    except RuntimeMissingError as exc:
        print("MISSING:", exc)
    """)


@pytest.mark.parametrize("runtime", ["auto", "litert", "tflite"])
def test_missing_runtime_names_both_packages(runtime):
    out = subprocess.run([sys.executable, "-c", _BLOCK_BOTH.replace("RUNTIME", repr(runtime))], capture_output=True,
                         text=True, check=True).stdout
    assert out.startswith("MISSING:"), out
    for needle in ("ai-edge-litert", "tflite-runtime", "numpy<2", "armv7l", "32-bit"):
        assert needle in out, (needle, out)


def test_missing_runtime_error_is_an_import_error_and_a_detect_error():
    assert issubclass(RuntimeMissingError, ImportError)
    assert issubclass(RuntimeMissingError, DetectError)


def test_unknown_runtime_name_is_refused():
    with pytest.raises(ValueError, match="auto"):
        load_runtime("onnx")
    assert RUNTIME_CHOICES == ("auto", "litert", "tflite")


@pytest.mark.detection
def test_auto_loads_a_runtime_and_reports_it():
    info = load_runtime("auto")
    assert info.name in ("ai_edge_litert", "tflite_runtime")
    assert info.version and info.version != "unknown"
    assert str(info).startswith(info.name)


@pytest.mark.detection
def test_interpreter_runs_the_real_model(model_path):
    import numpy as np
    from doorkeep.device.detect.runtime import open_interpreter

    it = open_interpreter(model_path, threads=1)
    assert it.input_shape == (1, 224, 224, 3) and it.input_dtype == np.float32
    it.set_input(np.zeros((1, 224, 224, 3), np.float32))
    it.invoke()
    assert it.output(0).shape == (1, 2254, 12) and it.output(1).shape == (1, 2254, 1)


@pytest.mark.detection
def test_missing_delegate_is_a_clear_error(model_path):
    from doorkeep.device.detect.runtime import open_interpreter

    with pytest.raises(DetectError, match="delegate"):
        open_interpreter(model_path, delegate="/nonexistent/libedgetpu.so.1")


def test_runtime_that_imports_but_cannot_run_is_a_runtime_error(monkeypatch, tmp_path):
    """tflite-runtime under numpy 2 imports fine, then Interpreter() fails with SystemError (_ARRAY_API not found)."""
    import types

    from doorkeep.device.detect import runtime

    fake = types.ModuleType("fake_rt.interpreter")

    def _broken(**kw):
        raise SystemError("returned a result with an exception set (_ARRAY_API not found)")

    fake.Interpreter = _broken  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_rt", types.ModuleType("fake_rt"))
    monkeypatch.setitem(sys.modules, "fake_rt.interpreter", fake)
    monkeypatch.setitem(runtime.RUNTIMES, "tflite", ("fake_rt", "fake_rt.interpreter", "fake-rt"))
    with pytest.raises(RuntimeMissingError, match=r"installed but cannot create an interpreter.*numpy<2"):
        runtime.open_interpreter(tmp_path / "m.tflite", runtime="tflite")
