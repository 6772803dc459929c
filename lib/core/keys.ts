/**
 * Conversation keys (docs/channels.md "Keys"): whose conversation a message belongs to, as one string
 * the store indexes (history, limits, `/clear`, the inbox are per key). A key is
 * `<kind>[@<instance>]:<part>[:<part>…]`; only its channel gives the parts meaning. Parts are escaped,
 * so an id with a colon in it (an API client's user name) cannot forge another key, and decoding
 * gives back exactly what was encoded. One exception, for keys stored before channels had tags: a
 * key without a colon is a bare OpenID of the default WeChat Official Account.
 */

/** A channel kind or instance id as it may appear in a key. */
const NAME = /^[a-z][a-z0-9-]{0,31}$/;

const escapePart = (p: string) => p.replace(/%/g, '%25').replace(/:/g, '%3A');
const unescapePart = (p: string) => p.replace(/%3A/gi, ':').replace(/%25/g, '%');

export interface KeyParts {
  /** The channel kind; undefined for a bare (untagged) key. */
  kind: string | undefined;
  /** The instance id; '' for the default instance. */
  instance: string;
  parts: string[];
}

/** The key of a conversation on `kind`'s `instance` ('' = the default), made of `parts`. */
export function conversationKey(kind: string, instance: string, parts: readonly string[]): string {
  if (!NAME.test(kind)) throw new Error(`not a channel kind: ${kind}`);
  if (instance !== '' && !NAME.test(instance)) throw new Error(`not an instance id: ${instance}`);
  if (parts.length === 0) throw new Error('a key needs at least one part');
  return [instance ? `${kind}@${instance}` : kind, ...parts.map(escapePart)].join(':');
}

/** The kind, instance and parts of a key (`conversationKey`'s inverse); a bare key has no kind. */
export function parseKey(key: string): KeyParts {
  const at = key.indexOf(':');
  if (at === -1) return { kind: undefined, instance: '', parts: [key] };
  const head = key.slice(0, at);
  const [kind = '', instance = ''] = head.split('@', 2);
  return { kind, instance, parts: key.slice(at + 1).split(':').map(unescapePart) };
}

/** Is `id` usable as an instance id (BOTS)? */
export function isInstanceId(id: string): boolean {
  return NAME.test(id);
}
