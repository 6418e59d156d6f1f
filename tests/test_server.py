"""The real `folovllm serve` process on a free loopback port, driven with the official `openai` client."""
import concurrent.futures, json, signal, socket, subprocess, sys, time
from pathlib import Path
import httpx, pytest
from openai import OpenAI, BadRequestError, AuthenticationError, NotFoundError

bindir = Path(sys.executable).parent
KEY = 'test-key'

def free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

@pytest.fixture(scope='module')
def server():
    port = free_port()
    proc = subprocess.Popen([str(bindir / 'folovllm'), 'serve', '--port', str(port), '--api-key', KEY, '--max-num-seqs', '64',
                             '--served-model-name', 'smol', '--threads', '2'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f'http://127.0.0.1:{port}'
    for _ in range(600):                                   # up to 60 s for the model to load
        if proc.poll() is not None: pytest.fail(f'server exited: {proc.stdout.read()}')
        try:
            if httpx.get(base + '/health', timeout=1).status_code == 200: break
        except httpx.HTTPError: pass
        time.sleep(0.1)
    else:
        proc.kill(); pytest.fail('server did not become healthy')
    yield proc, base
    if proc.poll() is None: proc.kill()

@pytest.fixture(scope='module')
def client(server):
    return OpenAI(base_url=server[1] + '/v1', api_key=KEY, max_retries=0, timeout=120)

@pytest.fixture(scope='module')
def offline():
    from folovllm import LLM
    return LLM(max_num_seqs=64)

def stats(base): return httpx.get(base + '/stats', timeout=5).json()

def test_models_and_completion_equal_offline_greedy(client, offline):
    from folovllm import SamplingParams
    assert [m.id for m in client.models.list().data] == ['smol']
    prompts = ['The capital of France is', 'def fibonacci(n):', 'Water boils at']
    want = offline.generate(prompts, SamplingParams(temperature=0, max_tokens=16), use_tqdm=False)
    for p, w in zip(prompts, want):
        r = client.completions.create(model='smol', prompt=p, max_tokens=16, temperature=0)
        assert r.choices[0].text == w.outputs[0].text
        assert r.usage.completion_tokens == len(w.outputs[0].token_ids) and r.usage.prompt_tokens == len(w.prompt_token_ids)

def test_streamed_text_equals_non_streamed(client):
    msgs = [{'role': 'user', 'content': 'Give me two facts about the Moon.'}]
    full = client.chat.completions.create(model='smol', messages=msgs, max_tokens=40, temperature=0).choices[0].message.content
    parts = [c.choices[0].delta.content or '' for c in
             client.chat.completions.create(model='smol', messages=msgs, max_tokens=40, temperature=0, stream=True) if c.choices]
    assert ''.join(parts) == full and len(parts) > 3
    text = client.completions.create(model='smol', prompt='Once upon a time', max_tokens=20, temperature=0).choices[0].text
    chunks = list(client.completions.create(model='smol', prompt='Once upon a time', max_tokens=20, temperature=0,
                                            stream=True, stream_options={'include_usage': True}))
    assert ''.join(c.choices[0].text for c in chunks if c.choices) == text and chunks[-1].usage.completion_tokens == 20

def test_bad_inputs_get_openai_errors_and_server_stays_up(client, server):
    with pytest.raises(BadRequestError) as e: client.completions.create(model='smol', prompt='hi', temperature=-1)
    assert 'temperature' in str(e.value)
    with pytest.raises(BadRequestError): client.completions.create(model='smol', prompt='', max_tokens=3)
    with pytest.raises(BadRequestError): client.completions.create(model='smol', prompt='hi', n=500)
    with pytest.raises(NotFoundError): client.completions.create(model='gpt-9', prompt='hi')
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=server[1] + '/v1', api_key='wrong', max_retries=0).models.list()
    r = httpx.post(server[1] + '/v1/completions', content=b'{"prompt": ', timeout=10,
                   headers={'Authorization': f'Bearer {KEY}', 'Content-Type': 'application/json'})
    assert r.status_code == 400 and r.json()['error']['type'] == 'invalid_request_error'
    r = httpx.post(server[1] + '/v1/completions', json={'prompt': 'hi', 'max_tokens': 'many'}, timeout=10,
                   headers={'Authorization': f'Bearer {KEY}'})
    assert r.status_code == 400 and r.json()['error']['param'] == 'max_tokens'
    r = httpx.post(server[1] + '/v1/completions', json={'prompt': 'hi', 'seed': 2**64}, timeout=10, headers={'Authorization': f'Bearer {KEY}'})
    assert r.status_code == 400 and r.json()['error']['param'] == 'seed' and 'seed=18446744073709551616 is invalid' in r.json()['error']['message']
    assert client.completions.create(model='smol', prompt='still here?', max_tokens=2).usage.completion_tokens == 2

def test_logprobs_above_the_vocabulary_is_a_400_that_leaves_other_streams_alone(client, server):
    def good(i):
        chunks = list(client.completions.create(model='smol', prompt=f'Count to {i}:', max_tokens=24, temperature=0, stream=True,
                                                extra_body={'ignore_eos': True}))
        return ''.join(c.choices[0].text for c in chunks if c.choices)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        streams = [pool.submit(good, i) for i in (3, 4)]
        time.sleep(0.5)                                          # the good streams are running
        with pytest.raises(BadRequestError) as e:
            client.completions.create(model='smol', prompt='The capital of France is', max_tokens=4, temperature=0, logprobs=100000)
        assert e.value.body['param'] == 'logprobs' and 'logprobs=100000 is invalid' in e.value.body['message']
        with pytest.raises(BadRequestError):
            client.chat.completions.create(model='smol', messages=[{'role': 'user', 'content': 'hi'}], max_tokens=4,
                                           logprobs=True, top_logprobs=100000)
        texts = [f.result() for f in streams]
    for i, t in zip((3, 4), texts):
        alone = client.completions.create(model='smol', prompt=f'Count to {i}:', max_tokens=24, temperature=0, extra_body={'ignore_eos': True})
        assert t == alone.choices[0].text

def test_32_concurrent_streaming_clients_all_complete(client, server):
    def one(i):
        chunks = list(client.completions.create(model='smol', prompt=f'Count to {i}:', max_tokens=12, temperature=0, stream=True,
                                                stream_options={'include_usage': True}, extra_body={'ignore_eos': True}))
        return ''.join(c.choices[0].text for c in chunks if c.choices), chunks[-1].usage.completion_tokens
    with concurrent.futures.ThreadPoolExecutor(32) as pool: results = list(pool.map(one, range(32)))
    assert [n for _, n in results] == [12] * 32                  # none lost, none cut short
    alone = client.completions.create(model='smol', prompt='Count to 7:', max_tokens=12, temperature=0, extra_body={'ignore_eos': True})
    assert results[7][0] == alone.choices[0].text                # batching does not change a greedy answer
    assert stats(server[1])['running_peak'] >= 8                 # they really shared batches

def test_disconnect_aborts_and_frees_blocks(server):
    base = server[1]
    with httpx.stream('POST', base + '/v1/completions', headers={'Authorization': f'Bearer {KEY}'}, timeout=60,
                      json={'prompt': 'Tell me a very long story.', 'max_tokens': 2000, 'ignore_eos': True, 'stream': True}) as r:
        for i, _ in zip(range(5), r.iter_lines()): pass
        assert stats(base)['running'] == 1
    for _ in range(100):
        s = stats(base)
        if s['running'] == 0 and s['kv_blocks_used_now'] == 0: break
        time.sleep(0.1)
    assert s['running'] == 0 and s['kv_blocks_used_now'] == 0, s

def test_sigterm_shuts_down_cleanly(server):
    proc = server[0]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
