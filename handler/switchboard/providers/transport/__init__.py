"""The upstream hop: our own asyncio protocol over httptools (llhttp), one keep-alive pool per process.

llhttp parses every response (status line, headers, Content-Length, chunked framing); this package holds only
the connection management around it, and what the gateway promises on top:
  * redirects are never followed, no compression is asked for, no proxy unless SWITCHBOARD_TRUST_ENV;
  * a connection with anything unread or unsolicited on it (bytes past the end of a response, a second
    response nobody asked for, an unsolicited 408 while it idles) is closed, never reused, so a host cannot
    shift a connection one response behind and hand one caller another's answer;
  * a request that meets a close (before any byte of an answer) or an unsolicited 408 on a reused connection
    is retried once on a fresh connection (nothing reached the model, so that is safe);
  * caller-named hosts connect only to addresses that were checked (see CheckedResolver);
  * `read_timeout` seconds of silence, waiting for the head or between body reads, fail the read: one timer
    per connection looks at a stamp the socket's reads update, rather than a timer rescheduled per packet;
  * a body that cannot go on (a framing error, a close before its end) fails at once and closes the
    connection: never a read that waits forever;
  * error bodies are read to a cap, and every failure is one of three exceptions (errors.py).

Why our own: on loopback the client library this replaced took 1.1-1.3 ms from a POST to the first body bytes
where this takes about 0.5 ms, and that difference was most of what the gateway added to a voice agent's first
token.

  client.py      UpstreamClient: the pool, and how it connects (DNS, checked addresses, proxies, TLS)
  connection.py  one socket: its exchange, its one timer
  response.py    UpstreamResponse: llhttp's callbacks in, the adapter's reads out
  target.py      a URL parsed once, and a request's bytes     resolver.py  CheckedResolver
  errors.py      TransportError and its three kinds
"""
