//! A company's partners held in memory, for the partner list and search (`GET /api/v1/partners`). Each request reads
//! the company's partner version from Postgres (`partner_versions`, bumped by triggers in the same transaction as any
//! change to its partners, migration 0012); while that is the version held here, the held rows are exactly the rows
//! Postgres would filter, so the page and total computed here from them are the ones the SQL gives. A different
//! version reloads the company. So the cache never serves a stale partner, on any instance, and costs Postgres one
//! index lookup a request instead of a filter, count and sort over all of the company's partners.
//!
//! Flow: [`crate::store::master::list_partners`] reads the version, asks [`PartnerCache::get`], loads and
//! [`PartnerCache::put`]s on a miss, and pages with [`select`], which has no IO.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use kerp_core::master::PartnerType;
use uuid::Uuid;

use crate::store::master::Partner;

/// Most partners of one company held in memory. A company with more is listed by SQL, as before: the filter here is a
/// linear scan like Postgres's, so past this size memory, not CPU, is the reason to stop. The `large` size has 500.
pub const PARTNER_CACHE_COMPANY_ROWS_MAX: usize = 10_000;

/// Most partners held in memory over all companies, about 400 bytes each, so at most about 40 MiB. Past it, companies
/// are dropped (in no particular order) to make room; a dropped company reloads on its next request.
pub const PARTNER_CACHE_ROWS_MAX: usize = 100_000;

/// A partner with the lowercase Postgres keeps of its name and code (migration 0011), which the search matches.
#[derive(Debug, Clone)]
pub struct SearchablePartner {
    pub partner: Partner,
    pub name_lower: String,
    pub code_lower: String,
}

/// One company's partners as of one version.
#[derive(Debug)]
pub struct CompanyPartners {
    pub version: i64,
    /// In Postgres's `ORDER BY code` (the database's collation), which [`select`] keeps; `None` when the company had
    /// more than [`PARTNER_CACHE_COMPANY_ROWS_MAX`], so that it goes to SQL without reloading on every request.
    pub rows: Option<Vec<SearchablePartner>>,
}

impl CompanyPartners {
    fn held_rows(&self) -> usize {
        self.rows.as_ref().map_or(0, Vec::len)
    }
}

/// The partners of recently listed companies. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct PartnerCache {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    companies: HashMap<Uuid, Arc<CompanyPartners>>,
    /// Sum of `held_rows` over `companies`.
    rows: usize,
}

impl PartnerCache {
    /// The company's partners if they are held at exactly `version`.
    #[must_use]
    pub fn get(&self, company_id: Uuid, version: i64) -> Option<Arc<CompanyPartners>> {
        // A panic while the lock was held cannot leave the map half-changed (each change is one insert or remove
        // with its row count), so a poisoned lock is still usable.
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.companies.get(&company_id).filter(|c| c.version == version).cloned()
    }

    /// Holds the company's partners, replacing an older version, and drops other companies while the total is over
    /// [`PARTNER_CACHE_ROWS_MAX`]. A version older than the one held is not put back: two requests that loaded
    /// around a change may finish in either order.
    pub fn put(&self, company_id: Uuid, partners: Arc<CompanyPartners>) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = inner.companies.get(&company_id) {
            if held.version > partners.version {
                return;
            }
        }
        let added = partners.held_rows();
        if let Some(old) = inner.companies.insert(company_id, partners) {
            inner.rows -= old.held_rows();
        }
        inner.rows += added;
        while inner.rows > PARTNER_CACHE_ROWS_MAX {
            let Some(victim) = inner.companies.keys().find(|k| **k != company_id).copied() else { break };
            if let Some(old) = inner.companies.remove(&victim) {
                inner.rows -= old.held_rows();
            }
        }
    }
}

/// What the partner list filters by, with the search term already lowercased by Postgres's `lower()`, the function
/// that made `name_lower` and `code_lower`, so that both sides of the match are lowercased alike.
#[derive(Debug, Clone, Copy, Default)]
pub struct Selection<'a> {
    /// The term the name or the code must contain, as `name_lower LIKE '%term%' OR code_lower LIKE '%term%'` with the
    /// term's `%`, `_` and `\` escaped (`kerp_core::master::like_pattern`) matches a literal substring.
    pub term_lower: Option<&'a str>,
    pub partner_type: Option<PartnerType>,
    pub is_active: Option<bool>,
}

