"""The `llm-rollout` command line."""
