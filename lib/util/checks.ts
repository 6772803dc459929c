/**
 * One line of `npm run doctor` and the console's checks page: what was checked, whether it passed
 * (`undefined`: nothing to judge, e.g. a part that is off), what was found, and how to fix a failure.
 */
export interface Check {
  name: string;
  ok: boolean | undefined;
  detail: string;
  /** What to do about a failure, in a sentence. */
  fix?: string;
}

/** Run `check`; a thrown error becomes a failed line with `fix`. */
export async function checked(name: string, check: () => Promise<Omit<Check, 'name'>>, fix: (err: unknown) => string | undefined = () => undefined): Promise<Check> {
  try {
    return { name, ...(await check()) };
  } catch (err) {
    const f = fix(err);
    return { name, ok: false, detail: err instanceof Error ? err.message : String(err), ...(f ? { fix: f } : {}) };
  }
}
