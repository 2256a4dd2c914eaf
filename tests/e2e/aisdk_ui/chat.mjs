// Drive a neptun-flask chat route with the AI SDK's own Chat class (@ai-sdk/vue) and its
// DefaultChatTransport, the code useChat runs, and print what the chat ended with as one JSON
// object on stdout: {status, error, text, reasoning, metadata, messageId, messages}.
//
// Usage: node chat.mjs SDK_DIR COMMAND API COOKIE CHAT_ID [TEXT]
//   SDK_DIR  v5 or v7 (beside this script): which installed SDK to use (its sdk.mjs)
//   send     sendMessage({text: TEXT}) and wait for the reply
//   resume   resumeStream() on the chat, as a reloaded page does, and wait for the reply
//   stop     sendMessage, then once the reply holds 20 characters: stop() (aborts the fetch)
//            and POST API/CHAT_ID/stop, as a Stop button does
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const [sdkDir, command, api, cookie, chatId, text = 'Hi'] = process.argv.slice(2);
const { Chat, DefaultChatTransport } = await import(
  pathToFileURL(path.join(here, sdkDir, 'sdk.mjs')).href);

const headers = { Cookie: `neptun-session=${cookie}` };
let error = null;
const chat = new Chat({
  id: chatId,
  transport: new DefaultChatTransport({ api, headers }),
  onError(failure) {
    error = failure instanceof Error ? failure.message : String(failure);
  },
});

function lastAssistant() {
  return [...chat.messages].reverse().find((message) => message.role === 'assistant');
}

function partsText(message, type) {
  return (message?.parts ?? []).filter((part) => part.type === type).map((part) => part.text)
    .join('');
}

async function waitFor(predicate, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for the chat');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

if (command === 'send') {
  await chat.sendMessage({ text });
} else if (command === 'resume') {
  await chat.resumeStream();
} else if (command === 'stop') {
  const sending = chat.sendMessage({ text });
  await waitFor(() => partsText(lastAssistant(), 'text').length >= 20, 20000);
  await chat.stop();
  const answer = await fetch(`${api}/${chatId}/stop`, { method: 'POST', headers });
  if (answer.status !== 204) throw new Error(`stop answered ${answer.status}`);
  await sending;
} else {
  process.stderr.write(`unknown command ${command}\n`);
  process.exit(2);
}

const reply = lastAssistant();
process.stdout.write(`${JSON.stringify({
  status: chat.status,
  error,
  text: partsText(reply, 'text'),
  reasoning: partsText(reply, 'reasoning'),
  metadata: reply?.metadata ?? null,
  messageId: reply?.id ?? null,
  messages: chat.messages.map(({ id, role, parts }) => ({ id, role, parts })),
})}\n`);
