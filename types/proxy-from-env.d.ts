// proxy-from-env ships no types (https://github.com/Rob--W/proxy-from-env, index.cjs).
declare module 'proxy-from-env' {
  /** The proxy URL for `url` from *_PROXY and NO_PROXY in process.env, or '' for none. */
  export function getProxyForUrl(url: string | URL): string;
}
