export { Chat } from '@ai-sdk/vue';
export { DefaultChatTransport } from 'ai';
