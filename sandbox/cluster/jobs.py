"""The Job controller: a pod per attempt until one succeeds, or `backoffLimit` failures."""

from __future__ import annotations

import copy
import secrets
import string

from sandbox.cluster.objects import Obj, is_owned_by, iso, now, owner_reference
from sandbox.cluster.store import ApiError, ObjectStore

DEFAULT_BACKOFF_LIMIT = 6
MANAGER = "sandbox-job-controller"


class JobController:
    """Reconciles every Job in the store."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.jobs = store.resource("jobs.batch")
        self.pods = store.resource("pods")

    def reconcile(self) -> None:
        jobs, _ = self.store.list(self.jobs)
        pods, _ = self.store.list(self.pods)
        for job in jobs:
            try:
                self._reconcile(job, [p for p in pods if is_owned_by(p, job)])
            except ApiError as error:
                if error.code not in (404, 409):
                    raise

    def _reconcile(self, job: Obj, pods: list[Obj]) -> None:
        status = dict(job.get("status") or {})
        if any(
            c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
            for c in status.get("conditions") or []
        ):
            return
        succeeded = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Succeeded")
        failed = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Failed")
        active = len(pods) - succeeded - failed
        limit = int(job["spec"].get("backoffLimit", DEFAULT_BACKOFF_LIMIT))
        conditions = []
        if succeeded:
            conditions.append(
                {"type": "Complete", "status": "True", "lastTransitionTime": iso(now())}
            )
        elif failed > limit:
            conditions.append(
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                    "lastTransitionTime": iso(now()),
                }
            )
        elif active == 0:
            self._create_pod(job)
            active = 1
        new_status = {
            "active": active,
            "succeeded": succeeded,
            "failed": failed,
            "startTime": status.get("startTime", iso(now())),
        }
        if conditions:
            new_status["conditions"] = conditions
            new_status["completionTime"] = iso(now())
            new_status["active"] = 0
        if new_status != status:
            job["status"] = new_status
            self.store.replace(
                self.jobs,
                job["metadata"]["namespace"],
                job["metadata"]["name"],
                job,
                subresource="status",
            )

    def _create_pod(self, job: Obj) -> None:
        template = copy.deepcopy(job["spec"]["template"])
        suffix = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5))
        labels = {
            **(template.get("metadata", {}).get("labels") or {}),
            "job-name": job["metadata"]["name"],
        }
        pod = {
            "metadata": {
                "name": f"{job['metadata']['name']}-{suffix}",
                "labels": labels,
                "ownerReferences": [owner_reference(job)],
            },
            "spec": template["spec"],
            "status": {"phase": "Pending"},
        }
        self.store.create(self.pods, job["metadata"]["namespace"], pod, MANAGER)
