__version__ = "0.1.0"
from .config import SamplingParams, EngineConfig, ModelConfig, CacheConfig, SchedulerConfig
from .sequence import RequestOutput, CompletionOutput
from .llm import LLM
from .engine import LLMEngine, AsyncLLMEngine   # registers the continuous-batching engine
from .thin_gemm import set_thin_gemm   # Linear's packed kernel for CPU products of 1-64 rows (M2's later session)
from .block_manager import PagedEngine, KVCacheManager   # registers the paged engine: LLM()'s default since M3
from .attention import CppBackend   # registers the compiled paged-decode kernel: the CPU default since M4
from .chunked_prefill import ChunkedEngine, ChunkedScheduler   # registers the chunked-prefill engine: the default since M5
from .prefix_cache import PrefixCachingEngine, PrefixCachingKVManager   # registers the prefix-caching engine: the default since M6
from .gptq import GPTQLinear, quantize_model, save_gptq   # registers QUANT_METHODS['gptq']: LLM(model=<gptq dir>) since M7
