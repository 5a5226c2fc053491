// Label selector input with completion of label names and values.
import { applyCompletion, completionContext, filterSuggestions, type CompletionContext } from '../profile-logic/selector.js';

export interface LabelSource {
  names(): Promise<string[]>;
  values(name: string): Promise<string[]>;
}

export class SelectorInput {
  private readonly list: HTMLUListElement;
  private items: string[] = [];
  private active = 0;
  private ctx: CompletionContext | null = null;
  private seq = 0;
  private readonly cache = new Map<string, Promise<string[]>>();

  constructor(
    readonly input: HTMLInputElement,
    private readonly source: LabelSource,
    private readonly onSubmit: () => void,
  ) {
    this.list = document.createElement('ul');
    this.list.className = 'suggest';
    this.list.setAttribute('role', 'listbox');
    this.list.id = `${input.id}-suggest`;
    this.list.hidden = true;
    input.setAttribute('aria-controls', this.list.id);
    input.setAttribute('aria-autocomplete', 'list');
    input.insertAdjacentElement('afterend', this.list);
    input.addEventListener('input', () => void this.update());
    input.addEventListener('focus', () => void this.update());
    input.addEventListener('click', () => void this.update());
    input.addEventListener('blur', () => setTimeout(() => this.close(), 150));
    input.addEventListener('keydown', (e) => this.onKey(e));
    this.list.addEventListener('mousedown', (e) => {
      const li = (e.target as HTMLElement).closest('li');
      if (!li) return;
      e.preventDefault();
      this.pick(Number(li.dataset.index));
    });
  }

  private fetchCached(key: string, f: () => Promise<string[]>): Promise<string[]> {
    let p = this.cache.get(key);
    if (!p) {
      p = f().catch(() => []);
      this.cache.set(key, p);
      // Labels change as nodes come and go: forget after a minute.
      setTimeout(() => this.cache.delete(key), 60_000);
    }
    return p;
  }

  async update(): Promise<void> {
    const seq = ++this.seq;
    const ctx = completionContext(this.input.value, this.input.selectionStart ?? this.input.value.length);
    if (!ctx) return this.close();
    const all =
      ctx.kind === 'name'
        ? await this.fetchCached('\u0000names', () => this.source.names())
        : await this.fetchCached(ctx.name, () => this.source.values(ctx.name));
    if (seq !== this.seq) return;
    this.ctx = ctx;
    this.items = filterSuggestions(all, ctx.prefix);
    if (this.items.length === 0 || document.activeElement !== this.input) return this.close();
    this.active = 0;
    this.render();
  }

  private render(): void {
    this.list.replaceChildren(
      ...this.items.map((s, i) => {
        const li = document.createElement('li');
        li.textContent = s;
        li.dataset.index = String(i);
        li.setAttribute('role', 'option');
        li.setAttribute('aria-selected', String(i === this.active));
        return li;
      }),
    );
    this.list.hidden = false;
  }

  close(): void {
    this.list.hidden = true;
    this.items = [];
  }

  private pick(i: number): void {
    const choice = this.items[i];
    if (choice === undefined || !this.ctx) return;
    const r = applyCompletion(this.input.value, this.ctx, choice);
    this.input.value = r.text;
    this.input.setSelectionRange(r.cursor, r.cursor);
    this.close();
    void this.update();
  }

  private onKey(e: KeyboardEvent): void {
    const open = !this.list.hidden && this.items.length > 0;
    if (open && (e.key === 'ArrowDown' || e.key === 'ArrowUp')) {
      e.preventDefault();
      this.active = (this.active + (e.key === 'ArrowDown' ? 1 : this.items.length - 1)) % this.items.length;
      this.render();
    } else if (open && (e.key === 'Tab' || (e.key === 'Enter' && this.ctx?.prefix !== this.items[this.active]))) {
      e.preventDefault();
      this.pick(this.active);
    } else if (e.key === 'Enter') {
      e.preventDefault();
      this.close();
      this.onSubmit();
    } else if (e.key === 'Escape' && open) {
      e.stopPropagation();
      this.close();
    }
  }
}
