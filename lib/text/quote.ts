/** The question as quoted in placeholders and notices: one line, at most 30 characters. */
export function quote(question: string): string {
  const chars = [...question.replace(/\s+/g, ' ').trim()];
  return chars.length > 30 ? chars.slice(0, 30).join('') + '…' : chars.join('');
}
