"""The demo: the whole loop on one machine, no GPU, no cluster. A sandbox world (cluster
running real vLLM pods on CPU, a Hub holding the tiny model and three later revisions of it,
a Prometheus discovering the pods), steady chat traffic through the model's router (its
"cloud" a local stand-in), the output-quality gate's golden prompts, and Dagster (`dagster
dev` with the UI, or only the daemon when headless) releasing into it.

Scenarios, each a second release of `sandbox/specs/demo-tiny.yaml`:
  good    revision `v2`: a new model card, same weights → canaried, gated (every quality
          measurement identical to stable's), promoted
  bad     revision `v2-system-first`: a chat template that rejects conversations without a
          system message (the demo's traffic has none) → the gate rolls it back
  subtle  revision `v2-perturbed`: one layer's weights changed, same files and sizes → every
          request succeeds, as fast as stable's; only the quality gate sees the answers
          changed, and rolls it back
  stuck   image `vllm/vllm-openai:v0.32.O` (a typo: letter O) → never pulls, rolled back as
          stalled
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from llm_rollout.k8s import router_manifests
from llm_rollout.k8s.cluster import ClusterClient
from llm_rollout.k8s.history import ReleaseHistory
from llm_rollout.k8s.lifecycle import Lifecycle, release_of
from llm_rollout.monitoring import quality
from llm_rollout.rollout.store import RolloutStore
from llm_rollout.spec import ReleaseSpec, load_spec
from sandbox.dagster_home import REPO_ROOT, DagsterHome, DagsterProcess, gate_evaluations
from sandbox.load import LoadGenerator
from sandbox.merge import merged
from sandbox.openai_standin import OpenAIStandin
from sandbox.ports import free_port
from sandbox.tiny_model import REPO_ID, write_revision, write_tiny_model
from sandbox.world import SandboxWorld

# The demo's own spec, outside every models folder (never loaded in production), and what the
# demo adds to it: the router in front of the model (demo-tiny.yaml alone is the base of many
# tests' specs).
DEMO_SPEC = REPO_ROOT / "sandbox" / "specs" / "demo-tiny.yaml"
DEMO_ROUTING = REPO_ROOT / "sandbox" / "specs" / "demo-routing.yaml"
DEMO_QUALITY = REPO_ROOT / "sandbox" / "specs" / "demo-quality.yaml"
DEMO_GOLDEN = REPO_ROOT / "sandbox" / "specs" / "demo-golden.jsonl"
# the Hub's later revisions of the tiny model: branch → what changed (sandbox/tiny_model.py)
REVISIONS = {
    "v2": "model-card",
    "v2-system-first": "system-first-template",
    "v2-perturbed": "perturbed-layer",
}
MODEL = "demo-tiny"
GROUP = "demo_tiny"
SCENARIO_TIMEOUT_SECONDS = 900  # three CPU vLLM pods start slowly on a small laptop
ROUTER_UP_SECONDS = 120
# the spec's placeholder for the cloud stand-in's address, known once it listens
CLOUD_PLACEHOLDER = "http://cloud.sandbox.local/v1"
POLL_SECONDS = 2.0
REPRINT_SECONDS = 15.0
Say = Callable[[str], None]


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    expect: str  # "promote" or "rollback"
    revision: str | None = None
    image: str | None = None
    # a rollback the quality gate alone must decide: in every failing window each other
    # measurement passed
    by_quality: bool = False

    def run_config(self) -> dict[str, Any]:
        ops: dict[str, Any] = {}
        if self.revision:
            ops[f"{GROUP}__weights"] = {"config": {"revision": self.revision}}
        if self.image:
            ops[f"{GROUP}__image"] = {"config": {"reference": self.image}}
        return {"ops": ops}


SCENARIOS = {
    "good": Scenario("good", "revision v2: a new model card, same weights", "promote", "v2"),
    "bad": Scenario(
        "bad",
        "revision v2-system-first: its chat template rejects conversations without a "
        "system message",
        "rollback",
        "v2-system-first",
    ),
    "subtle": Scenario(
        "subtle",
        "revision v2-perturbed: one layer's weights changed, same files and sizes (every "
        "request succeeds, fast)",
        "rollback",
        "v2-perturbed",
        by_quality=True,
    ),
    "stuck": Scenario(
        "stuck",
        "image vllm/vllm-openai:v0.32.O (a typo) that never pulls",
        "rollback",
        image="vllm/vllm-openai:v0.32.O",
    ),
}


@dataclass
class Outcome:
    scenario: str
    ok: bool
    summary: str


class Demo:
    """Brings the demo world up, installs the first release, runs scenarios."""

    def __init__(self, folder: Path, say: Say) -> None:
        self.folder = folder.resolve()
        self.say = say
        self.base_model = self.folder / "revisions" / "v1"
        self.world = SandboxWorld(self.folder / "world", tiny_model_dir=self.base_model)
        self.process: DagsterProcess | None = None
        self.code_server: DagsterProcess | None = None
        self.load: LoadGenerator | None = None
        self.cloud: OpenAIStandin | None = None
        self.home: DagsterHome | None = None
        self.spec: ReleaseSpec = load_spec(DEMO_SPEC)

    # -- bringing it up -----------------------------------------------------------------

    def start(self, ui_port: int | None) -> None:
        self.say("starting the sandbox: Kubernetes API, Hub, Prometheus")
        if not (self.base_model / "model.safetensors").exists():
            write_tiny_model(self.base_model)
        self.world.start()
        self._publish_revisions()
        # the router's "cloud" backend: a stand-in on this machine, as a hosted API is
        # outside the cluster; the spec the code location loads names its address
        self.cloud = OpenAIStandin("cloud", model="tiny-llama-cloud").start()
        models = self.folder / "models"
        models.mkdir(parents=True, exist_ok=True)
        routed = merged(
            yaml.safe_load(DEMO_SPEC.read_text()),
            yaml.safe_load(
                DEMO_ROUTING.read_text().replace(CLOUD_PLACEHOLDER, f"{self.cloud.url}/v1")
            ),
        )
        # the quality gate's golden prompts, beside the spec that names them
        shutil.copy(DEMO_GOLDEN, models / DEMO_GOLDEN.name)
        spec = merged(routed, yaml.safe_load(DEMO_QUALITY.read_text()))
        (models / DEMO_SPEC.name).write_text(yaml.safe_dump(spec, sort_keys=False))
        self.spec = load_spec(models / DEMO_SPEC.name)
        self.say(f"the router's cloud backend: a stand-in at {self.cloud.url}")
        self.home = DagsterHome(self.folder / "dagster-home", self.world.env(models))
        log = (self.folder / "dagster.log").open("ab")
        # the code location in a server of its own, as a user-code deployment runs it on
        # Kubernetes: the daemon, the UI and each launch connect to it
        self.say("starting the code location's server (dagster api grpc)")
        port = free_port()
        self.code_server = DagsterProcess.code_server(self.home, port, log).start()
        self.code_server.wait_serving(port)
        self.home.use_code_server(port)
        if ui_port is None:
            self.say("starting the Dagster daemon (sensors, run queue)")
            self.process = DagsterProcess.daemon(self.home, log).start()
        else:
            self.say(f"starting dagster dev (UI and daemon) on port {ui_port}")
            self.process = DagsterProcess.dev(self.home, ui_port, log).start()
        self.say(f"logs: {self.folder / 'dagster.log'}, pods: {self.world.root / 'cluster'}")

    def stop(self) -> None:
        if self.home:
            self.home.close()
        if self.load:
            self.load.stop()
        if self.process:
            self.process.stop()
        if self.code_server:
            self.code_server.stop()
        if self.cloud:
            self.cloud.stop()
        self.world.stop()

    def install_stable(self) -> str:
        """The first release (revision main), installed as stable; then steady traffic."""
        history = ReleaseHistory(self.cluster, self.spec).read()
        if history.stable is None:
            self.say("release 1: fetching, verifying and installing the tiny model (real vLLM)")
            run_id = self._launch({})
            self._wait_run(run_id, lambda: self._row("install"))
        stable = ReleaseHistory(self.cluster, self.spec).read().stable or "?"
        router = router_manifests.router_name(self.spec)
        status = Lifecycle(self.cluster, self.spec).wait(router, timeout=ROUTER_UP_SECONDS)
        if status.phase != "complete":
            raise DemoFailed(f"the router {router} did not come up: {status.reason}")
        self.say(f"stable release {stable} is serving; sending chat traffic through its router")
        front = self.world.service_url(self.spec.namespace, router)
        # ~0.75 request/s reaches a gated canary (rollout.canary_weight 50): enough for
        # `gate.min_requests`; more keeps the CPU too busy for a promoted pod to load
        self.load = LoadGenerator(front, "tiny-llama", rate=1.5, workers=2, chat=True).start()
        return stable

    # -- scenarios ----------------------------------------------------------------------

    def run(self, scenario: Scenario) -> Outcome:
        """Launch the scenario's release and follow it until its promotion or rollback."""
        before = ReleaseHistory(self.cluster, self.spec).read().stable
        failed_before = self.load.counts.failed if self.load else 0
        cloud_before = self._cloud_answers()
        self.say(f"\n== scenario {scenario.name}: {scenario.what} (expected: {scenario.expect})")
        started = time.monotonic()
        run_id = self._launch(scenario.run_config())
        self._wait_run(run_id, lambda: self._row(scenario.name))
        canary = ReleaseHistory(self.cluster, self.spec).read().canary
        self.say(f"canary {canary} applied; the gate sensor takes it from here")
        lowest = self._serving()
        self.say(HEADER)
        while time.monotonic() - started < SCENARIO_TIMEOUT_SECONDS:
            lowest = min(lowest, self._serving())
            self._row(scenario.name)
            decided = self._decision_run(canary)
            if decided is not None and decided.is_finished:
                break
            time.sleep(POLL_SECONDS)
        else:
            return Outcome(scenario.name, False, f"no decision within {SCENARIO_TIMEOUT_SECONDS}s")
        history = ReleaseHistory(self.cluster, self.spec).read()
        job = decided.job_name.removeprefix(f"{GROUP}_")
        failed = (self.load.counts.failed if self.load else 0) - failed_before
        to_cloud = self._cloud_answers() - cloud_before
        succeeded = decided.status == dg.DagsterRunStatus.SUCCESS
        if scenario.expect == "promote" and job != "promote":
            ok = False
            reason = RolloutStore(self.cluster, self.spec).read().reason
            summary = f"not promoted: {canary} was rolled back ({reason})"
        elif scenario.expect == "promote":
            ok = succeeded and history.stable == canary
            ok = ok and lowest >= self.spec.replicas and failed == 0
            summary = (
                f"promoted {canary}; never fewer than {lowest} of {self.spec.replicas} pods "
                f"available; {failed} failed requests; {to_cloud} answered by the cloud"
            )
        else:
            ok = job == "rollback" and succeeded and history.stable == before
            reason = RolloutStore(self.cluster, self.spec).read().reason
            summary = (
                f"rolled back {canary} ({reason}); stable {history.stable} untouched; "
                f"{failed} requests failed on the canary meanwhile; {to_cloud} answered by "
                "the cloud while the model was held or rolling back"
            )
            if scenario.by_quality:
                alone, why = self._failed_on_quality_alone(canary)
                ok = ok and alone
                summary += f"; {why}"
        return Outcome(
            scenario.name, ok, f"{job} {'succeeded' if succeeded else 'failed'}: {summary}"
        )

    def follow(self) -> None:
        """With the UI: the same live table in the terminal while releases are launched from
        the UI (until Ctrl-C)."""
        self.say(HEADER)
        while True:
            self._row("ui")
            time.sleep(POLL_SECONDS)

    # -- observing ----------------------------------------------------------------------

    @property
    def cluster(self) -> ClusterClient:
        assert self.world.api is not None
        return ClusterClient(self.world.api)

    def _launch(self, run_config: dict[str, Any]) -> str:
        assert self.home is not None
        return self.home.launch(f"{GROUP}_rollout", run_config)

    @property
    def instance(self) -> dg.DagsterInstance:
        assert self.home is not None
        return self.home.shared

    def _wait_run(self, run_id: str, tick: Callable[[], None]) -> dg.DagsterRun:
        while True:
            run = self.instance.get_run_by_id(run_id)
            if run is not None and run.is_finished:
                if run.status != dg.DagsterRunStatus.SUCCESS:
                    raise DemoFailed(f"run {run_id} ({run.job_name}) failed; see the Dagster UI")
                return run
            tick()
            time.sleep(POLL_SECONDS)

    def _decision_run(self, canary: str | None) -> dg.DagsterRun | None:
        for job in ("promote", "rollback"):
            runs = self.instance.get_runs(
                dg.RunsFilter(job_name=f"{GROUP}_{job}", tags={"llm-rollout/release": canary or ""})
            )
            if runs:
                return runs[0]
        return None

    def _failed_on_quality_alone(self, canary: str | None) -> tuple[bool, str]:
        return failed_on_quality_alone(failing_windows(self.instance, canary))

    def _cloud_answers(self) -> int:
        """Requests the router sent to the cloud stand-in so far."""
        return len(self.cloud.received()) if self.cloud else 0

    def _serving(self) -> int:
        """Available pods of the model, over every release's Deployment: what its Service
        sends users to (stable's during a promotion, as the canary's pods take over)."""
        return sum(self._available_by_release().values())

    def _available_by_release(self) -> dict[str, int]:
        return {
            release_of(d): int((d.get("status") or {}).get("availableReplicas", 0))
            for d in Lifecycle(self.cluster, self.spec).workloads()
        }

    _last_row = ""
    _last_print = 0.0

    def _row(self, label: str) -> None:
        """One table row, printed when anything in it changed."""
        history = ReleaseHistory(self.cluster, self.spec).read()
        record = RolloutStore(self.cluster, self.spec).read()
        counts = self.load.counts if self.load else None
        streaks = f"{record.passes}/{record.failures}/{record.errors}"
        gate = f"{record.phase.value}: {record.reason}"
        load = f"{counts.ok}/{counts.failed}" if counts else "-"
        available = self._available_by_release()
        stable, canary = history.stable or "-", history.canary or "-"
        row = (
            f"{label:8} {stable:15} {available.get(stable, 0):>6} "
            f"{canary:15} {available.get(canary, 0):>6}  "
            f"{streaks:13} {gate:48.48} {load:>12}"
        )
        # a new row when the state changes, and every REPRINT_SECONDS for the traffic counts
        state = row[: -len(load)]
        if state != self._last_row or time.monotonic() - self._last_print > REPRINT_SECONDS:
            self._last_row, self._last_print = state, time.monotonic()
            self.say(time.strftime("%H:%M:%S ") + row)

    def _publish_revisions(self) -> None:
        store = self.world.hub.store
        for branch, change in REVISIONS.items():
            folder = write_revision(self.base_model, self.folder / "revisions" / branch, change)
            store.commit_folder(REPO_ID, folder, message=f"{branch}: {change}", branch=branch)
        self.say(
            f"Hub: {REPO_ID} main (v1), v2 (good), v2-system-first (bad), v2-perturbed (subtle)"
        )


