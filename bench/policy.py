"""Policy evaluation time per call: the example bundle against a one-rule baseline bundle,
both compiled with regopy and measured in the same run.

    .venv/bin/python bench/policy.py [--calls N]
"""

import argparse
import json
import statistics
import time
from pathlib import Path

from signoff.policy.engine import RegoPolicy
from signoff.policy.testing import case_input

ROOT = Path(__file__).resolve().parents[1]
INPUTS = {
    "refund (waits on finance)": {
        "envelope": {"input": {"intent": "support.refund", "context": {"identity_verified": True}}},
        "action": {
            "tool": "adp_payments.issue_refund",
            "risk_class": "DESTRUCTIVE",
            "params": {"order_id": "ord_881", "amount": 4200},
        },
    },
    "content block (waits on moderation)": {
        "envelope": {"input": {"intent": "content.review"}},
        "action": {
            "tool": "adp_content.publish_block",
            "risk_class": "DELEGATED",
            "params": {"post_id": "pst_5512", "confidence": 0.91},
        },
    },
    "data lookup (allowed, redaction)": {
        "envelope": {"input": {"intent": "data.lookup"}},
        "action": {"tool": "adp_kg.query", "risk_class": "READ_ONLY", "params": {"q": "top 10"}},
    },
}


def measure(policy: RegoPolicy, evaluation_input: dict[str, object], calls: int) -> list[float]:
    for _ in range(50):  # warm up
        policy.evaluate(evaluation_input)
    samples = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        policy.evaluate(evaluation_input)
        samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "mean_us": round(statistics.fmean(ordered), 1),
        "p50_us": round(ordered[len(ordered) // 2], 1),
        "p99_us": round(ordered[int(len(ordered) * 0.99)], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    calls = parser.parse_args().calls
    example = RegoPolicy.load(ROOT / "examples" / "policies")
    baseline = RegoPolicy.load(ROOT / "tests" / "policies" / "open")
    results: dict[str, object] = {}
    base = summary(measure(baseline, case_input(INPUTS["refund (waits on finance)"]), calls))
    print(
        f"baseline (one-rule bundle): mean {base['mean_us']} µs, p50 {base['p50_us']} µs, "
        f"p99 {base['p99_us']} µs"
    )
    results["baseline"] = base
    for name, raw in INPUTS.items():
        figures = summary(measure(example, case_input(raw), calls))
        print(
            f"{name}: mean {figures['mean_us']} µs, p50 {figures['p50_us']} µs, "
            f"p99 {figures['p99_us']} µs ({figures['mean_us'] / base['mean_us']:.1f}x baseline)"
        )
        results[name] = figures
    print(json.dumps({"policy_eval": results, "calls": calls}))


if __name__ == "__main__":
    main()
