/** POST and read Server-Sent Events over fetch (the API's streams are answers to POSTs, which EventSource cannot send). */
export interface Event {
  event: string;
  data: string;
}

export interface PostedStream {
  status: number;
  headers: Headers;
  /** Every event until the stream ended (comments left out), and how many `: ping` comments came. */
  done: Promise<{ events: Event[]; comments: number }>;
  /** Resolves at the first event matching `pick`. */
  first(pick: (e: Event) => boolean): Promise<Event>;
  abort(): void;
}

export async function postStream(url: string, body: unknown, headers: Record<string, string>): Promise<PostedStream> {
  const ac = new AbortController();
  const res = await fetch(url, { method: 'POST', body: JSON.stringify(body), headers: { 'Content-Type': 'application/json', ...headers }, signal: ac.signal });
  const events: Event[] = [];
  const waiters: { pick: (e: Event) => boolean; resolve: (e: Event) => void }[] = [];
  let comments = 0;
  const done = (async () => {
    if (!res.body) return { events, comments };
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(part, { stream: true });
        let cut: number;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          if (block.startsWith(':')) {
            comments++;
            continue;
          }
          const e: Event = { event: 'message', data: '' };
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) e.event = line.slice(7);
            else if (line.startsWith('data: ')) e.data += line.slice(6);
          }
          events.push(e);
          for (const w of waiters.filter((w) => w.pick(e))) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(e);
          }
        }
      }
    } catch {
      // aborted
    }
    return { events, comments };
  })();
  return {
    status: res.status,
    headers: res.headers,
    done,
    first: (pick) => {
      const seen = events.find(pick);
      return seen ? Promise.resolve(seen) : new Promise((resolve) => waiters.push({ pick, resolve }));
    },
    abort: () => ac.abort(),
  };
}
