"""The real `folovllm serve` process on a free loopback port, driven with the official `openai` client."""
import concurrent.futures, json, random, signal, socket, subprocess, sys, tempfile, threading, time
from pathlib import Path
import httpx, pytest
from openai import OpenAI, BadRequestError, AuthenticationError, NotFoundError

bindir = Path(sys.executable).parent
KEY = 'test-key'

def free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def start_server(*extra, max_num_seqs=64):
    "A `folovllm serve` process on a free loopback port, its output in a file (a pipe nobody reads could fill and block it)."
    port, log = free_port(), tempfile.TemporaryFile('w+')
    proc = subprocess.Popen([str(bindir / 'folovllm'), 'serve', '--port', str(port), '--api-key', KEY, '--max-num-seqs', str(max_num_seqs),
                             '--served-model-name', 'smol', '--threads', '2', *extra], stdout=log, stderr=subprocess.STDOUT, text=True)
    base = f'http://127.0.0.1:{port}'
    for _ in range(600):                                   # up to 60 s for the model to load
        if proc.poll() is not None: pytest.fail(f'server exited: {output(log)}')
        try:
            if httpx.get(base + '/health', timeout=1).status_code == 200: break
        except httpx.HTTPError: pass
        time.sleep(0.1)
    else:
        proc.kill(); pytest.fail('server did not become healthy')
    return proc, base, log

def output(log) -> str:
    log.flush(); log.seek(0); return log.read()

@pytest.fixture(scope='module')
def server():
    proc, base, log = start_server()
    yield proc, base, log
    if proc.poll() is None: proc.kill()

@pytest.fixture(scope='module')
def client(server):
    return OpenAI(base_url=server[1] + '/v1', api_key=KEY, max_retries=0, timeout=120)

@pytest.fixture(scope='module')
def offline():
    from folovllm import LLM
    return LLM(max_num_seqs=64)

AUTH = {'Authorization': f'Bearer {KEY}'}
def stats(base): return httpx.get(base + '/stats', headers=AUTH, timeout=5).json()

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

def wait_idle(base, timeout=10.0) -> dict:
    "Stats once nothing runs or waits and every KV block is free (or the last ones seen after `timeout` s)."
    t0 = time.time()
    while True:
        s = stats(base)
        if (s['running'], s['waiting'], s['kv_blocks_used_now']) == (0, 0, 0) or time.time() - t0 > timeout: return s
        time.sleep(0.05)

def test_disconnect_aborts_and_frees_blocks(server):
    base = server[1]
    with httpx.stream('POST', base + '/v1/completions', headers=AUTH, timeout=60,
                      json={'prompt': 'Tell me a very long story.', 'max_tokens': 2000, 'ignore_eos': True, 'stream': True}) as r:
        it = r.iter_lines()                               # kept: an abandoned iterator closes the connection when collected
        lines = [next(it) for _ in range(5)]
        s = stats(base)
        assert s['running'] == 1, (json.dumps(s), lines, output(server[2])[-3000:])
    s = wait_idle(base)
    assert s['running'] == 0 and s['kv_blocks_used_now'] == 0, s
    with pytest.raises(httpx.ReadTimeout):               # not streaming: the client gives up after 1 s and hangs up
        httpx.post(base + '/v1/completions', headers=AUTH, timeout=1.0,
                   json={'prompt': 'Tell me a very long story.', 'max_tokens': 2000, 'ignore_eos': True})
    t0 = time.time(); s = wait_idle(base)
    assert s['running'] == 0 and s['kv_blocks_used_now'] == 0 and time.time() - t0 < 5, s   # not after 2000 tokens (~60 s)

