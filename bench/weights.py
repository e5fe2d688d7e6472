"""Weights benchmark: verification throughput, cheap re-verification, fetch+verify vs the
usual snapshot_download + sha256 pass, and bytes downloaded over a flaky link. Every number
is measured in this run, side by side.

    .venv/bin/python bench/weights.py                 # 8 shards × 256 MiB, 100 MB flaky file
    .venv/bin/python bench/weights.py --shards 4 --shard-mib 64    # quicker
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2
from huggingface_hub import hf_hub_download, snapshot_download

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from llm_rollout.weights.fetch import WeightsSource, fetch_weights  # noqa: E402
from llm_rollout.weights.hashing import hash_files  # noqa: E402
from llm_rollout.weights.hub import HubClient  # noqa: E402
from llm_rollout.weights.layout import RepoLayout  # noqa: E402
from llm_rollout.weights.verify import verify_published  # noqa: E402

REPO_ID = "bench/sharded"
SMALL_REPO_ID = "bench/many-files"
FLAKY_REPO_ID = "bench/flaky"
FLAKY_FILE = "model.safetensors"


def make_tree(folder: Path, shards: int, shard_bytes: int) -> int:
    """Shards of pseudo-random bytes (hashing cost does not depend on content)."""
    folder.mkdir(parents=True)
    block = os.urandom(4 * 2**20)
    for index in range(shards):
        with (folder / f"model-{index + 1:05d}-of-{shards:05d}.safetensors").open("wb") as out:
            written = 0
            while written < shard_bytes:
                chunk = block[: shard_bytes - written]
                out.write(chunk)
                written += len(chunk)
    (folder / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}\n')
    return shards * shard_bytes


def single_core_sha256(files: list[Path]) -> float:
    """The baseline: one thread, hashlib.sha256, reading as the product does (readinto into
    one reused 8 MiB buffer, unbuffered), so the comparison measures parallelism only."""
    started = time.perf_counter()
    buffer = bytearray(8 * 2**20)
    view = memoryview(buffer)
    for path in files:
        digest = hashlib.sha256()
        with path.open("rb", buffering=0) as handle:
            while read := handle.readinto(buffer):
                digest.update(view[:read])
    return time.perf_counter() - started


def start_hub(root: Path, serve: list[str]) -> tuple[subprocess.Popen[str], str]:
    args = [sys.executable, "-m", "sandbox", "hub", "--root", str(root)]
    for item in serve:
        args += ["--serve", item]
    process = subprocess.Popen(args, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    return process, line.strip().removeprefix("HF_ENDPOINT=")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--shard-mib", type=int, default=256)
    parser.add_argument("--small-files", type=int, default=200)
    parser.add_argument("--flaky-mb", type=int, default=100, help="file size over the flaky link")
    parser.add_argument("--drop-every-mb", type=int, default=15, help="the link drops this often")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    options = parser.parse_args()
    work = Path(options.work or tempfile.mkdtemp(prefix="bench-weights-"))
    cores = os.cpu_count() or 1
    try:
        tree = work / "tree"
        total = make_tree(tree, options.shards, options.shard_mib * 2**20)
        files = sorted(tree.iterdir())
        mib = total / 2**20
        print(f"tree: {options.shards} × {options.shard_mib} MiB = {mib:.0f} MiB; {cores} cores")

        # (a) verification throughput
        single_core_sha256(files)  # warm the page cache: measure hashing, not the disk
        baseline = single_core_sha256(files)
        print("\n(a) full verification throughput")
        print(f"  {'single-core hashlib.sha256':32s} {mib / baseline:8.0f} MiB/s  1.00×")
        for workers in sorted({1, 2, cores}):
            started = time.perf_counter()
            hash_files([(p, p.name, False) for p in files], workers=workers)
            seconds = time.perf_counter() - started
            label = f"llm-rollout, {workers} worker(s)"
            print(f"  {label:32s} {mib / seconds:8.0f} MiB/s  {baseline / seconds:.2f}×")

        flaky = make_flaky(work, options.flaky_mb * 10**6)
        hub_process, endpoint = start_hub(
            work / "hub",
            [
                f"{REPO_ID}={tree}",
                f"{SMALL_REPO_ID}={make_small(work, options.small_files)}",
                f"{FLAKY_REPO_ID}={flaky}",
            ],
        )
        try:
            client = HubClient(endpoint=endpoint)

            # (b) re-verification of an unchanged published tree
            root = work / "published"
            fetch_weights(WeightsSource(SMALL_REPO_ID, "main"), root, client)
            commit = RepoLayout(root, SMALL_REPO_ID).published_commits()[0]
            layout = RepoLayout(root, SMALL_REPO_ID)
            full = verify_published(layout, commit, full=True)
            quick = verify_published(layout, commit)
            print(f"\n(b) re-verification of an unchanged tree of {quick.files} files (goal < 1 s)")
            print(f"  full re-hash       {full.seconds * 1000:8.1f} ms")
            print(f"  stat-cache verify  {quick.seconds * 1000:8.1f} ms  "
                  f"({quick.rehashed_files} files re-hashed)")  # fmt: skip

            # (c) fetch + verify vs snapshot_download + a separate sha256 pass
            started = time.perf_counter()
            snapshot = Path(
                snapshot_download(
                    REPO_ID, endpoint=endpoint, local_dir=work / "snapshot", max_workers=8
                )
            )
            downloaded = time.perf_counter() - started
            shards = sorted(snapshot.glob("*.safetensors"))
            hash_files([(p, p.name, False) for p in shards])
            warm = time.perf_counter() - started
            started = time.perf_counter()
            for path in shards:  # make it durable, then read it back from storage, as a
                drop_from_page_cache(path)  # separate pass must for weights larger than RAM
            hash_files([(p, p.name, False) for p in shards])
            cold = downloaded + time.perf_counter() - started
            started = time.perf_counter()
            fetch_weights(WeightsSource(REPO_ID, "main"), work / "fetched", client)
            ours = time.perf_counter() - started
            print(f"\n(c) fetch + verify {mib:.0f} MiB through the sandbox Hub (goal ≤ 0.60)")
            rows = [
                ("snapshot_download alone (no verification)", downloaded),
                ("snapshot_download + sha256 pass, page cache warm", warm),
                ("snapshot_download + fsync + sha256 pass read back", cold),
                ("llm-rollout fetch (hash on the fly, fsync, publish)", ours),
            ]
            for label, seconds in rows:
                print(f"  {label:52s} {seconds:7.2f} s  vs warm {seconds / warm:.2f}"
                      f"  vs read-back {seconds / cold:.2f}")  # fmt: skip

            # (d) a link that drops every N MB: bytes downloaded vs the file's size
            size = options.flaky_mb * 10**6
            drop = options.drop_every_mb * 10**6
            print(f"\n(d) a {options.flaky_mb} MB file over a link that drops every "
                  f"{options.drop_every_mb} MB (goal ≤ 1.10× its size)")  # fmt: skip
            for label, run in [
                ("llm-rollout fetch", lambda: fetch_weights(
                    WeightsSource(FLAKY_REPO_ID, "main"), work / "flaky-fetched", client)),
                ("huggingface_hub hf_hub_download", lambda: hf_hub_download(
                    FLAKY_REPO_ID, FLAKY_FILE, endpoint=endpoint, cache_dir=work / "flaky-hf")),
            ]:  # fmt: skip
                sent, requests, outcome = flaky_run(endpoint, drop, run)
                print(f"  {label:34s} {sent / 1e6:8.1f} MB in {requests:3d} requests  "
                      f"{sent / size:5.2f}×  {outcome}")  # fmt: skip
        finally:
            hub_process.terminate()
            hub_process.wait()
    finally:
        if options.work is None:
            shutil.rmtree(work, ignore_errors=True)


def drop_from_page_cache(path: Path) -> None:
    """Flush a file to disk and evict it from the page cache (no root needed)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(descriptor)


