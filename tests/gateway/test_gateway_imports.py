"""A gateway process loads what it routes with, not what miners serve or validators draw with: every installed
task is loaded, yet numpy, the OCR engine, the renderer and the RIM parser (lxml) stay out (each costs the
gateway resident memory; bench/bench_gateway.py measures it)."""

from __future__ import annotations

import json
import subprocess
import sys

SERVING_ONLY = ("numpy", "onnxruntime", "rapidocr_onnxruntime", "veilnet.models.ocr", "veilnet.models.orientation",
                "veilnet.tasks.render", "lxml", "rapidfuzz")


def test_the_gateway_with_every_task_loaded_imports_no_serving_or_drawing_code() -> None:
    probe = ("import json, sys\n"
             "import veilnet.gateway.run, veilnet.gateway.app\n"
             "from veilnet.tasks.registry import installed_tasks\n"
             "tasks = sorted(installed_tasks())\n"
             f"print(json.dumps([tasks, [m for m in {SERVING_ONLY!r} if m in sys.modules]]))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    tasks, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"chat", "embeddings", "ocr", "orientation", "ai-detection"} <= set(tasks)
    assert loaded == []
