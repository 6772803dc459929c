/**
 * The OpenAPI 3.1 document served at `/api/v1/openapi.json` (docs/api.md): the native API and the
 * OpenAI-compatible endpoint, as this channel serves them.
 */
const error = (description: string) => ({ description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } });
const openaiError = (description: string) => ({ description, content: { 'application/json': { schema: { $ref: '#/components/schemas/OpenAIError' } } } });
const idempotencyKey = {
  name: 'Idempotency-Key',
  in: 'header',
  required: false,
  description: 'A retried request with the same key (1-255 printable ASCII characters) gets the same answer, with no second model call, even when the copies race. Kept 7 days. With it, a client that disconnects does not stop the answer: a retry picks it up.',
  schema: { type: 'string', minLength: 1, maxLength: 255 },
};
const tooMany = {
  description: 'Over a limit (API_RATE_LIMIT per key, RATE_LIMIT per user, DAILY_QUESTION_BUDGET); Retry-After says when to try again.',
  headers: { 'Retry-After': { schema: { type: 'integer' }, description: 'Seconds to wait.' } },
};

export function openApiDocument(modelName: string, version: string): Record<string, unknown> {
  return {
    openapi: '3.1.0',
    info: {
      title: 'wechat-dify-bot HTTP API',
      version,
      description:
        'Ask the bot over HTTP: the same lifecycle as its chat channels (one model call per question, history, keyword replies, limits, filters). Every call but this document needs `Authorization: Bearer <key>` (API_KEYS); a key sees only its own users. No cookies are read.',
    },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    paths: {
      '/api/v1/chat': {
        post: {
          summary: 'Ask a question',
          description:
            'A JSON answer, or Server-Sent Events with `Accept: text/event-stream` or `"stream": true`: `delta` events (`{"at", "text"}`: `text` goes at character `at` of the answer; `at` is 0 again if the answer restarts after a crash), then `done` (the whole answer, which is what to keep) or `error`; `: ping` comments every 15 s. `/clear` and `/help` in `query` work as on every channel; keyword replies come without the model.',
          parameters: [idempotencyKey],
          requestBody: {
            required: true,
            content: { 'application/json': { schema: { $ref: '#/components/schemas/ChatRequest' } } },
          },
          responses: {
            '200': {
              description: 'The answer (JSON), or its stream (SSE).',
              content: {
                'application/json': { schema: { $ref: '#/components/schemas/ChatAnswer' } },
                'text/event-stream': { schema: { type: 'string', description: 'event: delta | done | error' } },
              },
            },
            '400': error('Malformed body.'),
            '401': error('No valid key.'),
            '409': error('The question was cleared (/clear, DELETE) before its answer was written.'),
            '422': error('The Idempotency-Key was used for another question.'),
            '429': tooMany,
            '502': error('The model failed.'),
            '503': error('The model is overloaded, or too many streams are open.'),
            '504': error('No answer within 10 minutes; retry with the same Idempotency-Key.'),
          },
        },
      },
      '/api/v1/conversations/{user}': {
        delete: {
          summary: "Clear a user's conversation",
          description: 'As `/clear`: the history here and at the backend is forgotten, and answers not yet read are cancelled. On laf: `DELETE /api/v1/conversations?user=<user>`.',
          parameters: [{ name: 'user', in: 'path', required: true, schema: { type: 'string', minLength: 1, maxLength: 128 } }],
          responses: {
            '200': { description: 'Cleared.', content: { 'application/json': { schema: { type: 'object', properties: { cleared: { const: true }, user: { type: 'string' } } } } } },
            '401': error('No valid key.'),
          },
        },
      },
      '/api/v1/openapi.json': {
        get: { summary: 'This document', security: [], responses: { '200': { description: 'OpenAPI 3.1', content: { 'application/json': {} } } } },
      },
      '/v1/chat/completions': {
        post: {
          summary: 'OpenAI-compatible chat completion',
          description: `The last user message is the question; earlier messages are not sent to the model again: the conversation continues per (key, \`user\`) from the bot's own store (or Dify's conversation). A transcript with no assistant message starts a new conversation. \`model\` must be \`${modelName}\` (or absent); sampling parameters are ignored. With \`stream\`, OpenAI's chunks end with \`data: [DONE]\`; a failure after the first chunk is \`data: {"error": …}\`.`,
          parameters: [idempotencyKey],
          requestBody: { required: true, content: { 'application/json': { schema: { $ref: '#/components/schemas/CompletionRequest' } } } },
          responses: {
            '200': { description: 'A chat.completion, or its chat.completion.chunk stream.', content: { 'application/json': {}, 'text/event-stream': {} } },
            '400': openaiError('Malformed body.'),
            '401': openaiError('No valid key (code invalid_api_key).'),
            '404': openaiError('Unknown model (code model_not_found).'),
            '409': openaiError('The question was cleared before its answer was written.'),
            '422': openaiError('The Idempotency-Key was used for another question.'),
            '429': tooMany,
            '502': openaiError('The model failed.'),
            '503': openaiError('The model is overloaded, or too many streams are open.'),
          },
        },
      },
      '/v1/models': {
        get: {
          summary: 'The model this endpoint answers as',
          responses: { '200': { description: 'A list with one model.', content: { 'application/json': {} } }, '401': openaiError('No valid key.') },
        },
      },
      '/v1/models/{model}': {
        get: {
          summary: 'One model',
          parameters: [{ name: 'model', in: 'path', required: true, schema: { type: 'string' } }],
          responses: { '200': { description: 'The model.', content: { 'application/json': {} } }, '404': openaiError('Unknown model.') },
        },
      },
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: {
        ChatRequest: {
          type: 'object',
          required: ['user', 'query'],
          properties: {
            user: { type: 'string', minLength: 1, maxLength: 128, description: "Whose conversation, within the key's users." },
            query: { type: 'string', minLength: 1, maxLength: 16000 },
            stream: { type: 'boolean', default: false },
          },
        },
        ChatAnswer: {
          type: 'object',
          required: ['id', 'user', 'answer', 'source'],
          properties: {
            id: { type: 'string', description: 'The same for every retry with one Idempotency-Key.' },
            user: { type: 'string' },
            answer: { type: 'string', description: 'Markdown.' },
            source: { enum: ['model', 'reply'], description: '`reply`: a keyword reply or a command, without the model.' },
          },
        },
        Error: {
          type: 'object',
          properties: { error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' } } } },
        },
        CompletionRequest: {
          type: 'object',
          required: ['messages'],
          properties: {
            model: { type: 'string' },
            messages: { type: 'array', minItems: 1, items: { type: 'object', required: ['role'], properties: { role: { type: 'string' }, content: {} } } },
            stream: { type: 'boolean' },
            stream_options: { type: 'object', properties: { include_usage: { type: 'boolean' } } },
            user: { type: 'string', maxLength: 128 },
          },
        },
        OpenAIError: {
          type: 'object',
          properties: {
            error: { type: 'object', properties: { message: { type: 'string' }, type: { type: 'string' }, param: { type: ['string', 'null'] }, code: { type: ['string', 'null'] } } },
          },
        },
      },
    },
  };
}
