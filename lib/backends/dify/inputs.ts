/**
 * DIFY_INPUTS (docs/dify.md "Inputs"): the app's input variables, from a template whose string
 * values may hold placeholders, filled per question; and, from the app's `GET /parameters`, which
 * required inputs the template leaves out. Pure.
 */

/** What a placeholder can name: `{openid}`, `{msgType}`, `{eventKey}`, `{scene}`, `{now}`. */
export interface InputFacts {
  openid: string;
  msgType: string;
  eventKey: string;
  scene: string;
  /** ISO 8601 in the configured time zone. */
  now: string;
}

const PLACEHOLDER = /\{(openid|msgType|eventKey|scene|now)\}/g;

/** The template with every placeholder in its string values replaced (other values as they are). */
export function fillInputs(template: Readonly<Record<string, unknown>>, facts: InputFacts): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(template)) out[k] = typeof v === 'string' ? v.replace(PLACEHOLDER, (_, name: keyof InputFacts) => facts[name]) : v;
  return out;
}

/** One entry of `user_input_form`: `{"text-input": {variable, label, required, …}}` (or paragraph, select, number, …). */
type FormItem = Record<string, { variable?: unknown; label?: unknown; required?: unknown }>;

/** The required inputs of the app (from GET /parameters) that `template` does not set: `variable (label)`. */
export function missingInputs(parameters: unknown, template: Readonly<Record<string, unknown>>): string[] {
  const form = (parameters as { user_input_form?: unknown } | null)?.user_input_form;
  if (!Array.isArray(form)) return [];
  const missing: string[] = [];
  for (const item of form as FormItem[]) {
    for (const control of Object.values(item ?? {})) {
      if (!control || typeof control !== 'object' || control.required !== true || typeof control.variable !== 'string') continue;
      const given = template[control.variable];
      if (given === undefined || given === '') missing.push(typeof control.label === 'string' && control.label ? `${control.variable} (${control.label})` : control.variable);
    }
  }
  return missing;
}

/** Does the app take images (GET /parameters `file_upload.image.enabled`, or the newer `file_upload.enabled` with image types)? */
export function takesImages(parameters: unknown): boolean {
  const fu = (parameters as { file_upload?: Record<string, unknown> } | null)?.file_upload;
  if (!fu || typeof fu !== 'object') return false;
  const image = fu['image'] as { enabled?: unknown } | undefined;
  if (image && image.enabled === true) return true;
  const types = fu['allowed_file_types'];
  return fu['enabled'] === true && Array.isArray(types) && types.includes('image');
}
