export { Chat } from '@ai-sdk/vue';
export { APICallError, DefaultChatTransport, generateText, streamText } from 'ai';
export { createOpenAICompatible } from '@ai-sdk/openai-compatible';