def test_keys_paths_and_errors_in_openai_shape(server):
    base = server[1]
    for path in ('/stats', '/docs', '/openapi.json', '/v1/models'):
        r = httpx.get(base + path, timeout=10)
        assert r.status_code == 401 and r.json()['error']['type'] == 'authentication_error', (path, r.text)
    assert httpx.get(base + '/health', timeout=10).status_code == 200
    for r, status in ((httpx.get(base + '/v1/nope', headers=AUTH), 404), (httpx.get(base + '/v1/completions', headers=AUTH), 405),
                      (httpx.post(base + '/v1/completions', headers={**AUTH, 'Content-Type': 'application/json'}, content=b'{"prompt": "\xff"}'), 400),
                      (httpx.post(base + '/v1/completions', headers={**AUTH, 'Content-Type': 'application/json'}, content=b'[' * 100000 + b']' * 100000), 400)):
        assert r.status_code == status and set(r.json()['error']) == {'message', 'type', 'param', 'code'}, r.text
    c = httpx.Client(headers=AUTH, timeout=30)            # one keep-alive connection: an error must not reset it
    r = c.post(base + '/v1/completions', content=b'{"prompt": "x\\ud800y"}', headers={'Content-Type': 'application/json'})
    assert r.status_code == 400 and r.json()['error']['param'] == 'prompt' and 'lone surrogate' in r.json()['error']['message'], r.text
    r = c.post(base + '/v1/chat/completions', content=b'{"messages": [{"role": "user", "content": "x\\udc80"}]}',
               headers={'Content-Type': 'application/json'})
    assert r.status_code == 400 and r.json()['error']['param'] == 'messages' and 'not valid Unicode' in r.json()['error']['message'], r.text
    for body, param in (({'prompt': 'hi', 'max_tokens': True}, 'max_tokens'), ({'prompt': [True, False]}, 'prompt'),
                        ({'prompt': 'hi', 'best_of': 3, 'stream': True}, 'best_of'), ({'prompt': 'hi', 'suffix': 'x'}, 'suffix'),
                        ({'prompt': 'hi', 'max_tokens': 10**30}, 'max_tokens'), ({'prompt': 'hi', 'logit_bias': {'99999': 1}}, 'logit_bias'),
                        ({'prompt': 'hi', 'functions': []}, 'functions')):
        r = c.post(base + '/v1/completions', json=body)
        assert r.status_code == 400 and r.json()['error']['param'] == param, (body, r.text)
    r = c.post(base + '/v1/chat/completions', json={'messages': [{'role': 'user', 'content': 'hi'}], 'max_completion_tokens': 0, 'max_tokens': 5})
    assert r.status_code == 400 and r.json()['error']['param'] == 'max_completion_tokens', r.text
    assert c.post(base + '/v1/completions', json={'prompt': 'still fine', 'max_tokens': 2}).json()['usage']['completion_tokens'] == 2

def test_sigterm_shuts_down_cleanly(server):
    proc = server[0]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert 'Traceback' not in output(server[2]), output(server[2])

def wait_running(base, k: int, timeout=30.0):
    t0 = time.time()
    while stats(base)['running'] < k:
        assert time.time() - t0 < timeout, stats(base)
        time.sleep(0.05)

def sse_events(r) -> list[str]:
    return [l[6:] for l in r.iter_lines() if l.startswith('data: ')]

def long_streams(base, k: int, box: list):
    "Open k streams that cannot finish soon; each thread appends its events to `box`."
    def one():
        with httpx.stream('POST', base + '/v1/completions', headers=AUTH, timeout=60,
                          json={'prompt': 'Tell me a very long story.', 'max_tokens': 4000, 'ignore_eos': True, 'stream': True}) as r:
            box.append(sse_events(r))
    threads = [threading.Thread(target=one) for _ in range(k)]
    for t in threads: t.start()
    return threads

@pytest.mark.parametrize('sig,twice,timeout', [(signal.SIGTERM, False, 1), (signal.SIGINT, False, 1), (signal.SIGINT, True, 30)])
def test_stop_signal_cuts_open_streams_at_the_shutdown_timeout(sig, twice, timeout):
    "One signal: open streams get `--shutdown-timeout` seconds, then an error event and [DONE]. A second: cut now."
    proc, base, log = start_server('--shutdown-timeout', str(timeout))
    try:
        box = []; threads = long_streams(base, 2, box)
        wait_running(base, 2)
        t0 = time.time(); proc.send_signal(sig)
        if twice: time.sleep(0.5); proc.send_signal(sig)
        assert proc.wait(timeout=timeout + 20) == 0
        took = time.time() - t0
        for t in threads: t.join(timeout=10)
    finally:
        if proc.poll() is None: proc.kill()
    assert took < (0.5 if twice else timeout) + 4, took   # the deadline (or the second signal), plus one step and the exit
    assert len(box) == 2
    for events in box:
        assert events[-1] == '[DONE]' and json.loads(events[-2])['error']['code'] == 503, events[-3:]
    assert 'Traceback' not in output(log) and 'CancelledError' not in output(log), output(log)

