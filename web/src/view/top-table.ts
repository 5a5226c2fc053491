// Sortable, filterable table of functions (or binaries) by self / total.
// Virtualized: rows have one fixed height and only those in (or near) the
// scrolled viewport are in the DOM, between two spacer rows that keep the
// scroll height right, so 10,000 functions cost as much as 40.
import type { SampleTypeJson } from '../../../src/profile/api-types.js';
import { formatPercent, formatValue } from '../profile-logic/format.js';
import { filterTop, sortTop, truncateMiddle, type TopRow, type TopSortKey } from '../profile-logic/top.js';
import { legendColor, type Scheme } from '../profile-logic/colors.js';
import type { TopBy } from '../profile-logic/url-state.js';

export const TOP_ROW_HEIGHT = 22;
/** Rows drawn above and below the viewport, so a small scroll shows no gap. */
const OVERSCAN = 8;

export class TopTable {
  private rows: TopRow[] = [];
  private total = 0;
  private sampleType: SampleTypeJson = { type: 'cpu', unit: 'nanoseconds' };
  private groupBy: string[] = [];
  sortKey: TopSortKey = 'self';
  sortDir: 'asc' | 'desc' = 'desc';
  private filter = '';
  private readonly scroller: HTMLDivElement;
  private readonly table: HTMLTableElement;
  private readonly headRow: HTMLTableRowElement;
  private readonly tbody: HTMLTableSectionElement;
  private readonly byButtons = new Map<TopBy, HTMLButtonElement>();
  private shown: TopRow[] = [];
  private first = -1;
  private last = -1;
  private charW = 7.2;
  scheme: Scheme = 'light';
  by: TopBy = 'function';

  constructor(
    container: HTMLElement,
    private readonly onPick: (row: TopRow) => void,
    private readonly onBy: (by: TopBy) => void,
  ) {
    const bar = document.createElement('div');
    bar.className = 'top-bar';
    const filter = document.createElement('input');
    filter.type = 'search';
    filter.id = 'top-filter';
    filter.placeholder = 'Filter functions, binaries, labels…';
    filter.setAttribute('aria-label', 'Filter rows');
    filter.addEventListener('input', () => {
      this.filter = filter.value;
      this.render();
    });
    const group = document.createElement('span');
    group.setAttribute('role', 'group');
    group.setAttribute('aria-label', 'Rows');
    for (const [by, label] of [
      ['function', 'By function'],
      ['binary', 'By binary'],
    ] as const) {
      const b = document.createElement('button');
      b.type = 'button';
      b.id = `top-by-${by}`;
      b.textContent = label;
      b.addEventListener('click', () => this.onBy(by));
      this.byButtons.set(by, b);
      group.append(b);
    }
    const count = document.createElement('span');
    count.id = 'top-count';
    count.className = 'muted';
    bar.append(filter, group, count);
    container.appendChild(bar);
    this.scroller = document.createElement('div');
    this.scroller.id = 'top-scroll';
    this.table = document.createElement('table');
    this.table.id = 'top-table';
    this.headRow = this.table.createTHead().insertRow();
    this.tbody = this.table.createTBody();
    this.tbody.addEventListener('click', (e) => {
      const tr = (e.target as HTMLElement).closest('tr');
      const i = tr ? Number(tr.dataset.index) : NaN;
      const row = Number.isFinite(i) ? this.shown[i] : undefined;
      if (row) this.onPick(row);
    });
    this.scroller.appendChild(this.table);
    this.scroller.addEventListener('scroll', () => this.paintRows(false), { passive: true });
    container.appendChild(this.scroller);
    this.renderHead();
  }

  private renderHead(): void {
    const cols: [TopSortKey | null, string, string][] = [
      ...this.groupBy.map((g): [null, string, string] => [null, g, 'grp']),
      ['name', this.by === 'binary' ? 'Binary' : 'Function', 'fn'],
      ['binary', this.by === 'binary' ? 'Path' : 'Binary', 'bin'],
      ['self', 'Self', 'num'],
      ['total', 'Total', 'num'],
    ];
    this.headRow.replaceChildren();
    for (const [key, label, cls] of cols) {
      const th = document.createElement('th');
      th.textContent = label;
      th.scope = 'col';
      th.className = cls;
      if (key) {
        th.dataset.sort = key;
        th.tabIndex = 0;
        th.classList.add('sortable');
        th.setAttribute('aria-sort', key === this.sortKey ? (this.sortDir === 'asc' ? 'ascending' : 'descending') : 'none');
        const act = (): void => {
          if (this.sortKey === key) this.sortDir = this.sortDir === 'asc' ? 'desc' : 'asc';
          else {
            this.sortKey = key;
            this.sortDir = key === 'name' || key === 'binary' ? 'asc' : 'desc';
          }
          this.render();
          // The header row is rebuilt: keep keyboard focus on this column.
          this.headRow.querySelector<HTMLElement>(`th[data-sort="${key}"]`)?.focus();
        };
        th.addEventListener('click', act);
        th.addEventListener('keydown', (e) => {
          if (e.key === 'Enter' || e.key === ' ') {
            e.preventDefault();
            act();
          }
        });
      } else {
        th.dataset.label = label;
      }
      this.headRow.appendChild(th);
    }
  }

