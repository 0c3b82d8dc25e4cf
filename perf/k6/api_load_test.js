// API load test of K-ERP (issue 8): constant 50 VUs, then a ramp to 100 and to 200, then a spike to 500, one after
// another. Each iteration posts a balanced voucher and reads it back, and lists vouchers, lists partners and reads the
// trial balance now and then; every answer's status is checked and the latencies are held to perf/thresholds.yaml
// per endpoint (tag `endpoint`), with an overall error rate under 0.1%.
//
//   cargo run -p kerp-perf --release -- export --token "$(compose/dev token)"     # writes perf/data/*.json
//   API_TOKEN=$(compose/dev token) SCALE=0.05 k6 run perf/k6/api_load_test.js       # ~1-minute smoke
//
// Env: BASE_URL (default http://127.0.0.1:8080), API_TOKEN (or TOKEN), SCALE (default 1: about 17 minutes, 0.05: about
// a minute with a twentieth of the VUs), VU_SCALE (VU counts only), THINK_SECONDS (default 1), IDEMPOTENCY_KEYS (1: a
// key on every POST, the single posting path; default none, group commit), DATA_DIR (default perf/data),
// REPORT_YEAR/REPORT_MONTH (default this month), SUMMARY_JSON (a path for k6's summary as JSON).
import { sleep } from 'k6';
import { k6Thresholds } from './lib/thresholds.js';
import {
  call, data, dataPath, keyHeader, parseData, seconds, sequential, summary, voucherBody, vus,
  MONTH, THINK_SECONDS, TODAY, YEAR, YEAR_START,
} from './lib/common.js';

// Read once in the init context; every VU shares the parsed lists.
const DATA = parseData(
  open(dataPath('accounts.json') || import.meta.resolve('../data/accounts.json')),
  open(dataPath('partners.json') || import.meta.resolve('../data/partners.json')),
);

// Full-scale plan, in seconds and VUs; SCALE and VU_SCALE shrink or stretch every number.
const plan = sequential([
  { name: 'constant_50', executor: 'constant-vus', vus: vus(50), duration: seconds(300), exec: 'mixed' },
  {
    name: 'ramp_100_200', executor: 'ramping-vus', startVUs: 0, exec: 'mixed',
    stages: [
      { duration: seconds(60), target: vus(100) },
      { duration: seconds(180), target: vus(100) },
      { duration: seconds(60), target: vus(200) },
      { duration: seconds(180), target: vus(200) },
      { duration: seconds(60), target: 0 },
    ],
  },
  {
    name: 'spike_500', executor: 'ramping-vus', startVUs: 0, exec: 'mixed',
    stages: [
      { duration: seconds(30), target: vus(50) },
      { duration: seconds(10), target: vus(500) },
      { duration: seconds(60), target: vus(500) },
      { duration: seconds(10), target: vus(50) },
      { duration: seconds(30), target: vus(50) },
      { duration: seconds(10), target: 0 },
    ],
  },
]);

export const options = {
  scenarios: plan.scenarios,
  thresholds: k6Thresholds([
    'vouchers_create', 'vouchers_list', 'vouchers_get', 'partners_list', 'reports_trial_balance',
  ]),
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)', 'count'],
};

export function mixed() {
  const created = call('POST', '/api/v1/vouchers', voucherBody(DATA, null), 'vouchers_create', 201, keyHeader());
  const posted = data(created);
  if (posted && posted.id) {
    call('GET', `/api/v1/vouchers/${posted.id}`, null, 'vouchers_get', 200);
  }
  if (Math.random() < 0.5) {
    call('GET', `/api/v1/vouchers?from_date=${YEAR_START}&to_date=${TODAY}&page=1&page_size=50`, null, 'vouchers_list', 200);
  }
  if (Math.random() < 0.3) {
    call('GET', `/api/v1/partners?page=${1 + Math.floor(Math.random() * 3)}&page_size=50`, null, 'partners_list', 200);
  }
  if (Math.random() < 0.2) {
    call('GET', `/api/v1/reports/trial-balance?year=${YEAR}&month=${MONTH}`, null, 'reports_trial_balance', 200);
  }
  if (THINK_SECONDS > 0) sleep(THINK_SECONDS * (0.5 + Math.random()));
}

export function handleSummary(d) {
  return summary(d, 'api_load_test');
}
