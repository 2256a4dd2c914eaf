// Read one neptun-flask chat reply exactly as the AI SDK's useChat (ai@4, streamProtocol 'data')
// does, and print what the SDK ended up with as one JSON object on stdout:
//
//   {"text", "reasoning", "finishReason", "usage", "error"}
//
// Usage: node read_stream.mjs URL COOKIE [BODY_JSON]   (BODY_JSON is read from stdin when absent)
//
// With ABORT_AFTER_CHARS=N in the environment it stops the reply as useChat's stop() does
// (aborting the fetch through the abort controller useChat hands to callChatApi) once the
// message holds N characters, and prints a line "aborted" on stdout at that moment.
//
// callChatApi is the function @ai-sdk/vue@1 and @ai-sdk/react@1 call inside useChat: it does
// the fetch, turns a non-2xx answer into an Error whose message is the response body, and
// parses the stream with processChatResponse/processDataStream. Any line the SDK would reject
// (bad code, bad JSON, wrong value shape) makes it throw, and `error` carries that message.
// A `3:` error part makes it throw too, with the part's text as the message.
import { callChatApi, processDataStream as uiUtilsProcessDataStream } from '@ai-sdk/ui-utils';
import { processDataStream as aiProcessDataStream } from 'ai';

// ai re-exports the parser of the @ai-sdk/ui-utils it depends on; make sure the copy used here
// is that very one (the lockfile pins both), not a second, different version.
if (aiProcessDataStream !== uiUtilsProcessDataStream) {
  process.stderr.write('the ai package uses a different @ai-sdk/ui-utils than this script\n');
  process.exit(2);
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

// NaN (the SDK's "unknown" token count) is not JSON; say null instead.
function numberOrNull(value) {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

async function main() {
  const [url, cookie, bodyArg] = process.argv.slice(2);
  if (!url || cookie === undefined) {
    process.stderr.write('usage: node read_stream.mjs URL COOKIE [BODY_JSON]\n');
    process.exit(2);
  }
  const body = JSON.parse(bodyArg ?? (await readStdin()));

  let message = null;
  const result = { text: '', reasoning: '', finishReason: null, usage: null, error: null };
  const abortAfter = Number(process.env.ABORT_AFTER_CHARS || 0);
  const controller = new AbortController();
  try {
    await callChatApi({
      api: url,
      body,
      streamProtocol: 'data',
      headers: { Cookie: `neptun-session=${cookie}` },
      // useChat passes these; callChatApi calls restoreMessagesOnFailure unguarded.
      abortController: () => controller,
      restoreMessagesOnFailure: () => {},
      onUpdate({ message: updated }) {
        message = updated;
        if (abortAfter && !controller.signal.aborted && (updated.content ?? '').length >= abortAfter) {
          process.stdout.write('aborted\n');
          controller.abort();
        }
      },
      onFinish(finished, { finishReason, usage }) {
        message = finished;
        result.finishReason = finishReason;
        result.usage = {
          promptTokens: numberOrNull(usage.promptTokens),
          completionTokens: numberOrNull(usage.completionTokens),
          totalTokens: numberOrNull(usage.totalTokens),
        };
      },
    });
  } catch (error) {
    result.error = error instanceof Error ? error.message : String(error);
  }
  if (message) {
    result.text = message.content ?? '';
    result.reasoning = message.reasoning ?? '';
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

await main();
