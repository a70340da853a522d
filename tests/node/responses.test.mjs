// The Responses API (/v1/responses) through the gateway, read by the official Node SDK over a real socket.
// The expected events are OpenAI's documented streaming shapes: response.created first, output items
// opened and closed around their deltas, response.completed last with the whole response and its usage.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { drainEvents, eventsOfType, gatewayClient, responsesSystemTools, taggedAs } from './support.mjs';

const client = gatewayClient();

/** Checks every stream must pass: bracketed by created/completed, sequence numbers strictly increasing. */
function assertWellFormed(events) {
  assert.ok(events.length >= 2, `expected at least response.created and response.completed, got ${events.length}`);
  assert.equal(events[0].type, 'response.created');
  assert.equal(events.at(-1).type, 'response.completed');
  const numbers = events.map((event) => event.sequence_number);
  assert.ok(numbers.every((n) => Number.isInteger(n)), `every event has an integer sequence_number: ${numbers}`);
  assert.ok(numbers.every((n, i) => i === 0 || n > numbers[i - 1]), `sequence numbers increase: ${numbers}`);
  const completed = events.at(-1).response;
  assert.equal(completed.id, events[0].response.id, 'created and completed describe one response');
  assert.equal(completed.status, 'completed');
  return completed;
}

function assertUsage(usage, expectedOutputTokens) {
  assert.ok(usage, 'response.completed carries usage');
  assert.ok(usage.input_tokens > 0, `input_tokens should be counted, got ${usage.input_tokens}`);
  assert.equal(usage.output_tokens, expectedOutputTokens);
  assert.equal(usage.total_tokens, usage.input_tokens + usage.output_tokens);
}

test('responses: streamed text as output_text.delta events, then response.completed with usage', async () => {
  const stream = await client.responses.create(
    { model: 'simulator/echo', input: 'Hello', stream: true }, taggedAs('responses-text'));
  const events = await drainEvents(stream);
  const completed = assertWellFormed(events);

  const [added] = eventsOfType(events, 'response.output_item.added');
  assert.equal(added?.item.type, 'message', 'a message output item is opened before its text');
  const deltas = eventsOfType(events, 'response.output_text.delta');
  assert.ok(deltas.length > 1, `the text streams in pieces, got ${deltas.length} delta(s)`);
  assert.ok(deltas.every((d) => d.item_id === added.item.id && d.output_index === 0 && d.content_index === 0),
    'every delta names the message item it belongs to');
  const text = deltas.map((d) => d.delta).join('');
  assert.match(text, /^\(simulated\) This is a simulated reply/);
  assert.equal(eventsOfType(events, 'response.output_text.done')[0]?.text, text);

  const messages = completed.output.filter((item) => item.type === 'message');
  assert.equal(messages.length, 1);
  assert.equal(messages[0].role, 'assistant');
  assert.deepEqual(messages[0].content.map((part) => [part.type, part.text]), [['output_text', text]]);
  assertUsage(completed.usage, 12);
});

test('responses: an ElevenLabs system tool comes back as a function_call output item', async () => {
  const stream = await client.responses.create({
    model: 'simulator/echo',
    input: 'Thanks, bye!',
    tools: responsesSystemTools(),
    stream: true,
    simulator: { tool_call: 'end_call' }, // an extra body field: the Node SDK sends unknown params as they are
  }, taggedAs('responses-function-call'));
  const events = await drainEvents(stream);
  const completed = assertWellFormed(events);

  const [done] = eventsOfType(events, 'response.function_call_arguments.done');
  assert.ok(done, 'a response.function_call_arguments.done event');
  assert.equal(done.name, 'end_call');
  assert.deepEqual(JSON.parse(done.arguments), { reason: 'simulated' });
  const argumentDeltas = eventsOfType(events, 'response.function_call_arguments.delta');
  assert.equal(argumentDeltas.map((d) => d.delta).join(''), done.arguments, 'the deltas add up to the arguments');

  const calls = completed.output.filter((item) => item.type === 'function_call');
  assert.equal(calls.length, 1, 'exactly one function call');
  const [call] = calls;
  assert.equal(call.name, 'end_call');
  assert.match(call.call_id ?? '', /\S/, 'the call has a call_id the agent answers with');
  assert.equal(call.arguments, done.arguments);
  assert.equal(done.item_id, call.id, 'the arguments event names the function_call item');
  const [itemDone] = eventsOfType(events, 'response.output_item.done');
  assert.equal(itemDone?.item.call_id, call.call_id);
  assert.equal(eventsOfType(events, 'response.output_text.delta').length, 0, 'a tool call turn speaks no text');
});

test('responses: the SDK stream helper assembles finalResponse().output_text', async () => {
  const runner = client.responses.stream(
    { model: 'simulator/echo', input: 'Hello' }, taggedAs('responses-stream-helper'));
  const deltas = [];
  runner.on('response.output_text.delta', (event) => deltas.push(event.delta));
  const response = await runner.finalResponse();

  assert.match(response.output_text, /^\(simulated\) This is a simulated reply/);
  assert.equal(deltas.join(''), response.output_text, 'the delta events add up to the final text');
  assert.equal(response.status, 'completed');
  assertUsage(response.usage, 12);
});
