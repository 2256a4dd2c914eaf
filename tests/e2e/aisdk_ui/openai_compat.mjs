// Use @ai-sdk/openai-compatible (AI SDK 7) against the service's /v1 API and print what it got
// as one JSON object: a streamed text with usage, a whole text, and the errors of an upstream
// 429 and of a bad key.
//
// Usage: node openai_compat.mjs BASE_URL API_KEY MODEL RATE_LIMITED_PROMPT
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const { APICallError, createOpenAICompatible, generateText, streamText } = await import(
  pathToFileURL(path.join(here, 'v7', 'sdk.mjs')).href);
const [baseURL, apiKey, model, limited] = process.argv.slice(2);

function provider(key) {
  return createOpenAICompatible({ name: 'neptun', baseURL: `${baseURL}/v1`, apiKey: key,
                                  includeUsage: true });
}

async function failure(call) {
  try {
    await call();
    return null;
  } catch (error) {
    const cause = APICallError.isInstance(error) ? error : error?.lastError ?? error;
    return { apiCallError: APICallError.isInstance(cause), status: cause?.statusCode ?? null,
             message: cause?.message ?? String(error) };
  }
}

const out = {};
const streamed = streamText({ model: provider(apiKey).chatModel(model), prompt: 'Hello',
                              maxRetries: 0 });
let text = '';
for await (const delta of streamed.textStream) text += delta;
out.stream = { text, usage: await streamed.usage, finishReason: await streamed.finishReason };
const whole = await generateText({ model: provider(apiKey).chatModel(model), prompt: 'Hello',
                                   maxRetries: 0 });
out.complete = { text: whole.text, usage: whole.usage };
out.rateLimited = await failure(() => generateText({
  model: provider(apiKey).chatModel(model), prompt: limited, maxRetries: 0 }));
out.badKey = await failure(() => generateText({
  model: provider('nf_wrong').chatModel(model), prompt: 'Hi', maxRetries: 0 }));
process.stdout.write(`${JSON.stringify(out)}\n`);
