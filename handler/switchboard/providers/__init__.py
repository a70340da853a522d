"""The upstream providers: who hosts what, and the families of wire protocol switchboard speaks to them.

  registry.py       the providers, their official hosts, and the family each speaks (data: config reads it)
  adapters.py       the one Adapter per family, built on first use; `configure` reads every family's config
  base.py           the Adapter contract, and the stream loop every family shares
  upstream.py       the HTTP around a call            errors.py   upstream failures, scrubbed of keys
  transport/        the upstream hop itself: an asyncio protocol over llhttp, one keep-alive pool
  openai_compat.py  every OpenAI-compatible host       anthropic/, bedrock/   the translating families
  _translate.py     what the translating families share (they never import each other)
"""
