// The performance floor of perf/thresholds.yaml, for k6, which cannot read YAML without a library fetched at run time.
// The object between the markers is the whole file as JSON; `cargo test -p kerp-perf thresholds` fails when it differs
// from the YAML, so edit both together. Latencies are milliseconds.

export const FLOOR = /* BEGIN THRESHOLDS */ {
  "api": {
    "vouchers": {"create": {"p95": 200, "p99": 500}, "list": {"p95": 100, "p99": 200}, "get": {"p95": 50, "p99": 100}},
    "partners": {"list": {"p95": 100, "p99": 200}, "search": {"p95": 150, "p99": 300}},
    "reports": {
      "trial_balance": {"p95": 1000, "p99": 2000},
      "income_statement": {"p95": 1500, "p99": 3000},
      "account_ledger": {"p95": 500, "p99": 1000}
    }
  },
  "database": {
    "simple_select": {"p95": 10, "p99": 50},
    "join_query": {"p95": 50, "p99": 100},
    "aggregation": {"p95": 100, "p99": 500},
    "bulk_insert_1000": {"p95": 500, "p99": 1000}
  },
  "grpc": {},
  "resources": {"api_memory_mb": 512, "worker_memory_mb": 256, "cpu_utilization_pct": 70},
  "overall": {"p50": 50, "p95": 200, "p99": 500, "min_rps": 1000, "min_concurrent_users": 500, "max_error_rate": 0.001},
  "data_sizes": {
    "small": {"companies": 5, "users": 10, "partners": 50, "accounts": 100, "vouchers_per_month": 100, "months": 3},
    "medium": {"companies": 20, "users": 25, "partners": 200, "accounts": 150, "vouchers_per_month": 500, "months": 12},
    "large": {"companies": 100, "users": 50, "partners": 500, "accounts": 200, "vouchers_per_month": 2000, "months": 24},
    "xlarge": {"companies": 500, "users": 100, "partners": 1000, "accounts": 300, "vouchers_per_month": 5000, "months": 36}
  }
} /* END THRESHOLDS */;

// The `endpoint` tag each request carries, with its bound. The names are those of `Api::endpoints` in
// perf/src/thresholds.rs, so the perf runner can match k6's sub-metrics to the floor.
export const ENDPOINTS = {
  vouchers_create: FLOOR.api.vouchers.create,
  vouchers_list: FLOOR.api.vouchers.list,
  vouchers_get: FLOOR.api.vouchers.get,
  partners_list: FLOOR.api.partners.list,
  partners_search: FLOOR.api.partners.search,
  reports_trial_balance: FLOOR.api.reports.trial_balance,
  reports_income_statement: FLOOR.api.reports.income_statement,
  reports_account_ledger: FLOOR.api.reports.account_ledger,
};

// k6 thresholds for the named endpoints (every one when `names` is left out), the overall latency and the error rate.
// Requests to endpoints the floor does not name (invoices, master data) count towards the overall bounds only; list
// them in `reported` to have their latencies in the summary too (k6 summarises a tag's sub-metric only when a
// threshold names it, so they get one that always holds).
export function k6Thresholds(names, reported) {
  const t = {
    'http_req_duration': [`p(50)<${FLOOR.overall.p50}`, `p(95)<${FLOOR.overall.p95}`, `p(99)<${FLOOR.overall.p99}`],
    'http_req_failed': [`rate<${FLOOR.overall.max_error_rate}`],
    'checks': [`rate>${1 - FLOOR.overall.max_error_rate}`],
  };
  for (const name of names || Object.keys(ENDPOINTS)) {
    const bound = ENDPOINTS[name];
    t[`http_req_duration{endpoint:${name}}`] = [`p(95)<${bound.p95}`, `p(99)<${bound.p99}`];
  }
  for (const name of reported || []) {
    t[`http_req_duration{endpoint:${name}}`] = ['max>=0'];
  }
  return t;
}
