"""Kubernetes: versioned release manifests, server-side apply, rollout watch, rollback."""
