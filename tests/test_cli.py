"""End-to-end tests of the installed `folovllm` console script, run as a user would run it."""
import subprocess, sys
from pathlib import Path

bindir = Path(sys.executable).parent

def folovllm(*args, input=None, timeout=300):
    return subprocess.run([str(bindir / 'folovllm'), *args], capture_output=True, text=True, input=input, timeout=timeout)

def test_help_lists_commands():
    r = folovllm('--help')
    assert r.returncode == 0
    for cmd in ('generate', 'chat', 'serve', 'bench', 'quantize', 'demo'): assert cmd in r.stdout

def test_generate_greedy_is_deterministic_and_streaming_matches():
    a = folovllm('generate', 'The capital of France is', '--max-tokens', '8')
    b = folovllm('generate', 'The capital of France is', '--max-tokens', '8', '--stream')
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    assert a.stdout == b.stdout and 'Paris' in a.stdout
    assert 'finish_reason=length' in a.stderr and 'TTFT' in a.stderr

def test_bad_input_is_one_clear_line():
    r = folovllm('generate', 'hi', '--top-p', '2')
    assert r.returncode == 2 and 'SamplingParams.top_p=2.0 is invalid' in r.stderr and 'Traceback' not in r.stderr
    r = folovllm('generate', 'hi', '--seed', str(2**64))
    assert r.returncode == 2 and 'SamplingParams.seed=18446744073709551616 is invalid' in r.stderr and 'Traceback' not in r.stderr
    r = folovllm('generate', 'hi', '--model', 'no/such-model-anywhere')
    assert r.returncode == 2 and 'no/such-model-anywhere' in r.stderr and 'Traceback' not in r.stderr

def test_python_m_folovllm_is_the_same_command():
    r = subprocess.run([sys.executable, '-m', 'folovllm', 'generate', '2 + 2 =', '--max-tokens', '4'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() != ''

def test_bench_throughput_json():
    import json
    r = folovllm('bench', 'throughput', '--num-prompts', '4', '--min-len', '8', '--max-len', '16', '--no-hf', '--json',
                 '--max-num-seqs', '4')
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    ours = res['results'][0]
    assert res['num_requests'] == 4 and ours['name'] == 'folovllm' and ours['output_tok_s'] > 0 and 0 < ours['mfu'] < 1
    assert res['stats']['running_peak'] <= 4 and res['stats']['kv_blocks_used_now'] == 0

def test_quantize_refuses_bad_settings_before_any_work(tmp_path):
    r = folovllm('quantize', '--output', str(tmp_path / 'q'), '--bits', '5')
    assert r.returncode == 2 and 'bits=5 is not supported' in r.stderr and 'Traceback' not in r.stderr
    r = folovllm('quantize', '--output', str(tmp_path / 'q'), '--group-size', '-7')
    assert r.returncode == 2 and 'group_size=-7' in r.stderr and 'Traceback' not in r.stderr

def test_quant_kernel_by_name(tmp_path):
    from folovllm.__main__ import build_parser, make_llm
    from folovllm.gptq import GPTQLinear
    q = tmp_path / 'q'
    r = folovllm('quantize', '--method', 'rtn', '--output', str(q), '--quiet')
    assert r.returncode == 0, r.stderr
    outs = {k: folovllm('generate', 'The capital of France is', '--max-tokens', '8', '--model', str(q), '--quant-kernel', k)
            for k in ('cpp', 'reference')}
    assert all(o.returncode == 0 for o in outs.values()), [o.stderr for o in outs.values()]
    assert outs['cpp'].stdout == outs['reference'].stdout != ''
    llm = make_llm(build_parser().parse_args(['generate', 'x', '--model', str(q), '--quant-kernel', 'reference']))
    assert {m.kernel for m in llm.lm.model.modules() if isinstance(m, GPTQLinear)} == {'reference'}
    r = folovllm('generate', 'hi', '--quant-kernel', 'marlin')
    assert r.returncode == 2 and "invalid choice: 'marlin'" in r.stderr