/// The page at `offset` of at most `limit` partners that match, in the held order, and how many match in all: what
/// `SELECT …, count(*) OVER () … ORDER BY code LIMIT $limit OFFSET $offset` returns.
#[must_use]
pub fn select(rows: &[SearchablePartner], s: Selection<'_>, limit: u32, offset: u64) -> (Vec<Partner>, u64) {
    let matches = |p: &&SearchablePartner| {
        s.term_lower.is_none_or(|t| p.name_lower.contains(t) || p.code_lower.contains(t))
            && s.partner_type.is_none_or(|k| p.partner.partner_type == k)
            && s.is_active.is_none_or(|a| p.partner.is_active == a)
    };
    let mut total = 0_u64;
    let mut page = Vec::new();
    for p in rows.iter().filter(matches) {
        if total >= offset && page.len() < limit as usize {
            page.push(p.partner.clone());
        }
        total += 1;
    }
    (page, total)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn partner(code: &str, name: &str, kind: PartnerType, active: bool) -> SearchablePartner {
        let now = Utc::now();
        SearchablePartner {
            partner: Partner {
                id: Uuid::new_v4(),
                code: code.to_owned(),
                name: name.to_owned(),
                business_number: None,
                partner_type: kind,
                representative: String::new(),
                address: String::new(),
                is_active: active,
                created_at: now,
                updated_at: now,
            },
            name_lower: name.to_lowercase(),
            code_lower: code.to_lowercase(),
        }
    }

    fn rows() -> Vec<SearchablePartner> {
        vec![
            partner("P001", "삼성전자", PartnerType::Customer, true),
            partner("P002", "Hanbit Trading", PartnerType::Supplier, true),
            partner("P003", "한빛상사", PartnerType::Both, false),
            partner("P004", "50%_off Mart", PartnerType::Customer, true),
            partner("X100", "삼성물산", PartnerType::Supplier, true),
        ]
    }

    fn codes(page: &[Partner]) -> Vec<&str> {
        page.iter().map(|p| p.code.as_str()).collect()
    }

    #[test]
    fn no_filter_pages_in_the_held_order_with_the_full_total() {
        let rows = rows();
        let (page, total) = select(&rows, Selection::default(), 2, 0);
        assert_eq!((codes(&page), total), (vec!["P001", "P002"], 5));
        let (page, total) = select(&rows, Selection::default(), 2, 4);
        assert_eq!((codes(&page), total), (vec!["X100"], 5));
        let (page, total) = select(&rows, Selection::default(), 2, 9);
        assert_eq!((codes(&page), total), (vec![], 5), "a page past the end still has the total");
    }

    #[test]
    fn the_term_matches_name_or_code_as_a_literal_substring() {
        let rows = rows();
        let term = |t| Selection { term_lower: Some(t), ..Selection::default() };
        assert_eq!(codes(&select(&rows, term("삼성"), 20, 0).0), vec!["P001", "X100"]);
        assert_eq!(codes(&select(&rows, term("hanbit"), 20, 0).0), vec!["P002"], "against the lowercase name");
        assert_eq!(codes(&select(&rows, term("x1"), 20, 0).0), vec!["X100"], "against the lowercase code");
        assert_eq!(codes(&select(&rows, term("%_"), 20, 0).0), vec!["P004"], "% and _ are literal");
        assert_eq!(select(&rows, term("t_"), 20, 0).1, 0, "_ is no wildcard (it would match 'hanbit trading')");
        assert_eq!(select(&rows, term("zzz"), 20, 0).1, 0);
    }

    #[test]
    fn type_and_state_filter_with_the_term() {
        let rows = rows();
        let s = Selection { term_lower: None, partner_type: Some(PartnerType::Supplier), is_active: None };
        assert_eq!(codes(&select(&rows, s, 20, 0).0), vec!["P002", "X100"]);
        let s = Selection { term_lower: Some("한빛"), partner_type: None, is_active: Some(true) };
        assert_eq!(select(&rows, s, 20, 0).1, 0, "한빛상사 is inactive");
        let s = Selection { term_lower: None, partner_type: None, is_active: Some(false) };
        assert_eq!(codes(&select(&rows, s, 20, 0).0), vec!["P003"]);
    }

    fn held(version: i64, n: usize) -> Arc<CompanyPartners> {
        Arc::new(CompanyPartners { version, rows: Some((0..n).map(|i| partner(&format!("P{i}"), "x", PartnerType::Both, true)).collect()) })
    }

    #[test]
    fn a_company_is_served_only_at_the_version_it_was_loaded_at() {
        let cache = PartnerCache::default();
        let company = Uuid::new_v4();
        assert!(cache.get(company, 0).is_none());
        cache.put(company, held(3, 2));
        assert_eq!(cache.get(company, 3).map(|c| c.held_rows()), Some(2));
        assert!(cache.get(company, 4).is_none(), "a newer version in Postgres is a miss");
        cache.put(company, held(2, 5));
        assert_eq!(cache.get(company, 3).map(|c| c.held_rows()), Some(2), "an older load does not replace a newer one");
        cache.put(company, held(4, 1));
        assert!(cache.get(company, 3).is_none());
        assert_eq!(cache.get(company, 4).map(|c| c.held_rows()), Some(1));
    }

    #[test]
    fn companies_are_dropped_to_stay_under_the_row_limit() {
        let cache = PartnerCache::default();
        let per = PARTNER_CACHE_ROWS_MAX / 4;
        let companies: Vec<Uuid> = (0..6).map(|_| Uuid::new_v4()).collect();
        for c in &companies {
            cache.put(*c, held(1, per));
        }
        let inner = cache.inner.lock().unwrap();
        assert!(inner.rows <= PARTNER_CACHE_ROWS_MAX);
        assert_eq!(inner.rows, inner.companies.values().map(|c| c.held_rows()).sum::<usize>());
        assert_eq!(inner.companies.len(), 4);
        assert!(inner.companies.contains_key(&companies[5]), "the company just loaded stays");
    }
}
