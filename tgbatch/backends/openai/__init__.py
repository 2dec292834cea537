"""OpenAI-style ``/v1/chat/completions`` and ``/v1/completions``, as TGI's Messages API, vLLM, SGLang and the HF
Inference Providers router speak them: ``wire`` (bodies, tolerant parsing, streams), ``errors`` (nested and flat
error bodies), ``models`` (typed answers), ``backend`` (the runner's seam, with each server's quirks)."""
