"""The model's front door: an OpenAI-compatible router between clients, the model's local
releases (weighted, sticky, with a shadow) and cloud fallbacks. Domain code: no Dagster."""