def flaky_run(endpoint: str, drop: int, run: object) -> tuple[int, int, str]:
    """Run a download while the sandbox Hub cuts every answer for the flaky file after `drop`
    bytes; return (body bytes it sent, file requests, "ok" or the error)."""
    httpx2.delete(f"{endpoint}/_sandbox/stats")
    fault = {"kind": "cut_every", "repo": FLAKY_REPO_ID, "path": FLAKY_FILE, "offset": drop}
    httpx2.post(f"{endpoint}/_sandbox/faults", content=json.dumps(fault))
    try:
        run()  # type: ignore[operator]
        outcome = "ok"
    except Exception as error:  # the comparison reports any failure, whatever its type
        outcome = f"failed: {type(error).__name__}"
    finally:
        httpx2.delete(f"{endpoint}/_sandbox/faults")
    stats = httpx2.get(f"{endpoint}/_sandbox/stats").json()
    return (
        stats["body_bytes"].get(FLAKY_FILE, 0),
        stats["file_requests"].get(FLAKY_FILE, 0),
        outcome,
    )


def make_flaky(work: Path, size: int) -> Path:
    folder = work / "flaky"
    folder.mkdir()
    (folder / "config.json").write_text("{}\n")
    with (folder / FLAKY_FILE).open("wb") as out:
        block = os.urandom(2**20)
        for start in range(0, size, len(block)):
            out.write(block[: min(len(block), size - start)])
    return folder


def make_small(work: Path, count: int) -> Path:
    folder = work / "small"
    folder.mkdir()
    for index in range(count):
        (folder / f"part-{index:04d}.safetensors").write_bytes(os.urandom(64 * 1024))
    return folder


if __name__ == "__main__":
    main()
