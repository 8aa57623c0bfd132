'use strict';
// A fake Anthropic Messages API: a real HTTP server on 127.0.0.1 (node:http)
// that answers POST /v1/messages the way the real one treats credentials, and
// records every request's auth headers for the tests to assert on.
//
// - `Authorization: Bearer <token>` is required; an OAuth token (sk-ant-oat...)
//   also needs `oauth-2025-04-20` in anthropic-beta, else 401 (as the real API).
// - `x-api-key` next to a bearer token is a 400: a request must carry one.
// - Tokens in `rejected` (or every token with `rejectAll`) answer 401
//   authentication_error; tokens in `rateLimited` (or all with `rateLimitAll`)
//   answer 429 rate_limit_error with the given headers.
// - Otherwise 200 with a minimal Message.

const http = require('node:http');

const OAUTH_BETA = 'oauth-2025-04-20';

function errorBody(type, message) {
  return JSON.stringify({ type: 'error', error: { type, message } });
}

class FakeMessagesApi {
  constructor() {
    this.requests = [];
    this.reset();
    this.server = http.createServer((req, res) => this.#handle(req, res));
  }

  static async start() {
    const api = new FakeMessagesApi();
    await new Promise((resolve, reject) => {
      api.server.once('error', reject);
      api.server.listen(0, '127.0.0.1', resolve);
    });
    api.base = `http://127.0.0.1:${api.server.address().port}`;
    return api;
  }

  reset() {
    this.requests = [];
    this.rejected = new Set();
    this.rejectAll = false;
    this.rateLimited = new Map(); // token -> response headers
    this.rateLimitAll = null; // response headers, or null
  }

  /** Bearer tokens of the /v1/messages requests, in arrival order. */
  bearers() {
    return this.requests.map((r) => r.bearer);
  }

  async stop() {
    this.server.closeAllConnections?.();
    await new Promise((resolve) => this.server.close(resolve));
  }

  #handle(req, res) {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const send = (status, text, headers = {}) => {
        res.writeHead(status, { 'content-type': 'application/json', 'request-id': `req_fake_${this.requests.length}`, ...headers });
        res.end(text);
      };
      const path = req.url.split('?')[0];
      if (req.method !== 'POST' || path !== '/v1/messages') {
        send(404, errorBody('not_found_error', `${req.method} ${path}`));
        return;
      }
      const authorization = req.headers.authorization ?? null;
      const bearer = authorization?.startsWith('Bearer ') ? authorization.slice(7) : null;
      const beta = req.headers['anthropic-beta'] ?? null;
      const betas = (beta ?? '').split(',').map((s) => s.trim()).filter(Boolean);
      this.requests.push({
        bearer,
        anthropicBeta: beta,
        betas,
        xApiKey: req.headers['x-api-key'] !== undefined,
        retryCount: req.headers['x-stainless-retry-count'] ?? null,
        body,
      });
      if (req.headers['x-api-key'] !== undefined && bearer !== null) {
        send(400, errorBody('invalid_request_error', 'send either x-api-key or Authorization, not both'));
      } else if (bearer === null) {
        send(401, errorBody('authentication_error', 'missing bearer token'));
      } else if (bearer.startsWith('sk-ant-oat') && !betas.includes(OAUTH_BETA)) {
        send(401, errorBody('authentication_error', 'OAuth authentication is currently not supported.'));
      } else if (this.rejectAll || this.rejected.has(bearer)) {
        send(401, errorBody('authentication_error', 'OAuth token has been revoked.'));
      } else if (this.rateLimitAll !== null || this.rateLimited.has(bearer)) {
        send(429, errorBody('rate_limit_error', 'rate limited'), this.rateLimitAll ?? this.rateLimited.get(bearer));
      } else {
        let model = 'claude-fake';
        try {
          model = JSON.parse(body).model ?? model;
        } catch {
          // not JSON: the echo keeps the default model name
        }
        send(
          200,
          JSON.stringify({
            id: `msg_fake_${this.requests.length}`,
            type: 'message',
            role: 'assistant',
            model,
            content: [{ type: 'text', text: 'ok' }],
            stop_reason: 'end_turn',
            stop_sequence: null,
            usage: { input_tokens: 1, output_tokens: 1 },
          }),
        );
      }
    });
  }
}

module.exports = { FakeMessagesApi };
