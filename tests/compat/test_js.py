"""The AWS SDK for JavaScript v3 (HTTP/2, h2c on http://) against the session's broker.

Runs `node --test tests/compat/js/kinesis.test.mjs` with RIFFLE_ENDPOINT set. Node and the
npm packages are required (tests/compat/run.sh runs `npm ci` in tests/compat/js): if either
is missing the test fails; it is never skipped.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

from conftest import REPO

JS_DIR = Path(__file__).resolve().parent / "js"
JS_TEST = JS_DIR / "kinesis.test.mjs"
NODE_TIMEOUT_S = 300


def test_js_sdk_v3(broker):
    node = shutil.which("node")
    assert node, "node is required for the JavaScript SDK compatibility test (not found on PATH)"
    sdk = JS_DIR / "node_modules" / "@aws-sdk" / "client-kinesis"
    assert sdk.is_dir(), f"{sdk} is missing: run `npm ci` in {JS_DIR} (tests/compat/run.sh does)"

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["RIFFLE_ENDPOINT"] = broker.endpoint_url
    p = subprocess.run(
        [node, "--test", str(JS_TEST)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=NODE_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"node --test failed ({p.returncode}):\n{out[-8000:]}"
    passed = re.search(r"^# pass (\d+)$", p.stdout, re.M)
    failed = re.search(r"^# fail (\d+)$", p.stdout, re.M)
    skipped = re.search(r"^# skipped (\d+)$", p.stdout, re.M)
    assert passed and int(passed.group(1)) >= 3, out[-8000:]
    assert failed and int(failed.group(1)) == 0, out[-8000:]
    assert skipped and int(skipped.group(1)) == 0, out[-8000:]
