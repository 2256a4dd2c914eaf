// The documented JSON routes of the service, with the session cookie (same origin).

/** An API error: the service's `{statusCode, statusMessage, data?}`. */
export class ApiError extends Error {
  constructor(status, message, data) {
    super(message);
    this.status = status;
    this.data = data;
  }
}

/** The message of an error body (text), or null when it is not the service's JSON shape. */
export function parseErrorBody(text) {
  try {
    const body = JSON.parse(text);
    if (body && typeof body.statusMessage === 'string') {
      return { status: body.statusCode, message: body.statusMessage, data: body.data };
    }
  } catch {
    /* not JSON */
  }
  return null;
}

/** A field-by-field summary of a validation error's `data`, e.g. "password: Too short". */
function describe(message, data) {
  if (!data || typeof data !== 'object') return message;
  const fields = Object.entries(data)
    .map(([field, problems]) => `${field}: ${[].concat(problems).join(' ')}`)
    .join('; ');
  return fields ? `${message} (${fields})` : message;
}

export async function request(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 204) return null;
  const text = await response.text();
  if (!response.ok) {
    const error = parseErrorBody(text);
    throw new ApiError(response.status,
      error ? describe(error.message, error.data) : `${response.status} ${response.statusText}`,
      error?.data);
  }
  return text ? JSON.parse(text) : null;
}

export const api = {
  session: () => request('GET', '/api/auth/session'),
  signUp: (email, password) => request('POST', '/api/auth/sign-up', { email, password }),
  logIn: (email, password) => request('POST', '/api/auth/login', { email, password }),
  logOut: () => request('POST', '/api/auth/logout'),
  models: () => request('GET', '/api/models'),
  chats: (userId) => request('GET', `/api/users/${userId}/chats?order_by=updated_at&order=desc`),
  createChat: (userId, model, name) => request('POST', `/api/users/${userId}/chats`, { model, name }),
  renameChat: (userId, chatId, name) => request('PATCH', `/api/users/${userId}/chats/${chatId}`, { name }),
  deleteChat: (userId, chatId) => request('DELETE', `/api/users/${userId}/chats/${chatId}`),
  messages: (userId, chatId) => request('GET', `/api/users/${userId}/chats/${chatId}/messages`),
};

/** The chat route of a catalog model id (`publisher/name`): the router path. */
export function chatRoute(modelId) {
  return `/api/ai/${modelId}/chat`;
}
