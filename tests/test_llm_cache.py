"""Cache key stability, hit/miss through the managed client, concurrent writers."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

from hypothesis import given, settings
from hypothesis import strategies as st

from diziner.errors import LLMCallError
from diziner.testing import call_once
from diziner.llm.base import LLMRequest, LLMResponse
from diziner.llm.cache import LLMCache, cache_key, canonical_json
from diziner.llm.factory import ManagedClient
from diziner.llm.ledger import Ledger
from diziner.llm.pool import AnnotatorConfig
from diziner.llm.retry import Limiter, RetryPolicy

IDENT = {"backend": "openai", "model": "m", "endpoint": "chat", "structured_output": "json_schema"}


def req(text="hello", **kw):
    return LLMRequest(messages=[{"role": "user", "content": text}], **kw)


class FakeAdapter:
    """Counts calls; answers with the user's text upper-cased, or fails when told to."""

    backend = "openai"

    def __init__(self, fail=False):
        self.calls = 0
        self.fail = fail

    def identity(self):
        return IDENT

    def endpoint_key(self):
        return "fake"

    async def complete(self, r):
        self.calls += 1
        if self.fail:
            raise LLMCallError("HTTP 400 from fake: bad", "http_400")
        return LLMResponse(text=r.messages[-1]["content"].upper(), tokens_in=3, tokens_out=2, model="m", backend="openai")


def managed(adapter, cache, ledger=None):
    cfg = AnnotatorConfig(id="a", backend="openai", model="m", base_url="http://x/v1")
    return ManagedClient(adapter, cfg, cache=cache, ledger=ledger or Ledger(), limiter=Limiter(4),
                         policy=RetryPolicy(max_retries=0))


params_st = st.dictionaries(st.sampled_from(["temperature", "max_tokens", "top_p", "seed", "stop"]),
                            st.one_of(st.integers(0, 5000), st.floats(0, 2, allow_nan=False), st.text(max_size=5)),
                            max_size=5)


@given(params_st, st.randoms())
@settings(max_examples=60, deadline=None)
def test_key_ignores_dict_order(params, rnd):
    items = list(params.items())
    rnd.shuffle(items)
    a = req(params=params)
    b = req(params=dict(items))
    assert cache_key(IDENT, a) == cache_key(IDENT, b)


@given(st.text(max_size=40), st.text(max_size=40))
@settings(max_examples=60, deadline=None)
def test_key_separates_content(x, y):
    same = cache_key(IDENT, req(x)) == cache_key(IDENT, req(y))
    assert same == (x == y)


def test_key_details():
    base = cache_key(IDENT, req(params={"temperature": 0}))
    assert base == cache_key(IDENT, req(params={"temperature": 0.0}))  # 0 == 0.0
    # Ledger tags are not part of the key
    assert base == cache_key(IDENT, req(params={"temperature": 0}, purpose="supervise:1", annotator="z", iteration=3))
    assert base != cache_key({**IDENT, "model": "m2"}, req(params={"temperature": 0}))
    assert base != cache_key({**IDENT, "backend": "anthropic"}, req(params={"temperature": 0}))
    assert base != cache_key(IDENT, req(params={"temperature": 0}, json_schema={"type": "object"}))
    assert base != cache_key(IDENT, LLMRequest(prompt="hello", params={"temperature": 0}))
    # stable across processes and versions of dict ordering: a fixed value
    assert canonical_json({"b": 1.0, "a": [1, 2.5]}) == '{"a":[1,2.5],"b":1}'


def test_hit_and_miss(tmp_path):
    cache = LLMCache(tmp_path / "c.sqlite")
    ad = FakeAdapter()
    ledger = Ledger()
    c = managed(ad, cache, ledger)

    async def go():
        r1 = await c.complete(req("abc"))
        r2 = await c.complete(req("abc", purpose="other"))
        r3 = await c.complete(req("xyz"))
        return r1, r2, r3

    r1, r2, r3 = asyncio.run(go())
    assert (r1.cached, r2.cached, r3.cached) == (False, True, False)
    assert r2.text == "ABC" and r2.tokens_in == 3 and r2.cost_usd == 0.0
    assert ad.calls == 2
    assert [r.cached for r in ledger.records] == [False, True, False]
    assert ledger.summary()["total"]["cached"] == 1
    assert len(cache) == 2
    cache.close()
    # persistent: a new handle sees the answers
    with LLMCache(tmp_path / "c.sqlite") as again:
        assert again.get(cache_key(IDENT, req("abc"))).text == "ABC"


def test_no_cache_skips_reads_but_writes(tmp_path):
    path = tmp_path / "c.sqlite"
    ad = FakeAdapter()
    c = managed(ad, LLMCache(path, read=False))
    call_once(c, req("abc"))
    call_once(c, req("abc"))
    assert ad.calls == 2  # no reads
    c2 = managed(ad, LLMCache(path))
    assert call_once(c2, req("abc")).cached  # but it was written


def test_failures_are_not_cached(tmp_path):
    cache = LLMCache(tmp_path / "c.sqlite")
    ad = FakeAdapter(fail=True)
    ledger = Ledger()
    c = managed(ad, cache, ledger)
    for _ in range(2):
        try:
            call_once(c, req("abc"))
        except LLMCallError as e:
            assert e.kind == "http_400"
    assert ad.calls == 2 and len(cache) == 0
    assert [r.ok for r in ledger.records] == [False, False]
    assert ledger.records[0].reason.startswith("HTTP 400")


WRITER = textwrap.dedent("""
    import sys
    from diziner.llm.base import LLMResponse
    from diziner.llm.cache import LLMCache
    c = LLMCache(sys.argv[1])
    tag = sys.argv[2]
    for i in range(300):
        c.put(f"{tag}-{i}", LLMResponse(text=f"{tag}{i}", model="m", backend="b"))
        if i % 10 == 0:
            c.get(f"{tag}-{i // 2}")
    c.close()
""")


def test_two_processes_write_concurrently(tmp_path):
    path = tmp_path / "shared.sqlite"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), tag], stderr=subprocess.PIPE)
             for tag in ("p", "q")]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
    with LLMCache(path) as c:
        assert len(c) == 600
        assert c.get("p-299").text == "p299" and c.get("q-0").text == "q0"


_json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=4) | st.integers(), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(_json_like)
def test_fast_normalisation_equals_the_reference(value):
    """The fast path over exact built-in types gives the same canonical form as the plain walk."""
    from diziner.llm.cache import _normalise, _normalise_slow

    assert _normalise(value) == _normalise_slow(value)
    assert canonical_json(value) == canonical_json(_normalise_slow(value))
