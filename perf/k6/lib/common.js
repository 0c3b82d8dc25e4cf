// What both K-ERP load scripts share: configuration from the environment, the SCALE knob, tagged and checked
// requests, the bodies of vouchers and invoices, sequential scenarios and the end-of-run summary. Vendored on purpose:
// nothing is fetched at run time (no jslib.k6.io), so a run needs only k6 and this folder.
import http from 'k6/http';
import { check } from 'k6';
import { ENDPOINTS } from './thresholds.js';

export const BASE = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
// API_TOKEN as the issue names it; TOKEN too, as post_vouchers.js and `compose/dev token` users have it.
export const TOKEN = __ENV.API_TOKEN || __ENV.TOKEN || '';

// SCALE multiplies every duration and every VU count of a scenario: 1 is the full scenario, 0.05 a smoke of about a
// minute with a twentieth of the users. VU_SCALE, when given, scales the VU counts instead (e.g. SCALE=1.5 VU_SCALE=1:
// a half-longer soak at the full user counts).
export const SCALE = Number(__ENV.SCALE || 1);
export const VU_SCALE = Number(__ENV.VU_SCALE || SCALE);
// Seconds a virtual user waits between iterations, on average (each wait is 0.5× to 1.5× of it), as a person at a
// keyboard would; THINK_SECONDS=0 drives the API as fast as it answers.
export const THINK_SECONDS = Number(__ENV.THINK_SECONDS === undefined ? 1 : __ENV.THINK_SECONDS);
// What k6 waits for iterations still running when a scenario ends, before the next one starts.
const GRACE_SECONDS = 2;

if (!(SCALE > 0) || !(VU_SCALE > 0)) {
  throw new Error(`SCALE (${__ENV.SCALE}) and VU_SCALE (${__ENV.VU_SCALE}) must be positive numbers`);
}

/** A VU count scaled by VU_SCALE, at least 1. */
export function vus(n) {
  return Math.max(1, Math.round(n * VU_SCALE));
}

/** Seconds scaled by SCALE, at least 1. */
export function seconds(n) {
  return Math.max(1, Math.round(n * SCALE));
}

/**
 * Scenarios that run one after another: each gets a `startTime` after the previous one's last stage and its grace
 * period. Durations in `stages` and `duration` are given as numbers of seconds (already scaled). Returns the k6
 * scenarios and the total length in seconds, for a background scenario that spans them all.
 */
export function sequential(list) {
  const scenarios = {};
  let offset = 0;
  for (const { name, ...s } of list) {
    const length = s.stages ? s.stages.reduce((sum, st) => sum + st.duration, 0) : s.duration;
    const k6 = { ...s, startTime: `${offset}s`, gracefulStop: `${GRACE_SECONDS}s` };
    if (s.stages) {
      k6.stages = s.stages.map((st) => ({ duration: `${st.duration}s`, target: st.target }));
      k6.gracefulRampDown = `${GRACE_SECONDS}s`;
    } else {
      k6.duration = `${s.duration}s`;
    }
    scenarios[name] = k6;
    offset += length + GRACE_SECONDS;
  }
  return { scenarios, totalSeconds: offset };
}

/** Reads the JSON that `kerp-perf export` wrote; keeps the active accounts and partners. */
export function parseData(accountsText, partnersText) {
  const accounts = JSON.parse(accountsText).filter((a) => a.is_active);
  const partners = JSON.parse(partnersText).filter((p) => p.is_active);
  const byType = {};
  for (const a of accounts) {
    (byType[a.account_type] = byType[a.account_type] || []).push(a);
  }
  if (accounts.length < 2) {
    throw new Error('accounts.json has fewer than two active accounts: run `kerp-perf export` against a company with a chart');
  }
  return {
    accounts,
    byType,
    partners,
    customers: partners.filter((p) => p.partner_type === 'customer' || p.partner_type === 'both'),
    suppliers: partners.filter((p) => p.partner_type === 'supplier' || p.partner_type === 'both'),
  };
}

