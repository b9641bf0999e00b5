// The TLS and token flags of the CLI commands that call a coordinator (`rmt submit`, `rmt status`),
// and the gRPC client options they make. Plaintext unless --tls-ca or a client certificate is given.
import { readTokenFile } from '../shared/rpc/auth.js';
import type { ClientOptions } from '../shared/rpc/client.js';

export const CLIENT_TLS_FLAGS = {
  'tls-ca': {
    type: 'string',
    doc: 'PEM CA to verify the coordinator: call it over TLS (plaintext when unset)',
  },
  'tls-cert': {
    type: 'string',
    doc: 'PEM client certificate, for a coordinator that wants one (mutual TLS)',
  },
  'tls-key': { type: 'string', doc: 'PEM private key of --tls-cert' },
  'tls-server-name': {
    type: 'string',
    doc: "name to verify in the coordinator's certificate when it differs from the address's host",
  },
  'auth-token-file': {
    type: 'string',
    doc: 'file holding the bearer token of a coordinator started with --auth-token-file',
  },
} as const;

export interface ClientTlsFlags {
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsServerName?: string;
  authTokenFile?: string;
}

/**
 * The client options for the flags, or null after `warn` got the error for a flag combination that
 * cannot work (the command then exits with 2).
 */
export function clientTlsOptions(f: ClientTlsFlags, warn: (line: string) => void): ClientOptions | null {
  const error = (message: string) => {
    warn(`error: ${message}`);
    return null;
  };
  if ((f.tlsCert === undefined) !== (f.tlsKey === undefined)) {
    return error('--tls-cert and --tls-key go together (RMT_TLS_CERT, RMT_TLS_KEY)');
  }
  let token: { token?: string } = {};
  if (f.authTokenFile) {
    try {
      token = { token: readTokenFile(f.authTokenFile) };
    } catch (e) {
      return error((e as Error).message);
    }
  }
  // A client certificate alone also means TLS: the system's roots verify the coordinator.
  if (!f.tlsCa && !f.tlsCert) {
    return f.tlsServerName ? error('--tls-server-name needs TLS (--tls-ca or --tls-cert)') : token;
  }
  return { tls: { ca: f.tlsCa, cert: f.tlsCert, key: f.tlsKey, serverName: f.tlsServerName }, ...token };
}
