__version__ = "0.1.0"
from .config import SamplingParams, EngineConfig, ModelConfig, CacheConfig, SchedulerConfig
from .sequence import RequestOutput, CompletionOutput
from .engine import LLMEngine, AsyncLLMEngine
from .llm import LLM
