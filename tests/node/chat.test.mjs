// Chat Completions through the gateway, read by the official Node SDK over a real socket, the way an
// ElevenLabs agent's Custom LLM calls it: streamed text, a streamed system-tool call, and the usage chunk.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  chatSystemTools, drain, finishReasonOf, gatewayClient, taggedAs, textOf, toolCallsOf,
} from './support.mjs';

const client = gatewayClient();
const HELLO = [{ role: 'user', content: 'Hello' }];

test('chat: streamed text arrives as chunks the SDK can read', async () => {
  const stream = await client.chat.completions.create(
    { model: 'simulator/echo', messages: HELLO, stream: true }, taggedAs('chat-text'));
  const chunks = await drain(stream);

  assert.ok(chunks.length > 2, `expected a role chunk, content chunks and a finish, got ${chunks.length} chunk(s)`);
  assert.match(textOf(chunks), /^\(simulated\) This is a simulated reply/);
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  assert.equal(finishReasonOf(chunks), 'stop');
  assert.deepEqual(new Set(chunks.map((chunk) => chunk.object)), new Set(['chat.completion.chunk']));
  assert.equal(new Set(chunks.map((chunk) => chunk.id)).size, 1, 'every chunk of one completion shares its id');
  // Not asked for usage: no empty-choices chunk that would trip `chunk.choices[0]` in an agent's loop.
  assert.ok(chunks.every((chunk) => chunk.choices.length === 1 && !chunk.usage));
});

test('chat: a streamed ElevenLabs system tool call (end_call) comes back in OpenAI form', async () => {
  const stream = await client.chat.completions.create({
    model: 'simulator/echo',
    messages: [{ role: 'user', content: 'Thanks, bye!' }],
    tools: chatSystemTools(),
    stream: true,
    simulator: { tool_call: 'end_call' }, // an extra body field: the Node SDK sends unknown params as they are
  }, taggedAs('chat-tool-call'));
  const chunks = await drain(stream);

  const calls = toolCallsOf(chunks);
  assert.deepEqual([...calls.keys()], [0], 'exactly one tool call, at index 0');
  const call = calls.get(0);
  assert.equal(call.name, 'end_call');
  assert.match(call.id ?? '', /\S/, 'the tool call has an id the agent can answer with');
  assert.deepEqual(JSON.parse(call.arguments), { reason: 'simulated' });
  assert.equal(finishReasonOf(chunks), 'tool_calls');
  assert.equal(textOf(chunks), '', 'a tool call turn speaks no text');
});

test('chat: stream_options.include_usage adds one final usage chunk with no choices', async () => {
  const stream = await client.chat.completions.create({
    model: 'simulator/echo',
    messages: HELLO,
    stream: true,
    stream_options: { include_usage: true },
    simulator: { cached_tokens: 3 },
  }, taggedAs('chat-usage'));
  const chunks = await drain(stream);

  const withUsage = chunks.filter((chunk) => chunk.usage);
  assert.equal(withUsage.length, 1, 'exactly one chunk carries usage');
  const [last] = chunks.slice(-1);
  assert.equal(withUsage[0], last, 'the usage chunk is the last one');
  assert.deepEqual(last.choices, []);
  const { usage } = last;
  assert.equal(usage.completion_tokens, 12);
  assert.ok(usage.prompt_tokens > 0, `prompt_tokens should be counted, got ${usage.prompt_tokens}`);
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
  assert.equal(usage.prompt_tokens_details?.cached_tokens, 3);
  assert.match(textOf(chunks), /^\(simulated\)/);
});

test('chat: the SDK stream helper assembles the final completion', async () => {
  const runner = client.chat.completions.stream(
    { model: 'simulator/echo', messages: HELLO }, taggedAs('chat-stream-helper'));
  const deltas = [];
  runner.on('content', (delta) => deltas.push(delta));
  const completion = await runner.finalChatCompletion();

  const { message, finish_reason: finishReason } = completion.choices[0];
  assert.match(message.content, /^\(simulated\) This is a simulated reply/);
  assert.equal(deltas.join(''), message.content, 'the content events add up to the final message');
  assert.equal(message.role, 'assistant');
  assert.equal(finishReason, 'stop');
});