def gate_windows(
    instance: dg.DagsterInstance, release: str | None
) -> list[tuple[str, dict[str, str]]]:
    """The gate check's judged windows of one release, newest first: (window outcome,
    measurement → outcome)."""
    return [
        (evaluation["window"], evaluation["outcomes"])
        for evaluation in gate_evaluations(instance, GROUP)
        if "outcomes" in evaluation and evaluation["release_id"] == release
    ]


def failing_windows(instance: dg.DagsterInstance, release: str | None) -> list[dict[str, str]]:
    """The measurement → outcome of each window the gate failed for one release."""
    return [outcomes for window, outcomes in gate_windows(instance, release) if window == "Fail"]


HEADER = (
    f"time     {'scenario':8} {'stable':15} {'ready':>6} {'canary':15} {'ready':>6}  "
    f"{'pass/fail/err':13} {'controller':48} {'load ok/fail':>12}"
)


class DemoFailed(RuntimeError):
    """The demo could not get as far as a decision."""


def failed_on_quality_alone(failing: list[dict[str, str]]) -> tuple[bool, str]:
    """Whether a canary's failing windows (each its gate check's `outcomes`: measurement →
    outcome) failed on quality measurements only, every other measurement passing, and why."""
    others = sorted(
        {
            f"{name} {outcome}"
            for outcomes in failing
            for name, outcome in outcomes.items()
            if name not in quality.MEASUREMENTS and outcome != "Pass"
        }
    )
    failed = sorted(
        {
            name
            for outcomes in failing
            for name, outcome in outcomes.items()
            if name in quality.MEASUREMENTS and outcome == "Fail"
        }
    )
    if not failing or others or not failed:
        return False, f"not the quality gate alone: {', '.join(others) or 'no quality Fail'}"
    return True, (
        f"by the quality gate alone ({', '.join(failed)} failed; every other measurement "
        f"passed in its {len(failing)} failing windows)"
    )
