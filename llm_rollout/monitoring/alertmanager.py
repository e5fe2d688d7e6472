"""Alertmanager configuration: critical alerts to Slack and to DingTalk/Feishu through a
webhook bridge, warnings to Slack; secrets (webhook URLs) are read from mounted files."""

from __future__ import annotations

from typing import Any

SECRETS_DIR = "/etc/alertmanager/secrets"  # where the Secret with the webhook URLs is mounted


def alertmanager_config(
    bridge_url: str = "http://alertmanager-webhook-bridge:8060/dingtalk/llm-rollout/send",
    slack_channel: str = "#llm-serving",
) -> dict[str, Any]:
    """A complete alertmanager.yml for llm-rollout's alerts (label `severity`)."""
    slack = {
        "api_url_file": f"{SECRETS_DIR}/slack-webhook-url",
        "channel": slack_channel,
        "send_resolved": True,
        "title": "[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }}"
        " ({{ .CommonLabels.model }})",
        "text": "{{ range .Alerts }}{{ .Annotations.description }}\n{{ end }}",
    }
    # DingTalk and Feishu take their own JSON: a bridge (prometheus-webhook-dingtalk, or a
    # Feishu equivalent) receives Alertmanager's webhook and holds the chat URL and secret.
    bridge = {"url": bridge_url, "send_resolved": True, "max_alerts": 20}
    return {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": "slack",
            "group_by": ["alertname", "namespace", "model"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": [
                {
                    "matchers": ['severity="critical"'],
                    "receiver": "critical",
                    "repeat_interval": "1h",
                },
                {"matchers": ['severity="warning"'], "receiver": "slack"},
            ],
        },
        "inhibit_rules": [
            {  # a stuck rollout explains the latency alerts of the same model
                "source_matchers": ['alertname="LlmRolloutStuck"'],
                "target_matchers": ['severity="warning"'],
                "equal": ["namespace"],
            }
        ],
        "receivers": [
            {"name": "slack", "slack_configs": [slack]},
            {"name": "critical", "slack_configs": [slack], "webhook_configs": [bridge]},
        ],
    }