BAD_BODIES = [({'prompt': 'x', 'temperature': -1}, 'temperature'), ({'prompt': ''}, 'prompt'), ({'prompt': 'x', 'n': 0}, 'n'),
              ({'prompt': 'x', 'logprobs': 10**6}, 'logprobs'), ({'prompt': 'x', 'seed': 2**64}, 'seed'), ({'prompt': [10**7]}, 'prompt'),
              ({'prompt': 'x', 'stop': 5}, 'stop'), ({'prompt': 'x', 'top_p': 0}, 'top_p'), ({'prompt': 'x', 'max_tokens': 0}, 'max_tokens'),
              ({'prompt': 'x', 'tools': []}, 'tools'), ({'prompt': 'x', 'logit_bias': {'1': 500}}, 'logit_bias')]
SOAK_PROMPTS = ['The capital of France is', 'def fibonacci(n):', 'Water boils at', 'Count to ten:', 'Once upon a time']

def test_randomized_soak_then_sigterm(offline):
    """Concurrent streaming and non-streaming clients send random valid and invalid bodies, hang up at random, for
    25 s; then nothing has leaked, and SIGTERM with streams open exits within the drain deadline."""
    from folovllm import SamplingParams
    want = {p: o.outputs[0].text for p, o in zip(SOAK_PROMPTS, offline.generate(
        SOAK_PROMPTS, SamplingParams(temperature=0, max_tokens=12, ignore_eos=True), use_tqdm=False))}
    proc, base, log = start_server('--shutdown-timeout', '2', max_num_seqs=16)
    problems, counts, lock = [], {}, threading.Lock()
    def note(kind, problem=None):
        with lock:
            counts[kind] = counts.get(kind, 0) + 1
            if problem: problems.append((kind, problem))
    def client(seed: int, until: float):
        rng, c = random.Random(seed), httpx.Client(headers=AUTH, timeout=60)
        while time.time() < until:
            kind, p = rng.choice(['stream', 'plain', 'bad', 'stream-leave', 'plain-leave', 'chat']), rng.choice(SOAK_PROMPTS)
            body = {'prompt': p, 'max_tokens': 12, 'temperature': 0, 'ignore_eos': True}
            try:
                if kind == 'bad':
                    body, param = rng.choice(BAD_BODIES)
                    r = c.post(base + '/v1/completions', json={**body, 'stream': rng.random() < 0.5})
                    err = r.json().get('error', {})
                    note(kind, None if r.status_code == 400 and err.get('param') == param else (body, r.status_code, r.text[:200]))
                elif kind == 'plain':
                    r = c.post(base + '/v1/completions', json=body)
                    note(kind, None if r.status_code == 200 and r.json()['choices'][0]['text'] == want[p] else (p, r.text[:200]))
                elif kind == 'stream':
                    with c.stream('POST', base + '/v1/completions', json={**body, 'stream': True}) as r: events = sse_events(r)
                    text = ''.join(json.loads(e)['choices'][0]['text'] for e in events[:-1] if json.loads(e).get('choices'))
                    note(kind, None if events[-1] == '[DONE]' and text == want[p] else (p, events[-2:]))
                elif kind == 'stream-leave':
                    with c.stream('POST', base + '/v1/completions', json={**body, 'max_tokens': 400, 'stream': True}) as r:
                        for _, _ in zip(range(rng.randint(1, 8)), r.iter_lines()): pass
                    note(kind)
                elif kind == 'plain-leave':
                    try: httpx.post(base + '/v1/completions', headers=AUTH, timeout=rng.uniform(0.2, 1.0), json={**body, 'max_tokens': 400})
                    except httpx.ReadTimeout: pass
                    note(kind)
                else:
                    r = c.post(base + '/v1/chat/completions', json={'messages': [{'role': 'user', 'content': p}], 'max_tokens': 8,
                                                                   'temperature': 0, 'n': rng.choice([1, 2])})
                    note(kind, None if r.status_code == 200 and r.json()['usage']['completion_tokens'] >= 2 else r.text[:200])
            except Exception as e: note(kind, repr(e))
    try:
        until = time.time() + 25
        with concurrent.futures.ThreadPoolExecutor(8) as pool: list(pool.map(lambda i: client(i, until), range(8)))
        s = wait_idle(base)
        assert (s['running'], s['waiting'], s['kv_blocks_used_now']) == (0, 0, 0), s
        assert not problems, problems[:5]
        assert sum(counts.values()) >= 50 and len(counts) == 6, counts
        box = []; threads = long_streams(base, 3, box)
        wait_running(base, 3)
        t0 = time.time(); proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0 and time.time() - t0 < 2 + 4
        for t in threads: t.join(timeout=10)
    finally:
        if proc.poll() is None: proc.kill()
    assert [e[-1] for e in box] == ['[DONE]'] * 3 and all('error' in json.loads(e[-2]) for e in box)
    assert 'Traceback' not in output(log), output(log)[-3000:]