  setData(rows: TopRow[], total: number, sampleType: SampleTypeJson, groupBy: string[], by: TopBy): void {
    this.rows = rows;
    this.total = total;
    this.sampleType = sampleType;
    this.groupBy = groupBy;
    this.by = by;
    // Rendered when the Top view is shown (renderView), not on every load.
    this.tbody.replaceChildren();
    this.first = this.last = -1;
  }

  render(): void {
    this.shown = sortTop(filterTop(this.rows, this.filter), this.sortKey, this.sortDir);
    for (const [by, b] of this.byButtons) b.setAttribute('aria-pressed', String(by === this.by));
    this.renderHead();
    const count = document.getElementById('top-count');
    if (count) count.textContent = `${this.shown.length.toLocaleString('en-US')} ${this.by === 'binary' ? 'binaries' : 'functions'}`;
    this.table.dataset.rows = String(this.shown.length);
    this.first = this.last = -1;
    this.paintRows(true);
  }

  /** Scrolls so that row `index` of the sorted, filtered rows is visible (tests, keyboard). */
  scrollToRow(index: number): void {
    this.scroller.scrollTop = index * TOP_ROW_HEIGHT;
    this.paintRows(true);
  }

  private paintRows(force: boolean): void {
    const n = this.shown.length;
    const viewH = this.scroller.clientHeight || 600;
    const top = this.scroller.scrollTop;
    const first = Math.max(0, Math.floor(top / TOP_ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(n, Math.ceil((top + viewH) / TOP_ROW_HEIGHT) + OVERSCAN);
    if (!force && first === this.first && last === this.last) return;
    this.first = first;
    this.last = last;
    const cols = this.groupBy.length + 4;
    const spacer = (rows: number): HTMLTableRowElement => {
      const tr = document.createElement('tr');
      tr.className = 'spacer';
      tr.setAttribute('aria-hidden', 'true');
      const td = tr.insertCell();
      td.colSpan = cols;
      td.style.height = `${rows * TOP_ROW_HEIGHT}px`;
      return tr;
    };
    // Column widths in characters for the middle-truncated binary paths.
    const binCol = this.headRow.querySelector<HTMLElement>('th.bin');
    const binChars = Math.max(12, Math.floor(((binCol?.clientWidth ?? 300) - 16) / this.charW));
    const frag = document.createDocumentFragment();
    if (first > 0) frag.appendChild(spacer(first));
    for (let i = first; i < last; i++) frag.appendChild(this.rowElement(this.shown[i]!, i, binChars));
    if (last < n) frag.appendChild(spacer(n - last));
    this.tbody.replaceChildren(frag);
  }

  private rowElement(r: TopRow, i: number, binChars: number): HTMLTableRowElement {
    const tr = document.createElement('tr');
    tr.dataset.index = String(i);
    tr.dataset.name = r.name;
    tr.dataset.binary = r.binary;
    tr.dataset.self = String(r.self);
    tr.dataset.total = String(r.total);
    if (r.group.length > 0) tr.dataset.group = JSON.stringify(r.group);
    for (const g of r.group) {
      const td = tr.insertCell();
      td.className = 'grp';
      td.textContent = g;
      td.title = g;
    }
    const name = tr.insertCell();
    const sw = document.createElement('span');
    sw.className = 'swatch';
    sw.style.background = legendColor(r.kind, this.scheme);
    sw.title = r.kind;
    name.append(sw, document.createTextNode(r.name));
    name.className = 'fn';
    name.title = r.name;
    const bin = tr.insertCell();
    bin.textContent = truncateMiddle(r.binary, binChars);
    bin.title = r.binary;
    bin.className = 'bin';
    const self = tr.insertCell();
    self.className = 'num';
    self.textContent = `${formatValue(r.self, this.sampleType)} (${formatPercent(r.self, this.total)})`;
    const tot = tr.insertCell();
    tot.className = 'num';
    tot.textContent = `${formatValue(r.total, this.sampleType)} (${formatPercent(r.total, this.total)})`;
    return tr;
  }
}
