//! Group commit's Postgres side: a batch of validated postings, of one company or of several, written in one
//! transaction by a fixed number of set-based statements, whatever the batch's size.
//!
//! What flows through it: the batch's vouchers in arrival order. One query reads every account the batch names with
//! its companies' closed months, one every partner and one every department, and each voucher is checked against
//! them by the same pure functions the single path uses, so a refused voucher gets the very answer it would have got
//! alone and the rest go on. Closed months are refused the same way. Then the lines are written and the month
//! counters (gapless numbers) taken in one statement, the company rows (event sequences) in the next, each in a
//! fixed order so that batches and single postings never deadlock; numbers and sequences are handed out in arrival
//! order, and one last statement writes the vouchers and their outbox rows. The company rows are thus locked as late
//! as the single path locks its own: after the lines, for only the statements that need the sequences.
//! A company's vouchers of a batch therefore get consecutive sequences in the order they arrived, and the outbox
//! holds their events in that order, as the relay and the fold need.
//!
//! Conditions the batch cannot settle for one voucher alone, because they show only after the counters were taken (a
//! month closed meanwhile, a month whose numbers ran out, an event over Kafka's limit, a company that is gone), fail
//! the whole batch with [`Error`]; the caller rolls back and posts each voucher on the single path, which answers each
//! exactly.

use std::collections::{BTreeMap, HashMap};

use chrono::{NaiveDate, Utc};
use kerp_core::voucher::{ValidVoucher, VoucherStatus, VOUCHERS_PER_MONTH_MAX};
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

use super::{event_payload, first_of_month, match_accounts, missing_refs, period_closed, to_book_lines, BookLine, Header, Posted};
use crate::store::Account;
use crate::{Error, Result};

/// One posting of a batch.
pub struct Item<'a> {
    pub company_id: Uuid,
    pub user_id: Uuid,
    pub voucher: &'a ValidVoucher,
}

/// A row of the batch's first read: an account the batch names, or (with only `closed_period` set) a closed month
/// of one of its companies. One read instead of two: a batch's round trips are most of its time, and one company's
/// posts wait for its previous batch.
#[derive(FromRow)]
struct RefRow {
    company_id: Uuid,
    id: Option<Uuid>,
    code: Option<String>,
    name: Option<String>,
    name_en: Option<String>,
    account_type: Option<kerp_core::chart::AccountType>,
    is_active: Option<bool>,
    closed_period: Option<NaiveDate>,
}

/// A voucher that passed its checks, on its way into the tables.
struct Accepted {
    index: usize,
    id: Uuid,
    lines: Vec<BookLine>,
}

