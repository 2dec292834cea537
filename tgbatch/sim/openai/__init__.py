"""The simulator's OpenAI-compatible routes in three flavours (TGI's Messages API, vLLM, SGLang):
``routes`` (handlers and admission), ``requests`` (bodies into jobs), ``engine`` (the model with reasoning),
``shape`` / ``stream`` (answers per flavour), ``flavors`` (the per-flavour table), ``queue`` (the FIFO
scheduler of vLLM and SGLang), ``template`` (the chat template)."""
