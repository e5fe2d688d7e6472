"""The demo as a newcomer sees it: `python -m sandbox demo` brings up the sandbox and `dagster dev`,
then a real headless Chromium (Debian's `chromium`, driven by Playwright) opens the Dagster
UI, finds the demo model's asset graph and presses *Materialize all* (through its launchpad,
with the subtly bad revision: one layer's weights changed, every request 200 and fast):
weights → image → release → live in one run, which must not promote (live says why and stays
as it was), the gate's verdicts appear as an asset check with the canary's values against
the limits — latency and errors passing, the quality gate's agreement failing with the
prompts whose answers changed — and the rollback the controller launched succeeds. In
between, the kubectl and `llm-rollout status` lines the demo printed are run as pasted: the
canary's release Deployment beside stable's, vLLM's own log through `kubectl logs`.
Then, from the demo's instance: the rollback was the quality gate's alone — in each of its
failing windows `agreement` failed and every latency, error and KV-cache measurement passed —
as the headless demo's result line judges it. (The good release's promotion and the stuck
one's rollback are the headless demo's, tests/cli/test_demo.py.)

Screenshots go to the test's folder; with LLM_ROLLOUT_SCREENSHOTS=docs/screenshots they also
replace the README's."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from llm_rollout.monitoring import quality
from sandbox.dagster_home import gate_evaluations
from sandbox.demo import failed_on_quality_alone, failing_windows
from sandbox.ports import free_port
from sandbox.vllm_process import VllmNotInstalled, vllm_python
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.real_vllm  # scripts/test.sh runs these in their own lane

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is a dev dependency: pip install -e '.[dev]'"
)

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; scripts/test.sh installs it
# as the machine's notes advise: no sandbox as root, and none of Chromium's calls home (this
# machine's closed network refuses them, many at a time)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEMO_UP_SECONDS = 900  # environments are ready; the sandbox starts and release 1 installs
RUN_SECONDS = 300  # the rollout run: weights fetched and verified, canary applied
GATE_SECONDS = 900  # the canary's vLLM loads, warms up, fails its windows
ROLLBACK_SECONDS = 300
VIEWPORT = {"width": 1440, "height": 900}
LOCATION = "__repository__@llm-rollout"
# typed over the launchpad's scaffolded config, as a user does (keeping live's override empty)
SUBTLE_RELEASE_CONFIG = "ops:\n  demo_tiny__weights:\n    config:\n      revision: v2-perturbed\n"
SCREENSHOTS_ENV = "LLM_ROLLOUT_SCREENSHOTS"


class DemoProcess:
    """`python -m sandbox demo` (UI mode) in the background, its output kept for failures."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port
        self.lines: list[str] = []
        self.up = threading.Event()
        self.process = subprocess.Popen(
            [
                sys.executable,
                *("-m", "sandbox", "demo", "--dir", str(folder), "--port", str(port)),
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return "\n".join(self.lines[-80:])

    def wait_up(self) -> None:
        deadline = time.monotonic() + DEMO_UP_SECONDS
        while not self.up.wait(5):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the demo did not come up:\n{self.output()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # Ctrl-C, as a user stops it
        return self.process.wait(timeout=120)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip())
            if "The demo is up" in line:
                self.up.set()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProcess]:
    try:
        vllm_python()
    except VllmNotInstalled as missing:
        pytest.skip(f"real vLLM is not installed here: {missing}")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test.sh does)")
    running = DemoProcess(tmp_path_factory.mktemp("demo-ui"), free_port())
    try:
        running.wait_up()
        yield running
    finally:
        status = running.stop()
    assert status == 0, f"the demo did not stop cleanly on Ctrl-C:\n{running.output()}"


@pytest.fixture
def page(demo: DemoProcess) -> Iterator[playwright_api.Page]:
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            opened = browser.new_page(viewport=VIEWPORT)
            # Dagster's first-visit invitation to its community, dismissed whenever it shows
            opened.add_locator_handler(
                opened.get_by_text("Join the Dagster community"),
                lambda: opened.get_by_role("button", name="Skip").click(),
            )
            yield opened
        finally:
            browser.close()


