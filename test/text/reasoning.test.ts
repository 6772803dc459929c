/** Reasoning removed from answers (lib/text/reasoning.ts), whole and while streaming. */
import { describe, expect, it } from 'vitest';
import { visibleAnswer } from '../../lib/text/reasoning';

describe('visibleAnswer', () => {
  it('removes <think> blocks, thoughts before a lone </think>, and a leading Dify <details> block', () => {
    expect(visibleAnswer('<think>\n想一想\n</think>\n\n答案')).toBe('答案');
    expect(visibleAnswer('R1 的思考没有开头标签</think>\n\n答案')).toBe('答案');
    expect(visibleAnswer('<details style="color:gray" open> <summary> Thinking... </summary>嗯</details>\n\n答案')).toBe('答案');
    expect(visibleAnswer('<think>一</think>甲<think>二</think>乙')).toBe('甲乙');
  });

  it('leaves answers without reasoning exactly as written, `<` and indentation included', () => {
    for (const a of ['  缩进的代码', 'a < b，且 c > d', '<b>粗体</b>', '用 <details> 折叠内容：<details><summary>x</summary>y</details>'.slice(4)]) expect(visibleAnswer(a)).toBe(a);
  });

  it('while streaming, split at every offset: no thought and no tag fragment ever shows, and it only grows', () => {
    for (const full of ['<think>先想一想，再回答。</think>\n\n答案是 42。', '想了很久</think>答案是 42。', '<details><summary>Thinking</summary>嗯……</details>\n答案是 42。']) {
      let before = '';
      // A lone </think> (no opening tag) can only be recognised once it arrives: before that, the
      // thoughts look like the answer. From then on they are gone.
      const recognisedAt = full.startsWith('<') ? 0 : full.indexOf('</think>') + '</think>'.length;
      for (let i = 1; i <= full.length; i++) {
        const shown = visibleAnswer(full.slice(0, i), true);
        if (i < recognisedAt) continue;
        expect(shown).not.toMatch(/想|嗯|<|Thinking/);
        expect(shown.startsWith(before)).toBe(true);
        before = shown;
      }
      expect(visibleAnswer(full)).toBe('答案是 42。');
    }
  });
});