/** The path of a data file: DATA_DIR (absolute, or relative to the working directory) when given. */
export function dataPath(name) {
  const dir = __ENV.DATA_DIR;
  if (!dir) {
    return null;
  }
  return dir.startsWith('/') ? `${dir}/${name}` : `${__ENV.PWD || '.'}/${dir}/${name}`;
}

export function pick(list) {
  return list[Math.floor(Math.random() * list.length)];
}

/** Won between `min` and `max`, whole. */
export function amount(min, max) {
  return min + Math.floor(Math.random() * (max - min + 1));
}

function pad(n) {
  return String(n).padStart(2, '0');
}

// Dates in the company's open periods: today's month, which the demo company and generated data keep open.
// REPORT_YEAR and REPORT_MONTH point the reports elsewhere (e.g. at a generated size's months).
const NOW = new Date();
export const YEAR = Number(__ENV.REPORT_YEAR || NOW.getFullYear());
export const MONTH = Number(__ENV.REPORT_MONTH || NOW.getMonth() + 1);
export const TODAY = `${NOW.getFullYear()}-${pad(NOW.getMonth() + 1)}-${pad(NOW.getDate())}`;
export const YEAR_START = `${NOW.getFullYear()}-01-01`;

// IDEMPOTENCY_KEYS=1 sends an Idempotency-Key with every POST, as a client that retries would. A keyed voucher post
// takes ingest-api's single path (its key, voucher and answer in one transaction of its own); unkeyed posts, the
// default, are group-committed in batches, the throughput path.
export const IDEMPOTENCY_KEYS = ['1', 'true', 'yes'].includes(String(__ENV.IDEMPOTENCY_KEYS || '').toLowerCase());

/** The headers a POST carries for IDEMPOTENCY_KEYS: a fresh key, or none. */
export function keyHeader() {
  return IDEMPOTENCY_KEYS ? { 'Idempotency-Key': `k6-${crypto.randomUUID()}` } : {};
}

/**
 * One request, tagged with its endpoint (so its latency lands in `http_req_duration{endpoint:<name>}`) and checked
 * for the status it must answer. Any other status is a failed check and, being outside 2xx, a failed request.
 */
export function call(method, path, body, endpoint, expected, extraHeaders) {
  const headers = { Authorization: `Bearer ${TOKEN}`, ...(extraHeaders || {}) };
  if (body !== null && body !== undefined) {
    headers['Content-Type'] = 'application/json';
  }
  const params = { headers, tags: { endpoint, name: endpoint } };
  const payload = body === null || body === undefined ? null : JSON.stringify(body);
  const res = http.request(method, `${BASE}${path}`, payload, params);
  const want = expected || 200;
  check(res, { [`${endpoint} ${want}`]: (r) => r.status === want });
  return res;
}

/** The `data` of a JSON answer, or null. */
export function data(res) {
  try {
    return res.json('data');
  } catch (_) {
    return null;
  }
}

/** Two accounts for a balanced voucher: an expense or an asset on the debit side, an asset, a liability or revenue on
 * the credit side, as everyday postings are; any two active accounts when the chart lacks those types. */
export function voucherAccounts(d) {
  const t = d.byType;
  const choices = [];
  if (t.expense && t.asset) choices.push([t.expense, t.asset]);
  if (t.asset && t.revenue) choices.push([t.asset, t.revenue]);
  if (t.asset && t.liability) choices.push([t.asset, t.liability]);
  if (choices.length > 0) {
    const [dr, cr] = pick(choices);
    const debit = pick(dr);
    let credit = pick(cr);
    if (credit.id === debit.id) credit = cr.find((a) => a.id !== debit.id) || d.accounts.find((a) => a.id !== debit.id);
    return [debit, credit];
  }
  const debit = pick(d.accounts);
  return [debit, d.accounts.find((a) => a.id !== debit.id)];
}

