// Shared by the Node SDK tests: a client for the gateway under test, ElevenLabs' system tools, and
// readers that fold a stream into what a voice agent would act on (text, tool calls, usage).
//
// The gateway is started by tests/integration/test_node_sdk.py, which passes its address and key in
// SWITCHBOARD_BASE_URL and SWITCHBOARD_KEY. Every call carries an x-inference-metadata-node-test header
// naming the test, so the wrapper can find that call's record in the gateway's ledger.

import OpenAI from 'openai';

export const SYSTEM_TOOL_NAMES = [
  'end_call', 'language_detection', 'transfer_to_agent', 'transfer_to_number', 'skip_turn',
  'play_keypad_touch_tone', 'voicemail_detection',
];

// The argument schema every system tool is offered with; the simulator fills each string with "simulated".
const REASON_SCHEMA = {
  type: 'object',
  properties: { reason: { type: 'string' } },
  required: ['reason'],
};

/** An SDK client for the gateway under test: no retries, so a failure shows as the call that failed. */
export function gatewayClient() {
  const baseURL = process.env.SWITCHBOARD_BASE_URL;
  const apiKey = process.env.SWITCHBOARD_KEY;
  if (!baseURL || !apiKey) {
    throw new Error('SWITCHBOARD_BASE_URL and SWITCHBOARD_KEY must be set: run these through '
      + '`.venv/bin/python -m pytest tests/integration/test_node_sdk.py`, which starts the gateway');
  }
  return new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 20_000 });
}

/** Request options tagging one call with the test's name, as call metadata the gateway records. */
export function taggedAs(testName) {
  return { headers: { 'x-inference-metadata-node-test': testName } };
}

/** ElevenLabs' system tools in Chat Completions form (`function` nested). */
export function chatSystemTools() {
  return SYSTEM_TOOL_NAMES.map((name) => ({
    type: 'function',
    function: { name, description: `ElevenLabs system tool ${name}`, parameters: REASON_SCHEMA },
  }));
}

/** The same tools in Responses form (flat: name and parameters beside `type`). */
export function responsesSystemTools() {
  return SYSTEM_TOOL_NAMES.map((name) => ({
    type: 'function', name, description: `ElevenLabs system tool ${name}`, parameters: REASON_SCHEMA, strict: false,
  }));
}

/** Every chunk of a streamed chat completion, in order. */
export async function drain(stream) {
  const chunks = [];
  for await (const chunk of stream) {
    chunks.push(chunk);
  }
  return chunks;
}

/** The streamed text, joined from every content delta. */
export function textOf(chunks) {
  return chunks.flatMap((chunk) => chunk.choices).map((choice) => choice.delta?.content ?? '').join('');
}

/** Tool calls assembled from their deltas, by index: id and name from the first delta, arguments appended. */
export function toolCallsOf(chunks) {
  const calls = new Map();
  for (const choice of chunks.flatMap((chunk) => chunk.choices)) {
    for (const delta of choice.delta?.tool_calls ?? []) {
      const call = calls.get(delta.index) ?? { id: null, name: '', arguments: '' };
      call.id ??= delta.id ?? null;
      call.name += delta.function?.name ?? '';
      call.arguments += delta.function?.arguments ?? '';
      calls.set(delta.index, call);
    }
  }
  return calls;
}

/** The finish_reason of the chunk that ended the choice (null if none did). */
export function finishReasonOf(chunks) {
  const finished = chunks.flatMap((chunk) => chunk.choices).filter((choice) => choice.finish_reason);
  return finished.length ? finished[finished.length - 1].finish_reason : null;
}

/** Every event of a streamed Responses call, in order. */
export async function drainEvents(stream) {
  const events = [];
  for await (const event of stream) {
    events.push(event);
  }
  return events;
}

/** The events of one type. */
export function eventsOfType(events, type) {
  return events.filter((event) => event.type === type);
}
