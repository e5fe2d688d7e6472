"""Dagster itself on Kubernetes: values for the official Helm chart (values.yaml), a
production dagster.yaml for teams not using Helm, and the objects they imply that llm-rollout
renders and validates itself (scaleout.py): the RBAC, the user-code Deployment, a run's Job."""
