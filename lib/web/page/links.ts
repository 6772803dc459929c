/**
 * Links to answer pages, as replies carry them (docs/answer-page.md). The secret the tokens are
 * derived from is read from the store once per process.
 */
import type { Links } from '../../core/channel';
import type { PageConfig } from '../../core/settings';
import { linkMarkup, pagePath } from '../../core/settings';
import type { Store } from '../../store';
import { pageToken, tokenHash } from './token';

export class PageLinks implements Links {
  private secret: Promise<Buffer> | undefined;

  constructor(
    private readonly store: Store,
    readonly page: PageConfig,
  ) {}

  private key(): Promise<Buffer> {
    if (!this.secret) {
      const s = this.store.pageSecret();
      this.secret = s;
      // A store hiccup is retried on the next question, not remembered.
      s.catch(() => {
        if (this.secret === s) this.secret = undefined;
      });
    }
    return this.secret;
  }

  async token(questionKey: string): Promise<string> {
    return pageToken(await this.key(), questionKey);
  }

  /** What the question's record keeps: the hash of its token. */
  async hash(questionKey: string): Promise<string> {
    return tokenHash(await this.token(questionKey));
  }

  async mediaUrl(questionKey: string, index: number): Promise<string> {
    const path = pagePath(this.page.routes, await this.token(questionKey));
    return `${this.page.publicUrl ?? ''}${path}${this.page.routes === 'laf' ? `&m=${index}` : `/m/${index}`}`;
  }

  /** `<a href="…/a/<token>">text</a>` for a WeChat reply. */
  async markup(questionKey: string, text: string): Promise<string> {
    return linkMarkup(this.page, await this.token(questionKey), text);
  }
}
