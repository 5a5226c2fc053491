// Label panel: every label of the selection with its top values by CPU.
// Click a value to filter by it (again to drop the filter); click "group" to
// split the flame graph, top table and timeline by that label. Values that
// match the search box are marked, so searching "sha256" finds the process
// sha256sum even when the flame graph is not grouped.
import type { LabelSummaryResponse } from '../../../src/profile/api-types.js';
import { formatPercent } from '../profile-logic/format.js';

export interface LabelPanelCallbacks {
  onFilter(name: string, value: string): void;
  onGroup(name: string): void;
}

export class LabelPanel {
  private data: LabelSummaryResponse | null = null;
  private filters = new Map<string, string>();
  private groupBy: string[] = [];
  private search: ((s: string) => boolean) | null = null;

  constructor(
    private readonly root: HTMLElement,
    private readonly cb: LabelPanelCallbacks,
  ) {}

  setData(data: LabelSummaryResponse | null, filters: Map<string, string>, groupBy: string[]): void {
    this.data = data;
    this.filters = filters;
    this.groupBy = groupBy;
    this.render();
  }

  setSearch(matcher: ((s: string) => boolean) | null): void {
    this.search = matcher;
    this.render();
  }

  /** Label values matching the search, largest first (for the search box's hint). */
  searchHits(): { name: string; value: string; total: number }[] {
    const m = this.search;
    const d = this.data;
    if (!m || !d) return [];
    const out: { name: string; value: string; total: number }[] = [];
    for (const l of d.labels) for (const v of l.values) if (m(v.value)) out.push({ name: l.name, value: v.value, total: v.total });
    return out.sort((a, b) => b.total - a.total);
  }

  private render(): void {
    const d = this.data;
    this.root.replaceChildren();
    const h = document.createElement('h2');
    h.textContent = 'Labels';
    const hint = document.createElement('span');
    hint.className = 'muted';
    hint.textContent = ' top values by CPU';
    h.append(hint);
    this.root.append(h);
    if (!d || d.labels.length === 0) {
      const p = document.createElement('p');
      p.className = 'muted';
      p.textContent = 'No labels in this selection.';
      this.root.append(p);
      return;
    }
    for (const l of d.labels) {
      const sec = document.createElement('section');
      sec.className = 'label-group';
      sec.dataset.label = l.name;
      const head = document.createElement('div');
      head.className = 'label-head';
      const name = document.createElement('strong');
      name.textContent = l.name;
      const count = document.createElement('span');
      count.className = 'muted';
      count.textContent = ` ${l.distinct} value${l.distinct === 1 ? '' : 's'}`;
      const group = document.createElement('button');
      group.type = 'button';
      group.className = 'group-btn';
      group.dataset.label = l.name;
      const grouped = this.groupBy.includes(l.name);
      group.setAttribute('aria-pressed', String(grouped));
      group.textContent = grouped ? 'grouped' : 'group';
      group.title = grouped ? `Stop grouping by ${l.name}` : `Split the views by ${l.name}`;
      group.addEventListener('click', () => this.cb.onGroup(l.name));
      head.append(name, count, group);
      sec.append(head);
      const ul = document.createElement('ul');
      for (const v of l.values) {
        const li = document.createElement('li');
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'label-value';
        b.dataset.label = l.name;
        b.dataset.value = v.value;
        const active = this.filters.get(l.name) === v.value;
        b.setAttribute('aria-pressed', String(active));
        if (this.search && this.search(v.value)) b.classList.add('match');
        b.title = active ? `Remove the filter ${l.name}="${v.value}"` : `Filter: ${l.name}="${v.value}"`;
        const bar = document.createElement('span');
        bar.className = 'share-bar';
        bar.style.width = `${d.total > 0 ? Math.max(1, (100 * v.total) / d.total) : 0}%`;
        const text = document.createElement('span');
        text.className = 'v';
        text.textContent = v.value === '' ? '(empty)' : v.value;
        const pct = document.createElement('span');
        pct.className = 'pct';
        pct.textContent = formatPercent(v.total, d.total);
        b.append(bar, text, pct);
        b.addEventListener('click', () => this.cb.onFilter(l.name, v.value));
        li.append(b);
        ul.append(li);
      }
      sec.append(ul);
      if (l.distinct > l.values.length) {
        const more = document.createElement('div');
        more.className = 'muted more';
        more.textContent = `+${l.distinct - l.values.length} more (type in the selector to pick one)`;
        sec.append(more);
      }
      this.root.append(sec);
    }
  }
}