/** A balanced two-line voucher dated today, its lines naming accounts by id and, when given, a partner. */
export function voucherBody(d, partner) {
  const [debit, credit] = voucherAccounts(d);
  const won = amount(10000, 10000000);
  const line = (a, side) => {
    const l = { account_id: a.id, description: `k6 ${side}` };
    l[`${side}_amount`] = won;
    if (partner) l.partner_id = partner.id;
    return l;
  };
  return {
    voucher_date: TODAY,
    voucher_type: 'general',
    description: 'k6 load',
    lines: [line(debit, 'debit'), line(credit, 'credit')],
  };
}

/** A taxable invoice dated today whose tax is ⌊supply × 10%⌋ and whose items add up to the supply. */
export function invoiceBody(type, partner) {
  const quantity = amount(1, 20);
  const unitPrice = amount(1, 500) * 1000;
  const supply = quantity * unitPrice;
  return {
    invoice_type: type,
    partner_id: partner.id,
    invoice_date: TODAY,
    supply_amount: supply,
    tax_amount: Math.floor(supply / 10),
    description: 'k6 load',
    items: [{ description: type === 'sales' ? '용역 제공' : '소모품 구입', quantity, unit_price: unitPrice }],
  };
}

function ms(v) {
  return v === undefined ? '-' : v.toFixed(1);
}

/** The end-of-run report: a table per endpoint on stdout, and k6's whole summary as JSON to SUMMARY_JSON if given. */
export function summary(data, title) {
  const m = data.metrics;
  const rows = [];
  const names = Object.keys(m)
    .filter((k) => k.startsWith('http_req_duration{endpoint:'))
    .map((k) => k.slice('http_req_duration{endpoint:'.length, -1))
    .sort();
  const width = Math.max(8, ...names.map((n) => n.length));
  rows.push(`${title}: SCALE=${SCALE} VU_SCALE=${VU_SCALE} THINK_SECONDS=${THINK_SECONDS} IDEMPOTENCY_KEYS=${IDEMPOTENCY_KEYS ? 1 : 0} against ${BASE}`);
  rows.push(`${'endpoint'.padEnd(width)}  ${'count'.padStart(7)}  ${'p50 ms'.padStart(8)}  ${'p95 ms'.padStart(8)}  ${'p99 ms'.padStart(8)}  ${'max ms'.padStart(8)}  floor p95/p99  ok`);
  const line = (name, metric, bound) => {
    const v = metric.values;
    const ok = Object.values(metric.thresholds || {}).every((t) => t.ok);
    const floor = bound ? `${bound.p95}/${bound.p99}` : '-';
    rows.push(`${name.padEnd(width)}  ${String(v.count ?? '-').padStart(7)}  ${ms(v.med).padStart(8)}  ${ms(v['p(95)']).padStart(8)}  ${ms(v['p(99)']).padStart(8)}  ${ms(v.max).padStart(8)}  ${floor.padEnd(13)}  ${ok ? 'yes' : 'NO'}`);
  };
  for (const n of names) line(n, m[`http_req_duration{endpoint:${n}}`], ENDPOINTS[n]);
  if (m.http_req_duration) line('(all)', m.http_req_duration, null);
  const failed = m.http_req_failed ? m.http_req_failed.values : { rate: 0, passes: 0 };
  const reqs = m.http_reqs ? m.http_reqs.values : { count: 0, rate: 0 };
  rows.push(`requests ${reqs.count} (${reqs.rate.toFixed(1)}/s), failed ${failed.passes} (${(failed.rate * 100).toFixed(3)}%), ` +
    `iterations ${m.iterations ? m.iterations.values.count : 0}, peak VUs ${m.vus_max ? m.vus_max.values.max : '-'}`);
  const breached = [];
  for (const [name, metric] of Object.entries(m)) {
    for (const [expr, t] of Object.entries(metric.thresholds || {})) {
      if (!t.ok) breached.push(`${name} ${expr}`);
    }
  }
  rows.push(breached.length === 0 ? 'every threshold passed' : `thresholds breached: ${breached.join(', ')}`);
  const out = { stdout: `\n${rows.join('\n')}\n\n` };
  if (__ENV.SUMMARY_JSON) out[__ENV.SUMMARY_JSON] = JSON.stringify(data, null, 2);
  return out;
}
