// The realistic workload's morning phase alone, at its peak and for a fixed time: 400 clerks listing today's vouchers,
// searching partners and posting (`morningEntry`), and 100 background master-data readers (`masterData`). It is the
// phase that saturates the machine, so it is the one to profile and compare changes with; a 60 s run is short enough
// to repeat. Same environment as realistic_workload.js (BASE_URL, API_TOKEN, DATA_DIR, SCALE), plus DURATION (60s)
// and CLERKS / READERS (400 / 100). No thresholds: compare the summary between runs of the same company.
export { morningEntry, masterData } from './realistic_workload.js';

const DURATION = __ENV.DURATION || '60s';

export const options = {
  scenarios: {
    morning_voucher_entry: { executor: 'constant-vus', vus: Number(__ENV.CLERKS || 400), duration: DURATION, exec: 'morningEntry' },
    background_master_data: { executor: 'constant-vus', vus: Number(__ENV.READERS || 100), duration: DURATION, exec: 'masterData' },
  },
  summaryTrendStats: ['med', 'p(95)', 'p(99)', 'count'],
};
