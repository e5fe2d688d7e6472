"""Container healthcheck: vLLM answers /health with 200 once the model is loaded."""

import os
import sys
import urllib.request

PORT = os.environ.get("LLM_ROLLOUT_HEALTH_PORT", "8000")

try:
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/health", timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError:
    sys.exit(1)