/// Posts a batch inside `tx`. Each item gets its own answer, in order: its [`Posted`], or the 4xx that refused it
/// (nothing of a refused item is written).
///
/// # Errors
/// Database errors and the conditions the module's documentation names; then the caller must roll back `tx`, since
/// part of the batch may be written, and post the items one by one.
pub async fn post_batch(tx: &mut PgConnection, topic: &str, items: &[Item<'_>]) -> Result<Vec<Result<Posted>>> {
    let mut answers: Vec<Option<Result<Posted>>> = items.iter().map(|_| None).collect();
    let companies = sorted_unique(items.iter().map(|i| i.company_id));

    // The references, read once for the batch and checked per voucher.
    let (mut ids, mut codes) = (Vec::new(), Vec::new());
    for i in items {
        for l in &i.voucher.lines {
            match &l.account {
                kerp_core::voucher::AccountRef::Id(id) => ids.push(*id),
                kerp_core::voucher::AccountRef::Code(c) => codes.push(c.clone()),
                kerp_core::voucher::AccountRef::Both(id, c) => {
                    ids.push(*id);
                    codes.push(c.clone());
                }
            }
        }
    }
    let found: Vec<RefRow> = sqlx::query_as(
        "SELECT company_id, id, code, name, name_en, account_type, is_active, NULL::date AS closed_period FROM accounts
         WHERE company_id = ANY($1) AND (id = ANY($2) OR code = ANY($3))
         UNION ALL
         SELECT company_id, NULL, NULL, NULL, NULL, NULL, NULL, period FROM closed_periods WHERE company_id = ANY($1)",
    )
    .bind(&companies)
    .bind(&ids)
    .bind(&codes)
    .fetch_all(&mut *tx)
    .await?;
    let mut accounts: HashMap<Uuid, Vec<Account>> = HashMap::new();
    let mut closed: Vec<(Uuid, NaiveDate)> = Vec::new();
    for r in found {
        match (r.closed_period, r.id, r.code, r.name, r.name_en, r.account_type, r.is_active) {
            (Some(period), ..) => closed.push((r.company_id, period)),
            (None, Some(id), Some(code), Some(name), Some(name_en), Some(account_type), Some(is_active)) => {
                accounts.entry(r.company_id).or_default().push(Account { id, code, name, name_en, account_type, is_active });
            }
            _ => return Err(Error::Other("an account row of the batch's read has a NULL column".into())),
        }
    }
    let (mut partner_ids, mut department_ids) = (Vec::new(), Vec::new());
    for l in items.iter().flat_map(|i| &i.voucher.lines) {
        partner_ids.extend(l.partner_id);
        department_ids.extend(l.department_id);
    }
    let partners = active_refs(tx, "partners", &companies, partner_ids).await?;
    let departments = active_refs(tx, "departments", &companies, department_ids).await?;

    let (none, no_ids): (Vec<Account>, Vec<Uuid>) = (Vec::new(), Vec::new());
    let mut accepted = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let v = item.voucher;
        let checked = match_accounts(accounts.get(&item.company_id).unwrap_or(&none), v).and_then(|found| {
            missing_refs(v, partners.get(&item.company_id).unwrap_or(&no_ids), "partner_id", |l| l.partner_id)?;
            missing_refs(v, departments.get(&item.company_id).unwrap_or(&no_ids), "department_id", |l| l.department_id)?;
            Ok(found)
        });
        let period = first_of_month(v.voucher_date);
        match checked {
            Err(e) => answers[index] = Some(Err(e)),
            Ok(_) if v.status == VoucherStatus::Approved && closed.contains(&(item.company_id, period)) => {
                answers[index] = Some(Err(period_closed(period)));
            }
            Ok(found) => accepted.push(Accepted { index, id: crate::store::document_id(), lines: to_book_lines(v, found) }),
        }
    }

    // The lines need no number and no sequence, so they are written before the counters and the company rows are
    // taken (in the counters' statement, so no round trip is added): the locks that order numbers and sequences are
    // then held only for the vouchers and outbox rows, however many lines the batch has. Their key to their voucher
    // is checked at commit, by which time the vouchers are written.
    let mut l = LineColumns::default();
    for a in &accepted {
        let company_id = items[a.index].company_id;
        for (no, line) in (1..).zip(&a.lines) {
            l.voucher_id.push(a.id);
            l.line_no.push(no);
            l.company_id.push(company_id);
            l.account_id.push(line.account.id);
            l.partner_id.push(line.partner_id);
            l.department_id.push(line.department_id);
            l.debit.push(line.debit);
            l.credit.push(line.credit);
            l.description.push(line.description.clone());
        }
    }

    // Numbers: each (company, month) counter is taken once, by the batch's count, in key order.
    let mut wanted: BTreeMap<(Uuid, NaiveDate), i32> = BTreeMap::new();
    for a in accepted.iter().filter(|a| items[a.index].voucher.status == VoucherStatus::Approved) {
        *wanted.entry((items[a.index].company_id, first_of_month(items[a.index].voucher.voucher_date))).or_default() += 1;
    }
    let mut next_no: HashMap<(Uuid, NaiveDate), u32> = HashMap::new();
    let mut next_seq: HashMap<Uuid, i64> = HashMap::new();
    let c: Vec<Uuid> = wanted.keys().map(|(c, _)| *c).collect();
    let p: Vec<NaiveDate> = wanted.keys().map(|(_, p)| *p).collect();
    if !accepted.is_empty() {
        let n: Vec<i32> = wanted.values().copied().collect();
        // ORDER BY makes the rows, and so their locks, go in key order; a single posting takes one counter row, so no
        // two transactions can wait for each other's counters. A batch of drafts only takes none and writes its
        // lines alone.
        let taken: Vec<(Uuid, NaiveDate, i32)> = sqlx::query_as(
            "WITH l AS (
                 INSERT INTO voucher_lines (voucher_id, line_no, company_id, account_id, partner_id, department_id, debit, credit, description)
                 SELECT * FROM UNNEST($4::uuid[], $5::int[], $6::uuid[], $7::uuid[], $8::uuid[], $9::uuid[], $10::bigint[], $11::bigint[], $12::text[])
             )
             INSERT INTO voucher_counters (company_id, period, last_no)
             SELECT c, p, n FROM UNNEST($1::uuid[], $2::date[], $3::int[]) AS t(c, p, n) ORDER BY c, p
             ON CONFLICT (company_id, period) DO UPDATE SET last_no = voucher_counters.last_no + excluded.last_no
             RETURNING company_id, period, last_no",
        )
        .bind(&c)
        .bind(&p)
        .bind(&n)
        .bind(&l.voucher_id)
        .bind(&l.line_no)
        .bind(&l.company_id)
        .bind(&l.account_id)
        .bind(&l.partner_id)
        .bind(&l.department_id)
        .bind(&l.debit)
        .bind(&l.credit)
        .bind(&l.description)
        .fetch_all(&mut *tx)
        .await?;
        for (company, period, last) in taken {
            let count = wanted.get(&(company, period)).copied().unwrap_or(0);
            let last = u32::try_from(last).unwrap_or(u32::MAX);
            if last > VOUCHERS_PER_MONTH_MAX {
                return Err(Error::Other(format!("the month {period} of company {company} ran out of numbers")));
            }
            next_no.insert((company, period), last + 1 - u32::try_from(count).unwrap_or(0));
        }
    }
    if !wanted.is_empty() {
        // Sequences: the company rows, locked in id order (after every counter, as on the single path), in the
        // statement that also looks for a close that committed while the counters were waiting for their locks: it
        // shows in this statement's new snapshot, exactly as on the single path, and then no company row is taken
        // and the batch fails as a whole. FOR NO KEY UPDATE is the lock the UPDATE takes anyway; FOR UPDATE would also
        // block every other transaction's foreign-key check against the company (a posting writing its lines)
        // until this batch commits.
        let per_company = sorted_counts(wanted.iter().map(|((c, _), n)| (*c, i64::from(*n))));
        let (ids, counts): (Vec<Uuid>, Vec<i64>) = per_company.into_iter().unzip();
        let seqs: Vec<(Uuid, i64)> = sqlx::query_as(
            "WITH closed AS (SELECT 1 FROM closed_periods
                             WHERE (company_id, period) IN (SELECT * FROM UNNEST($3::uuid[], $4::date[])) LIMIT 1),
                  locked AS (SELECT id FROM companies WHERE id = ANY($1) AND NOT EXISTS (SELECT 1 FROM closed)
                             ORDER BY id FOR NO KEY UPDATE)
             UPDATE companies c SET event_seq = c.event_seq + t.n
             FROM UNNEST($1::uuid[], $2::bigint[]) AS t(id, n)
             WHERE c.id = t.id AND c.id IN (SELECT id FROM locked)
             RETURNING c.id, c.event_seq",
        )
        .bind(&ids)
        .bind(&counts)
        .bind(&c)
        .bind(&p)
        .fetch_all(&mut *tx)
        .await?;
        if seqs.len() != ids.len() {
            return Err(Error::Other(
                "a company of the batch does not exist, or one of its months was closed while the batch waited".into(),
            ));
        }
        let counts_by: HashMap<Uuid, i64> = ids.iter().copied().zip(counts.iter().copied()).collect();
        for (id, last) in seqs {
            next_seq.insert(id, last + 1 - counts_by.get(&id).copied().unwrap_or(0));
        }
    }

    // The rows, in arrival order.
    let mut v = VoucherColumns::default();
    let (mut outbox_companies, mut payloads) = (Vec::new(), Vec::new());
    for a in &accepted {
        let item = &items[a.index];
        let voucher = item.voucher;
        let (number, seq, at) = if voucher.status == VoucherStatus::Approved {
            let key = (item.company_id, first_of_month(voucher.voucher_date));
            let no = next_no.get_mut(&key).ok_or_else(|| Error::Other("a counter of the batch was not taken".into()))?;
            let number = kerp_core::voucher::voucher_number(voucher.voucher_date, *no);
            *no += 1;
            let seq = next_seq.get_mut(&item.company_id).ok_or_else(|| Error::Other("a company row of the batch was not taken".into()))?;
            let company_seq = *seq;
            *seq += 1;
            let at = Utc::now();
            let h = Header {
                id: a.id,
                voucher_date: voucher.voucher_date,
                voucher_type: voucher.voucher_type,
                description: &voucher.description,
                reversal_of: None,
            };
            payloads.push(event_payload(item.company_id, company_seq, &number, &h, &a.lines, at)?);
            outbox_companies.push(item.company_id);
            (Some(number), Some(company_seq), Some(at))
        } else {
            (None, None, None)
        };
        v.id.push(a.id);
        v.company_id.push(item.company_id);
        v.number.push(number.clone());
        v.date.push(voucher.voucher_date);
        v.voucher_type.push(voucher.voucher_type.as_str());
        v.description.push(voucher.description.clone());
        v.status.push(voucher.status.as_str());
        v.total.push(voucher.total);
        v.user_id.push(item.user_id);
        v.seq.push(seq);
        v.approved_at.push(at);
        answers[a.index] = Some(Ok(Posted {
            id: a.id,
            voucher_number: number,
            voucher_date: voucher.voucher_date,
            status: voucher.status,
            total_debit: voucher.total,
            total_credit: voucher.total,
            reversal_of: None,
        }));
    }
    if !accepted.is_empty() {
        // One statement for the vouchers and their outbox rows, which take their ids in the order given, each
        // company's sequence order.
        sqlx::query(
            "WITH v AS (
                 INSERT INTO vouchers (id, company_id, voucher_number, voucher_date, voucher_type, description, status, total_debit,
                                       total_credit, created_by, created_at, company_seq, approved_at, approved_by)
                 SELECT id, c, num, d, vt, descr, st, tot, tot, u, COALESCE(at, now()), seq, at, CASE WHEN at IS NULL THEN NULL ELSE u END
                 FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::date[], $5::text[], $6::text[], $7::text[], $8::bigint[],
                             $9::uuid[], $10::bigint[], $11::timestamptz[]) AS t(id, c, num, d, vt, descr, st, tot, u, seq, at)
             )
             INSERT INTO outbox (company_id, topic, payload)
             SELECT c, $12, p FROM UNNEST($13::uuid[], $14::bytea[]) WITH ORDINALITY AS o(c, p, ord) ORDER BY ord",
        )
        .bind(&v.id)
        .bind(&v.company_id)
        .bind(&v.number)
        .bind(&v.date)
        .bind(&v.voucher_type)
        .bind(&v.description)
        .bind(&v.status)
        .bind(&v.total)
        .bind(&v.user_id)
        .bind(&v.seq)
        .bind(&v.approved_at)
        .bind(topic)
        .bind(&outbox_companies)
        .bind(&payloads)
        .execute(&mut *tx)
        .await?;
        metrics::counter!("vouchers_posted_total").increment(payloads.len() as u64);
    }
    Ok(answers.into_iter().map(|a| a.unwrap_or_else(|| Err(Error::Other("a batch item got no answer".into())))).collect())
}

