"""The engine without its compiled kernels (`FOLOVLLM_KERNELS=0`, as if `folovllm._C` had not been built): one
warning, torch's paths, the same greedy tokens as with the kernels (and as with them but `enforce_eager=True`, every
step layer by layer); and a bad value of the variable is one clear line."""
import json, os, subprocess, sys
from pathlib import Path

bindir = Path(sys.executable).parent

PROBE = r'''
import json, warnings
warnings.simplefilter('always')
with warnings.catch_warnings(record=True) as said:
    import torch
    from folovllm import LLM, SamplingParams
    from folovllm.gptq import GPTQLinear, pack_gptq, rtn_quantize
    llm = LLM(max_num_seqs=8)
    prompts = ['The capital of France is', 'def fibonacci(n):', 'Once upon a time', 'List three colors:']
    outs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=24), use_tqdm=False)
    eager = LLM(max_num_seqs=8, enforce_eager=True)
    eager_outs = eager.generate(prompts, SamplingParams(temperature=0, max_tokens=24), use_tqdm=False)
    t = pack_gptq(rtn_quantize(torch.randn(32, 64, generator=torch.Generator().manual_seed(0)), 4, 32))
    layer = GPTQLinear(t['qweight'], t['qzeros'], t['scales'], t['g_idx'], 4, 32)
    try: GPTQLinear(t['qweight'], t['qzeros'], t['scales'], t['g_idx'], 4, 32, kernel='cpp'); cpp_error = None
    except ValueError as e: cpp_error = str(e)
print(json.dumps({'tokens': [o.outputs[0].token_ids for o in outs], 'backend': llm.engine.runner.backend.name,
                  'eager_tokens': [o.outputs[0].token_ids for o in eager_outs], 'eager_decoder': repr(eager.engine.runner.decoder),
                  'decoder': repr(llm.engine.runner.decoder),
                  'linear': repr(llm.engine.lm.model.layers[0].mlp.gate_up_proj.kernel), 'gptq': layer.kernel,
                  'cpp_error': cpp_error, 'warnings': [str(w.message) for w in said if 'compiled kernels' in str(w.message)]}))
'''

def probe(**env):
    r = subprocess.run([sys.executable, '-c', PROBE], capture_output=True, text=True, timeout=600, env={**os.environ, **env})
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(r.stdout.strip().splitlines()[-1])

def test_without_kernels_same_tokens_one_warning():
    on, off = probe(), probe(FOLOVLLM_KERNELS='0')
    assert on['backend'] == 'cpp' and 'compiled' in on['linear'] and on['gptq'] == 'cpp' and on['cpp_error'] is None
    assert on['decoder'].startswith('CompiledDecode(30 layers') and on['eager_decoder'] == 'None' and off['decoder'] == 'None'
    assert on['eager_tokens'] == on['tokens']
    assert on['warnings'] == []
    assert off['backend'] == 'sdpa' and 'unavailable: torch path' in off['linear'] and off['gptq'] == 'int4'
    assert "kernel='cpp' cannot run here: folovllm's compiled kernels are not available: FOLOVLLM_KERNELS=0 turns them off" in off['cpp_error']
    assert len(off['warnings']) == 1 and 'FOLOVLLM_KERNELS=0 turns them off' in off['warnings'][0]
    assert 'slower' in off['warnings'][0] and 'pip install --no-build-isolation' in off['warnings'][0]
    assert on['tokens'] == off['tokens'] and all(len(t) == 24 for t in on['tokens'])

def test_bad_kernels_variable_is_one_line():
    r = subprocess.run([str(bindir / 'folovllm'), 'generate', 'hi', '--max-tokens', '2'], capture_output=True, text=True,
                       timeout=300, env={**os.environ, 'FOLOVLLM_KERNELS': 'off'})
    assert r.returncode != 0 and 'Traceback' not in r.stderr
    assert "FOLOVLLM_KERNELS='off' must be '1' (use the compiled kernels, the default) or '0'" in r.stderr
