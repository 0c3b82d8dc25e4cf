// A working day of K-ERP users (issue 8), compressed: the morning peak of voucher entry (list today's vouchers, search
// a partner, post a voucher naming it), the midday reports (trial balance, account ledger, income statement), the
// end-of-day invoices (list the drafts, create one, issue it), one phase after another, with background master-data
// reads (accounts, partners, departments, the company) all day. At SCALE=1 the peaks add up to 500 VUs at once
// (400 posting + 100 reading master data). Every answer's status is checked; latencies are held to
// perf/thresholds.yaml per endpoint (tag `endpoint`), with an overall error rate under 0.1%.
//
//   cargo run -p kerp-perf --release -- export --token "$(compose/dev token)"       # writes perf/data/*.json
//   API_TOKEN=$(compose/dev token) SCALE=0.05 k6 run perf/k6/realistic_workload.js    # ~1-minute smoke
//
// Env: BASE_URL (default http://127.0.0.1:8080), API_TOKEN (or TOKEN), SCALE (default 1: about 20 minutes; 0.05: about
// a minute with a twentieth of the VUs; 1.5: a 30-minute soak), VU_SCALE (VU counts only), THINK_SECONDS (default 1),
// IDEMPOTENCY_KEYS (1: a key on every POST, the single posting path; default none, group commit), DATA_DIR (default
// perf/data), REPORT_YEAR/REPORT_MONTH (default this month), SUMMARY_JSON (k6's summary as JSON).
import { sleep } from 'k6';
import { k6Thresholds } from './lib/thresholds.js';
import {
  call, data, dataPath, keyHeader, invoiceBody, parseData, pick, seconds, sequential, summary, voucherBody, vus,
  MONTH, THINK_SECONDS, TODAY, YEAR, YEAR_START,
} from './lib/common.js';

const DATA = parseData(
  open(dataPath('accounts.json') || import.meta.resolve('../data/accounts.json')),
  open(dataPath('partners.json') || import.meta.resolve('../data/partners.json')),
);
if (DATA.partners.length === 0) {
  throw new Error('partners.json has no active partner: the morning search and the invoices need some (compose/dev up seeds them)');
}

// The three phases of the day, full scale in seconds and VUs.
const plan = sequential([
  {
    name: 'morning_voucher_entry', executor: 'ramping-vus', startVUs: 0, exec: 'morningEntry',
    stages: [
      { duration: seconds(90), target: vus(400) },
      { duration: seconds(300), target: vus(400) },
      { duration: seconds(90), target: 0 },
    ],
  },
  {
    name: 'midday_reports', executor: 'ramping-vus', startVUs: 0, exec: 'middayReports',
    stages: [
      { duration: seconds(60), target: vus(200) },
      { duration: seconds(240), target: vus(200) },
      { duration: seconds(60), target: 0 },
    ],
  },
  {
    name: 'end_of_day_invoices', executor: 'ramping-vus', startVUs: 0, exec: 'endOfDayInvoices',
    stages: [
      { duration: seconds(60), target: vus(150) },
      { duration: seconds(240), target: vus(150) },
      { duration: seconds(60), target: 0 },
    ],
  },
]);
// The background readers span the whole day.
plan.scenarios.background_master_data = {
  executor: 'constant-vus', vus: vus(100), duration: `${plan.totalSeconds}s`, startTime: '0s', gracefulStop: '2s',
  exec: 'masterData',
};

export const options = {
  scenarios: plan.scenarios,
  // Every floor endpoint but the single voucher read, which this day does not make.
  thresholds: k6Thresholds([
    'vouchers_create', 'vouchers_list', 'partners_list', 'partners_search',
    'reports_trial_balance', 'reports_income_statement', 'reports_account_ledger',
  ], [
    'invoices_list', 'invoices_create', 'invoices_issue', 'accounts_list', 'partners_get', 'departments_list', 'company_get',
  ]),
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)', 'count'],
};

function think() {
  if (THINK_SECONDS > 0) sleep(THINK_SECONDS * (0.5 + Math.random()));
}

// Two characters of a partner's name (Korean included) or its code, as a person types into a search box.
function searchTerm(p) {
  const chars = Array.from(p.name.replace(/[()㈜]|주식회사/g, '').trim());
  if (chars.length < 2) return p.code;
  const at = Math.floor(Math.random() * (chars.length - 1));
  return chars.slice(at, at + 2).join('');
}

export function morningEntry() {
  call('GET', `/api/v1/vouchers?from_date=${TODAY}&to_date=${TODAY}&page=1&page_size=20`, null, 'vouchers_list', 200);
  const wanted = pick(DATA.partners);
  const found = data(call('GET', `/api/v1/partners?q=${encodeURIComponent(searchTerm(wanted))}&page=1&page_size=20`, null,
    'partners_search', 200));
  // The partner the clerk picks from the results; the one they looked for if the term matched nothing active.
  const partner = (found || []).find((p) => p.is_active) || wanted;
  call('POST', '/api/v1/vouchers', voucherBody(DATA, partner), 'vouchers_create', 201, keyHeader());
  think();
}

export function middayReports() {
  call('GET', `/api/v1/reports/trial-balance?year=${YEAR}&month=${MONTH}`, null, 'reports_trial_balance', 200);
  const account = pick(DATA.accounts);
  call('GET', `/api/v1/reports/account-ledger?account_code=${account.code}&year=${YEAR}&page=1&page_size=200`, null,
    'reports_account_ledger', 200);
  call('GET', `/api/v1/reports/income-statement?year=${YEAR}&month=${MONTH}`, null, 'reports_income_statement', 200);
  think();
}

export function endOfDayInvoices() {
  call('GET', `/api/v1/invoices?status=draft&from_date=${YEAR_START}&to_date=${TODAY}&page=1&page_size=20`, null,
    'invoices_list', 200);
  // Sales need a customer (or both), purchases a supplier (or both); the server refuses the other pairings.
  const sales = Math.random() < 0.6 && DATA.customers.length > 0;
  const partners = sales ? DATA.customers : DATA.suppliers;
  if (partners.length === 0) return;
  const created = data(call('POST', '/api/v1/invoices', invoiceBody(sales ? 'sales' : 'purchase', pick(partners)), 'invoices_create',
    201, keyHeader()));
  if (created && created.id) {
    call('POST', `/api/v1/invoices/${created.id}/issue`, null, 'invoices_issue', 200, keyHeader());
  }
  think();
}

export function masterData() {
  const r = Math.random();
  if (r < 0.3) {
    call('GET', '/api/v1/accounts', null, 'accounts_list', 200);
  } else if (r < 0.6) {
    call('GET', '/api/v1/partners?page=1&page_size=50', null, 'partners_list', 200);
  } else if (r < 0.75) {
    call('GET', `/api/v1/partners/${pick(DATA.partners).id}`, null, 'partners_get', 200);
  } else if (r < 0.9) {
    call('GET', '/api/v1/departments?page=1&page_size=50', null, 'departments_list', 200);
  } else {
    call('GET', '/api/v1/company', null, 'company_get', 200);
  }
  think();
}

export function handleSummary(d) {
  return summary(d, 'realistic_workload');
}