#[derive(Default)]
struct LineColumns {
    voucher_id: Vec<Uuid>,
    line_no: Vec<i32>,
    company_id: Vec<Uuid>,
    account_id: Vec<Uuid>,
    partner_id: Vec<Option<Uuid>>,
    department_id: Vec<Option<Uuid>>,
    debit: Vec<i64>,
    credit: Vec<i64>,
    description: Vec<String>,
}

#[derive(Default)]
struct VoucherColumns {
    id: Vec<Uuid>,
    company_id: Vec<Uuid>,
    number: Vec<Option<String>>,
    date: Vec<NaiveDate>,
    voucher_type: Vec<&'static str>,
    description: Vec<String>,
    status: Vec<&'static str>,
    total: Vec<i64>,
    user_id: Vec<Uuid>,
    seq: Vec<Option<i64>>,
    approved_at: Vec<Option<chrono::DateTime<Utc>>>,
}

/// The active rows of `table` (partners or departments) among `wanted`, by company.
async fn active_refs(tx: &mut PgConnection, table: &str, companies: &[Uuid], wanted: Vec<Uuid>) -> Result<HashMap<Uuid, Vec<Uuid>>> {
    let wanted = sorted_unique(wanted.into_iter());
    let mut out: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    if wanted.is_empty() {
        return Ok(out);
    }
    let rows: Vec<(Uuid, Uuid)> =
        sqlx::query_as(&format!("SELECT company_id, id FROM {table} WHERE company_id = ANY($1) AND is_active AND id = ANY($2)"))
            .bind(companies)
            .bind(&wanted)
            .fetch_all(&mut *tx)
            .await?;
    for (company, id) in rows {
        out.entry(company).or_default().push(id);
    }
    Ok(out)
}

fn sorted_unique(ids: impl Iterator<Item = Uuid>) -> Vec<Uuid> {
    let mut v: Vec<Uuid> = ids.collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Sums counts per company, in company order.
fn sorted_counts(pairs: impl Iterator<Item = (Uuid, i64)>) -> Vec<(Uuid, i64)> {
    let mut m: BTreeMap<Uuid, i64> = BTreeMap::new();
    for (c, n) in pairs {
        *m.entry(c).or_default() += n;
    }
    m.into_iter().collect()
}
