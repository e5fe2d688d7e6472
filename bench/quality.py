"""Quality-gate benchmark: how much agreement and log-probability drift vary between two pods
of the *same* release under load (the noise the limits must sit above), and whether the
subtly-bad revisions of the tiny model are caught. Real CPU vLLM servers, measured in one run.

    .venv/bin/python bench/quality.py [--rounds 10] [--load-threads 2]

For each canary variant — the same release (good), one layer's weights changed, a chat
template that drops system messages, a generation_config.json whose default temperature
changed (seen only by the prompts sent with the server's sampling defaults) — it runs the
golden set `--rounds` times against a stable server while both serve a background load (so
requests are batched as in production), and prints agreement and drift (min/mean/max) and
how often the spec's default limits fail the round: false failures for the good variant,
misses for the bad ones.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from llm_rollout.monitoring.gate import Outcome  # noqa: E402
from llm_rollout.monitoring.quality import (  # noqa: E402
    QualityLimits,
    VllmEndpoint,
    collect,
    compare,
    judge_quality,
    load_prompts,
)
from llm_rollout.spec.schema import Quality  # noqa: E402
from sandbox.tiny_model import write_revision, write_tiny_model  # noqa: E402
from sandbox.vllm_process import VllmProcess  # noqa: E402

MODEL = "tiny-llama"
# the demo's golden set (its quality gate sends the same prompts): six greedy, two answered
# with the server's own sampling defaults (and the gate's fixed seed), as a client that sends
# no sampling parameters gets them
GOLDEN = load_prompts(REPO_ROOT / "sandbox" / "specs" / "demo-golden.jsonl")
VARIANTS = (
    ("same release", None),
    ("one layer changed", "perturbed-layer"),
    (
        "template drops system messages",
        "drops-system-template",
    ),
    ("default temperature changed", "sampling-default"),
)


def defaults() -> QualityLimits:
    """The spec's default limits."""
    fields = Quality.model_fields
    return QualityLimits(
        float(fields["min_agreement"].default),
        float(fields["max_logprob_drift"].default),
        float(fields["max_expectation_drop"].default),
    )


def load(urls: list[str], stop: threading.Event) -> None:
    """Background chat traffic to every server, so golden prompts are batched with others."""
    while not stop.is_set():
        for url in urls:
            with contextlib.suppress(requests.RequestException):  # load only; keep going
                requests.post(
                    f"{url}/v1/chat/completions",
                    json={
                        "model": MODEL,
                        "messages": [{"role": "user", "content": "the model serves tokens"}],
                        "max_tokens": 24,
                    },
                    timeout=30,
                )


def rounds_against(stable: VllmProcess, canary: VllmProcess, rounds: int, threads: int) -> list:
    stop = threading.Event()
    workers = [
        threading.Thread(target=load, args=([stable.url, canary.url], stop), daemon=True)
        for _ in range(threads)
    ]
    for worker in workers:
        worker.start()
    try:
        return [
            compare(
                collect(
                    GOLDEN,
                    VllmEndpoint(canary.url, MODEL, 0, 16),
                    VllmEndpoint(stable.url, MODEL, 0, 16),
                )
            )
            for _ in range(rounds)
        ]
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--load-threads", type=int, default=2)
    options = parser.parse_args()
    limits = defaults()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        base = write_tiny_model(root / "base")
        with (
            (root / "stable.log").open("wb") as log,
            VllmProcess(base, log=log, core="0") as stable,
        ):
            stable.wait_healthy()
            for name, change in VARIANTS:
                model = base if change is None else write_revision(base, root / change, change)
                with (
                    (root / f"{name}.log").open("wb") as canary_log,
                    VllmProcess(model, log=canary_log, core="1") as canary,
                ):
                    canary.wait_healthy()
                    reports = rounds_against(stable, canary, options.rounds, options.load_threads)
                failed = [
                    any(m.outcome is Outcome.FAIL for m in judge_quality(limits, r))
                    for r in reports
                ]
                agreement = [r.same_answer / r.prompts for r in reports]
                drift = [r.drift for r in reports]
                rows.append((name, change is None, agreement, drift, sum(failed)))
    print(
        f"{len(GOLDEN)} golden prompts × {options.rounds} rounds per variant, "
        f"{options.load_threads} load threads; limits: agreement ≥ {limits.min_agreement:g}, "
        f"drift ≤ {limits.max_logprob_drift:g}"
    )
    print(f"{'canary':32} {'agreement min/mean':>20} {'drift mean/max':>18}  verdict")
    for name, good, agreement, drift, fails in rows:
        verdict = (
            f"false failures {fails}/{options.rounds}"
            if good
            else f"caught {fails}/{options.rounds} (missed {options.rounds - fails})"
        )
        print(
            f"{name:32} {min(agreement):>9.2f}/{statistics.mean(agreement):<9.2f} "
            f"{statistics.mean(drift):>8.4f}/{max(drift):<8.4f}  {verdict}"
        )


if __name__ == "__main__":
    main()
