#!/usr/bin/env bash
# Install hgnn for development: a CPU torch first (only when no torch is present), then the project.
# Installing torch first keeps pip from resolving `torch>=2.3` to the newest CUDA build (several GB).
set -euo pipefail
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${HGNN_TORCH_VERSION:-2.13.0}
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  echo "[install] no torch found: installing torch==$TORCH_VERSION first"
  "$PYTHON" -m pip install --quiet "torch==$TORCH_VERSION"
fi
cd "$(dirname "$0")/.."
# A CPU torch gets Triton for the interpreter tests; a CUDA torch already has the Triton it pins.
EXTRAS=test
if "$PYTHON" -c "import sys, torch; sys.exit(torch.version.cuda is not None)"; then
  EXTRAS=test,interpret
fi
"$PYTHON" -m pip install --quiet -e ".[$EXTRAS]"
"$PYTHON" -c "import torch, torch_geometric, hgnn; print(f'[install] hgnn {hgnn.__version__}, torch {torch.__version__}, torch_geometric {torch_geometric.__version__}')"
