"""OpenAI's Responses API, translated to and from the internal Chat Completions shape.

ElevenLabs can speak either wire format; every provider adapter speaks chat. So a Responses request
becomes a chat body once, at the door (request.py), and the chat chunks coming back become Responses
events as they arrive (stream.py), or one Response object when not streamed (objects.py). Pure functions
and one small state machine: no I/O, nothing stored. Shapes follow the official openai SDK's models
(openai.types.responses) field for field.
"""