class Shots:
    """Screenshots into the test's folder and, when asked, into the README's folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        wanted = os.environ.get(SCREENSHOTS_ENV)
        self.published = (REPO_ROOT / wanted) if wanted else None

    def take(self, page: playwright_api.Page, name: str) -> None:
        path = self.folder / f"{name}.png"
        page.screenshot(path=str(path), animations="disabled")  # dialogs fully open
        if self.published:
            self.published.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, self.published / path.name)


def metadata_value(page: playwright_api.Page, label: str) -> playwright_api.Locator:
    """The value cell of one metadata row of the latest check execution."""
    row = page.locator("tr", has=page.get_by_role("cell", name=label, exact=True))
    return row.locator("td").nth(1)


def run_guide_commands(demo: DemoProcess) -> dict[str, str]:
    """The shell lines the demo printed for kubectl and `llm-rollout status`, run as a user
    pastes them from the repository's folder: command → its output."""
    start = next(i for i, line in enumerate(demo.lines) if "answers kubectl" in line)
    lines = [line.strip() for line in demo.lines[start:]]
    export = next(line for line in lines if line.startswith("export KUBECONFIG="))
    commands = [line for line in lines if line.startswith(".venv/bin/")]
    assert len(commands) >= 4, demo.output()
    outputs = {}
    for command in commands:
        done = subprocess.run(
            ["bash", "-c", f"{export}\n{command}"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"{command}:\n{done.stdout}{done.stderr}"
        outputs[command.split("#")[0].strip()] = done.stdout
    return outputs


def rolling_back_verdict(home: Path) -> bool:
    """Whether the gate check's latest evaluation put the canary into RollingBack."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        latest = gate_evaluations(instance, "demo_tiny", limit=1)
    return bool(latest) and latest[0].get("phase") == "RollingBack"


def rollback_and_failing_windows(home: Path) -> tuple[dg.DagsterRun, list[dict[str, str]]]:
    """The demo model's one rollback run, and its canary's failing windows (each measurement
    → outcome)."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        (rollback,) = instance.get_runs(dg.RunsFilter(job_name="demo_tiny_rollback"))
        canary = rollback.tags["llm-rollout/release"]
        failing = failing_windows(instance, canary)
    return rollback, failing


def run_row(page: playwright_api.Page, job: str) -> playwright_api.Locator:
    """The run list's row of a job's run (Dagster 1.13 draws the list with divs)."""
    return page.locator("[class*='RunsFeedRow_rowGrid']", has_text=job)


def test_a_newcomer_launches_a_subtle_release_from_the_ui_and_the_quality_gate_rolls_it_back(
    demo: DemoProcess, page: playwright_api.Page, tmp_path: Path
) -> None:
    expect = playwright_api.expect
    shots = Shots(tmp_path)

    # the demo model's asset graph, release 1 materialized
    page.goto(f"{demo.url}/locations/{LOCATION}/asset-groups/demo_tiny")
    for asset in ("weights", "image", "release", "live"):
        expect(page.get_by_text(asset, exact=True).first).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Materialized", exact=True).first).to_be_visible(timeout=60_000)
    shots.take(page, "1-asset-graph")

    # Dagster's first-visit invitation comes up a second after the page on a fresh instance:
    # let it come and go before a dialog of our own is opened (the handler cannot click
    # through one). Once dismissed, the server records it ($DAGSTER_HOME/.nux/nux.yaml, the
    # webserver's shouldShowNux) and it does not come back; it often is by now, the
    # assertions above having run the handler.
    invitation = page.get_by_text("Join the Dagster community")
    if not (demo.folder / "dagster-home" / ".nux" / "nux.yaml").exists():
        with contextlib.suppress(playwright_api.TimeoutError):
            invitation.wait_for(timeout=15_000)
    expect(invitation).to_have_count(0, timeout=30_000)

    # Materialize all, through its launchpad: the subtle revision typed over the scaffold
    page.locator("button:right-of(:text('Materialize all'))").first.click()
    page.get_by_role("menuitem", name="Open launchpad").click()
    launchpad = page.get_by_role("dialog")
    editor = launchpad.locator(".CodeMirror").first
    expect(editor).to_be_visible(timeout=60_000)
    expect(editor).to_contain_text("override_reason")  # the scaffold offers the override
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(SUBTLE_RELEASE_CONFIG)
    expect(launchpad.get_by_text("No errors")).to_be_visible(timeout=30_000)
    shots.take(page, "2-launchpad")
    launchpad.get_by_role("button", name="Materialize").click()

    # the run page follows it to success: every asset ran, and live refused to promote
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]+$"), timeout=60_000)
    run_url = page.url
    expect(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=RUN_SECONDS * 1000)
    expect(page.get_by_text(re.compile("not promoting")).first).to_be_visible()
    shots.take(page, "3-rollout-run")

    # meanwhile in a terminal: the commands the demo printed show the canary beside stable
    shell = run_guide_commands(demo)
    get = next(out for line, out in shell.items() if "get deployments,pods" in line)
    deployments = [row for row in get.splitlines() if row.startswith("deployment.apps/")]
    tracks = [row.split()[-1] for row in deployments if "-router " not in row]
    assert sorted(tracks) == ["canary", "stable"], get  # one Deployment per release
    assert any(row.startswith("deployment.apps/demo-tiny-router ") for row in deployments), get
    vllm_log = next(out for line, out in shell.items() if " logs deployment/demo-tiny-rel-" in line)
    assert "Starting vLLM server" in vllm_log, vllm_log[-2000:]
    described = next(out for line, out in shell.items() if "track=canary" in line)
    assert "Replicas:" in described and "llm-rollout.io/track=canary" in described, described
    status = shell[".venv/bin/llm-rollout status sandbox/specs/demo-tiny.yaml"]
    assert "<- stable" in status and "<- canary" in status, status
    assert "phase" in status and "Done" not in status.split("\n")[1], status

    # the gate's verdicts on the release's asset check, once the one that rolls it back is
    # recorded (waited for in the demo's instance: reloading the UI every few seconds was
    # ~90 CPU-s of Chromium beside the rest of the suite)
    deadline = time.monotonic() + GATE_SECONDS
    while not rolling_back_verdict(demo.folder / "dagster-home"):
        assert time.monotonic() < deadline, f"no rollback verdict for {run_url}:\n{demo.output()}"
        time.sleep(5)
    page.goto(f"{demo.url}/assets/demo_tiny/release?view=checks")
    expect(page.get_by_text("Latest execution")).to_be_visible(timeout=60_000)
    expect(metadata_value(page, "phase")).to_contain_text("RollingBack")
    expect(page.get_by_text("Failed", exact=True).first).to_be_visible()
    page.locator("tr", has_text="measurements").get_by_text("Show Markdown").click()
    measurements = page.get_by_role("dialog")
    # every request succeeded, as fast as stable's; only the golden answers differ, and the
    # row shows the prompts whose answers changed, canary's beside stable's
    for metric, outcome in (("success_rate", "Pass"), ("ttft_p99", "Pass"), ("agreement", "Fail")):
        row = measurements.locator("tr", has=page.get_by_role("cell", name=metric, exact=True))
        expect(row).to_contain_text(outcome)
    expect(measurements.locator("tr", has_text="agreement")).to_contain_text("differs from token")
    shots.take(page, "4-gate-check")
    page.get_by_role("button", name="Close").click()

    # the rollback the gate sensor launched, in the run list
    page.goto(f"{demo.url}/runs")
    rollback = run_row(page, "demo_tiny_rollback")
    expect(rollback).to_contain_text("demo_tiny_gate", timeout=ROLLBACK_SECONDS * 1000)
    expect(rollback).to_contain_text("Success", timeout=ROLLBACK_SECONDS * 1000)
    expect(rollback).to_contain_text("llm-rollout/release")
    expect(run_row(page, "demo_tiny_promote")).to_have_count(0)
    shots.take(page, "5-runs")

    # rolled back by the quality gate alone: in each failing window every latency, error and
    # KV-cache measurement passed (the headless demo's verdict on its result line)
    rollback, failing = rollback_and_failing_windows(demo.folder / "dagster-home")
    assert "agreement" in str(rollback.run_config), rollback.run_config
    assert len(failing) >= 3, failing
    for outcomes in failing:
        assert outcomes["agreement"] == "Fail", outcomes
        others = {m: o for m, o in outcomes.items() if m not in quality.MEASUREMENTS}
        assert {"ttft_p99", "success_rate"} <= set(others), outcomes
        assert set(others.values()) == {"Pass"}, outcomes
    alone, why = failed_on_quality_alone(failing)
    assert alone, why
