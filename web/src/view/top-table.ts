// Sortable, filterable table of functions (self / total).
import type { SampleTypeJson } from '../../../src/profile/api-types.js';
import { formatPercent, formatValue } from '../profile-logic/format.js';
import { filterTop, sortTop, type TopRow, type TopSortKey } from '../profile-logic/top.js';
import { legendColor, type Scheme } from '../profile-logic/colors.js';

const MAX_ROWS = 1000;

export class TopTable {
  private rows: TopRow[] = [];
  private total = 0;
  private sampleType: SampleTypeJson = { type: 'cpu', unit: 'nanoseconds' };
  sortKey: TopSortKey = 'self';
  sortDir: 'asc' | 'desc' = 'desc';
  private filter = '';
  private readonly table: HTMLTableElement;
  private readonly tbody: HTMLTableSectionElement;
  private readonly headers = new Map<TopSortKey, HTMLTableCellElement>();
  scheme: Scheme = 'light';

  constructor(
    container: HTMLElement,
    private readonly onPick: (row: TopRow) => void,
  ) {
    const filter = document.createElement('input');
    filter.type = 'search';
    filter.id = 'top-filter';
    filter.placeholder = 'Filter functions…';
    filter.setAttribute('aria-label', 'Filter functions');
    filter.addEventListener('input', () => {
      this.filter = filter.value;
      this.render();
    });
    container.appendChild(filter);
    this.table = document.createElement('table');
    this.table.id = 'top-table';
    const thead = this.table.createTHead();
    const tr = thead.insertRow();
    const cols: [TopSortKey | null, string][] = [
      ['name', 'Function'],
      [null, 'Binary'],
      ['self', 'Self'],
      ['total', 'Total'],
    ];
    for (const [key, label] of cols) {
      const th = document.createElement('th');
      th.textContent = label;
      th.scope = 'col';
      if (key) {
        th.dataset.sort = key;
        th.tabIndex = 0;
        th.className = 'sortable';
        const act = (): void => {
          if (this.sortKey === key) this.sortDir = this.sortDir === 'asc' ? 'desc' : 'asc';
          else {
            this.sortKey = key;
            this.sortDir = key === 'name' ? 'asc' : 'desc';
          }
          this.render();
        };
        th.addEventListener('click', act);
        th.addEventListener('keydown', (e) => {
          if (e.key === 'Enter' || e.key === ' ') {
            e.preventDefault();
            act();
          }
        });
        this.headers.set(key, th);
      }
      tr.appendChild(th);
    }
    this.tbody = this.table.createTBody();
    this.tbody.addEventListener('click', (e) => {
      const tr = (e.target as HTMLElement).closest('tr');
      const i = tr ? Number(tr.dataset.index) : NaN;
      const row = Number.isFinite(i) ? this.shown[i] : undefined;
      if (row) this.onPick(row);
    });
    container.appendChild(this.table);
  }

  private shown: TopRow[] = [];

  setData(rows: TopRow[], total: number, sampleType: SampleTypeJson): void {
    this.rows = rows;
    this.total = total;
    this.sampleType = sampleType;
    // Rendered when the Top view is shown (renderView), not on every load.
    this.tbody.replaceChildren();
  }

  render(): void {
    this.shown = sortTop(filterTop(this.rows, this.filter), this.sortKey, this.sortDir).slice(0, MAX_ROWS);
    for (const [key, th] of this.headers) {
      th.setAttribute('aria-sort', key === this.sortKey ? (this.sortDir === 'asc' ? 'ascending' : 'descending') : 'none');
    }
    const frag = document.createDocumentFragment();
    this.shown.forEach((r, i) => {
      const tr = document.createElement('tr');
      tr.dataset.index = String(i);
      tr.dataset.name = r.name;
      tr.dataset.self = String(r.self);
      tr.dataset.total = String(r.total);
      const name = document.createElement('td');
      const sw = document.createElement('span');
      sw.className = 'swatch';
      sw.style.background = legendColor(r.kind, this.scheme);
      sw.title = r.kind;
      name.append(sw, document.createTextNode(r.name));
      name.className = 'fn';
      const bin = document.createElement('td');
      bin.textContent = r.binary;
      bin.className = 'bin';
      const self = document.createElement('td');
      self.className = 'num';
      self.textContent = `${formatValue(r.self, this.sampleType)} (${formatPercent(r.self, this.total)})`;
      const tot = document.createElement('td');
      tot.className = 'num';
      tot.textContent = `${formatValue(r.total, this.sampleType)} (${formatPercent(r.total, this.total)})`;
      tr.append(name, bin, self, tot);
      frag.appendChild(tr);
    });
    this.tbody.replaceChildren(frag);
  }
}
