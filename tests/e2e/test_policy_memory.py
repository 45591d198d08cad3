"""Policy evaluation keeps a flat resident size in the server's process layout.

regopy's native library brings its own allocator; when libstdc++ was loaded before it
(grpcio and protobuf's upb load it first in the server), each evaluation used to leave
about 14 KB behind (signoff.policy.rego explains why). The measurement runs in a fresh
process that imports exactly what the server imports, in the server's order."""

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support import EXAMPLE_POLICY

EVALUATIONS = 20_000

MEASURE = """
import json, sys
import signoff.cli  # the server's imports, in its order: grpcio and upb before the policy
import google._upb._message, grpc  # noqa: F401 - loaded before regopy, as in the server
from pathlib import Path
from signoff.policy.engine import RegoPolicy
from signoff.policy.testing import case_input

def rss_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

policy = RegoPolicy.load(Path(sys.argv[1]), memo_size=0)  # regopy itself, not the memo
inputs = [case_input(case) for case in json.loads(sys.argv[2])]
count = int(sys.argv[3])
for i in range(500):  # warm up: caches and allocator arenas reach their working size
    policy.evaluate(inputs[i % len(inputs)])
before = rss_kb()
for i in range(count):
    policy.evaluate(inputs[i % len(inputs)])
print(json.dumps({"kb_per_evaluation": (rss_kb() - before) / count}))
"""


def test_policy_evaluation_does_not_grow_memory() -> None:
    cases = yaml.safe_load((EXAMPLE_POLICY / "tests" / "workflows.yaml").read_text())["cases"]
    run = subprocess.run(
        [sys.executable, "-c", MEASURE, str(EXAMPLE_POLICY), json.dumps(cases), str(EVALUATIONS)],
        capture_output=True,
        text=True,
        check=True,
    )
    growth = json.loads(run.stdout)["kb_per_evaluation"]
    assert growth < 1.0, f"{growth:.2f} KB of resident memory kept per policy evaluation"


def test_only_the_policy_loader_imports_regopy() -> None:
    """The allocator binding works only if regopy is first loaded through it."""
    server = Path(__file__).parents[2] / "server" / "signoff"
    importers = {
        str(path.relative_to(server))
        for path in server.rglob("*.py")
        if any(
            line.startswith(("import regopy", "from regopy"))
            for line in path.read_text().splitlines()
        )
    }
    assert importers == {"policy/rego.py"}
