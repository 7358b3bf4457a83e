//! GTID positions and sets of both flavors, with the set arithmetic the
//! planner needs (superset, missing transactions, errant transactions).
//!
//! * MariaDB positions are `domain-server-seq` lists (one last GTID per
//!   replication domain, e.g. `0-100-42,1-101-7`). With `gtid_strict_mode`
//!   sequence numbers grow monotonically per domain, so "holds everything up
//!   to N" is a per-domain comparison. Two members at the same sequence number
//!   with a different originating server have diverged.
//! * MySQL executed sets are `uuid:interval[:interval]` lists
//!   (e.g. `3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5:7`), compared as sets.

use std::collections::BTreeMap;
use std::fmt;

use crate::api::MySqlFlavor;

/// A GTID position (MariaDB) or executed set (MySQL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GtidSet {
    /// (domain id, originating server id) → last sequence number. Parsed from
    /// `gtid_current_pos` (one GTID per domain) and/or `gtid_binlog_state`
    /// (one per domain and server), so it also says which servers originated
    /// transactions. The position of a domain is its highest sequence number.
    MariaDb(BTreeMap<(u32, u32), u64>),
    /// source uuid (lower case) → sorted, merged, inclusive intervals.
    MySql(BTreeMap<String, Vec<(u64, u64)>>),
}

/// A GTID string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse GTID {text:?}: {why}")]
pub struct GtidParseError {
    pub text: String,
    pub why: &'static str,
}

type Maria = BTreeMap<(u32, u32), u64>;

/// Per domain: (server, seq) of the highest sequence number.
fn maria_last(m: &Maria) -> BTreeMap<u32, (u32, u64)> {
    let mut out: BTreeMap<u32, (u32, u64)> = BTreeMap::new();
    for ((d, s), n) in m {
        let e = out.entry(*d).or_insert((*s, *n));
        if *n > e.1 {
            *e = (*s, *n);
        }
    }
    out
}

impl GtidSet {
    /// The empty set of a flavor.
    pub fn empty(flavor: MySqlFlavor) -> Self {
        match flavor {
            MySqlFlavor::MariaDB => GtidSet::MariaDb(BTreeMap::new()),
            MySqlFlavor::MySQL => GtidSet::MySql(BTreeMap::new()),
        }
    }

    /// Parse a position as the server prints it (whitespace and newlines
    /// allowed). MariaDB accepts positions and binlog states alike (several
    /// texts may be joined with commas; the highest number per pair wins).
    pub fn parse(flavor: MySqlFlavor, text: &str) -> Result<Self, GtidParseError> {
        let err = |why| GtidParseError {
            text: text.to_string(),
            why,
        };
        let parts = text.split(',').map(str::trim).filter(|p| !p.is_empty());
        match flavor {
            MySqlFlavor::MariaDB => {
                let mut map: Maria = BTreeMap::new();
                for p in parts {
                    let mut it = p.split('-');
                    let (Some(d), Some(s), Some(n), None) =
                        (it.next(), it.next(), it.next(), it.next())
                    else {
                        return Err(err("expected domain-server-sequence"));
                    };
                    let d: u32 = d.parse().map_err(|_| err("bad domain id"))?;
                    let s: u32 = s.parse().map_err(|_| err("bad server id"))?;
                    let n: u64 = n.parse().map_err(|_| err("bad sequence number"))?;
                    let e = map.entry((d, s)).or_insert(n);
                    *e = (*e).max(n);
                }
                Ok(GtidSet::MariaDb(map))
            }
            MySqlFlavor::MySQL => {
                let mut map: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
                for p in parts {
                    let mut it = p.split(':');
                    let uuid = it.next().unwrap_or_default().trim().to_ascii_lowercase();
                    if uuid.len() != 36 || !uuid.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
                    {
                        return Err(err("bad source uuid"));
                    }
                    let entry = map.entry(uuid).or_default();
                    let mut any = false;
                    for iv in it {
                        any = true;
                        let (a, b) = match iv.split_once('-') {
                            Some((a, b)) => (a, b),
                            None => (iv, iv),
                        };
                        let a: u64 = a.trim().parse().map_err(|_| err("bad interval"))?;
                        let b: u64 = b.trim().parse().map_err(|_| err("bad interval"))?;
                        if a == 0 || b < a {
                            return Err(err("bad interval"));
                        }
                        entry.push((a, b));
                    }
                    if !any {
                        return Err(err("uuid without interval"));
                    }
                }
                for v in map.values_mut() {
                    *v = merge(std::mem::take(v));
                }
                Ok(GtidSet::MySql(map))
            }
        }
    }

    /// Whether this (MariaDB) set holds transactions originated by server
    /// `server_id`. A MariaDB replica skips events carrying its own server id,
    /// so a member emptied under the same id cannot get them back by
    /// replication. MySQL origins are server UUIDs, new with every datadir.
    pub fn has_origin(&self, server_id: u32) -> bool {
        match self {
            GtidSet::MariaDb(m) => m.keys().any(|(_, s)| *s == server_id),
            GtidSet::MySql(_) => false,
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            GtidSet::MariaDb(m) => m.is_empty(),
            GtidSet::MySql(m) => m.is_empty(),
        }
    }

    /// The position to hand to the server (`MASTER_GTID_WAIT`,
    /// `gtid_slave_pos`): MariaDB one GTID per domain; MySQL the whole set.
    pub fn position(&self) -> String {
        match self {
            GtidSet::MariaDb(m) => maria_last(m)
                .iter()
                .map(|(d, (s, n))| format!("{d}-{s}-{n}"))
                .collect::<Vec<_>>()
                .join(","),
            GtidSet::MySql(_) => self.to_string(),
        }
    }

    /// Number of transactions of `other` this set lacks. Sets of different
    /// flavors never compare: everything is missing.
    pub fn missing(&self, other: &GtidSet) -> u64 {
        match (self, other) {
            (GtidSet::MariaDb(a), GtidSet::MariaDb(b)) => {
                let a = maria_last(a);
                maria_last(b)
                    .iter()
                    .map(|(d, (bs, bn))| match a.get(d) {
                        None => *bn,
                        Some((as_, an)) if an == bn && as_ != bs => 1,
                        Some((_, an)) => bn.saturating_sub(*an),
                    })
                    .sum()
            }
            (GtidSet::MySql(a), GtidSet::MySql(b)) => b
                .iter()
                .map(|(u, ivs)| {
                    let have = a.get(u).map(Vec::as_slice).unwrap_or(&[]);
                    count(&subtract(ivs, have))
                })
                .sum(),
            (_, other) => other.len(),
        }
    }

    /// Whether this set holds every transaction of `other`.
    pub fn contains(&self, other: &GtidSet) -> bool {
        self.missing(other) == 0
    }

    /// Transactions this set holds that `reference` (the primary's state)
    /// lacks, described for people, or None. Transactions originated by
    /// `allowed_origin` (MariaDB server id / MySQL server uuid of a lost
    /// primary, whose last state was only sampled) are not counted.
    pub fn errant_vs(&self, reference: &GtidSet, allowed_origin: Option<&str>) -> Option<String> {
        match (self, reference) {
            (GtidSet::MariaDb(me), GtidSet::MariaDb(p)) => {
                let p_last = maria_last(p);
                let mut out = Vec::new();
                for ((d, s), n) in me {
                    if allowed_origin == Some(s.to_string().as_str()) {
                        continue;
                    }
                    let known = p.get(&(*d, *s)).copied();
                    let diverged = p_last.get(d).is_some_and(|(ps, pn)| pn == n && ps != s);
                    match known {
                        None => out.push(format!(
                            "{d}-{s}-{n} (server {s} never originated transactions on the primary)"
                        )),
                        Some(pn) if *n > pn => {
                            out.push(format!("{d}-{s}-{n} (primary has {d}-{s}-{pn})"))
                        }
                        _ if diverged => out.push(format!("{d}-{s}-{n} (diverged)")),
                        _ => {}
                    }
                }
                (!out.is_empty()).then(|| out.join(", "))
            }
            (GtidSet::MySql(_), GtidSet::MySql(_)) => {
                let mut extra = self.subtract(reference);
                if let (GtidSet::MySql(m), Some(origin)) = (&mut extra, allowed_origin) {
                    m.remove(&origin.to_ascii_lowercase());
                }
                (!extra.is_empty()).then(|| extra.to_string())
            }
            _ => Some("GTID flavors differ".to_string()),
        }
    }

    /// Set difference (MySQL); MariaDB: the pairs where `self` is ahead.
    pub fn subtract(&self, other: &GtidSet) -> GtidSet {
        match (self, other) {
            (GtidSet::MySql(a), GtidSet::MySql(b)) => {
                let mut out = BTreeMap::new();
                for (u, ivs) in a {
                    let rest = subtract(ivs, b.get(u).map(Vec::as_slice).unwrap_or(&[]));
                    if !rest.is_empty() {
                        out.insert(u.clone(), rest);
                    }
                }
                GtidSet::MySql(out)
            }
            (GtidSet::MariaDb(a), GtidSet::MariaDb(b)) => GtidSet::MariaDb(
                a.iter()
                    .filter(|(k, n)| b.get(k).is_none_or(|bn| *n > bn))
                    .map(|(k, v)| (*k, *v))
                    .collect(),
            ),
            (a, _) => a.clone(),
        }
    }

    /// Whether `other` holds any transaction that `self` holds beyond
    /// `reference` (MariaDB: a server's sequence in a domain past the
    /// reference's on both sides; MySQL: an interval in common).
    pub fn shares_beyond(&self, other: &GtidSet, reference: &GtidSet) -> bool {
        match (self, other, reference) {
            (GtidSet::MariaDb(a), GtidSet::MariaDb(b), GtidSet::MariaDb(r)) => {
                a.iter().any(|(k, n)| {
                    let base = r.get(k).copied().unwrap_or(0);
                    *n > base && b.get(k).is_some_and(|m| *m > base)
                })
            }
            (GtidSet::MySql(_), GtidSet::MySql(_), GtidSet::MySql(_)) => {
                let mine = self.subtract(reference);
                mine.subtract(other) != mine
            }
            _ => true,
        }
    }

    /// The transactions originated by `origin` (MariaDB server id, MySQL
    /// server uuid); empty when it originated none.
    pub fn originated_by(&self, origin: &str) -> GtidSet {
        match self {
            GtidSet::MariaDb(m) => GtidSet::MariaDb(
                m.iter()
                    .filter(|((_, s), _)| s.to_string() == origin)
                    .map(|(k, v)| (*k, *v))
                    .collect(),
            ),
            GtidSet::MySql(m) => GtidSet::MySql(
                m.iter()
                    .filter(|(u, _)| u.eq_ignore_ascii_case(origin))
                    .map(|(u, v)| (u.clone(), v.clone()))
                    .collect(),
            ),
        }
    }

    /// Union (highest number per MariaDB pair).
    pub fn union(&self, other: &GtidSet) -> GtidSet {
        match (self, other) {
            (GtidSet::MariaDb(a), GtidSet::MariaDb(b)) => {
                let mut m = a.clone();
                for (k, n) in b {
                    let e = m.entry(*k).or_insert(*n);
                    *e = (*e).max(*n);
                }
                GtidSet::MariaDb(m)
            }
            (GtidSet::MySql(a), GtidSet::MySql(b)) => {
                let mut m = a.clone();
                for (u, ivs) in b {
                    let e = m.entry(u.clone()).or_default();
                    e.extend(ivs.iter().copied());
                    *e = merge(std::mem::take(e));
                }
                GtidSet::MySql(m)
            }
            (a, _) => a.clone(),
        }
    }

    /// Number of transactions (MariaDB: sum of the domains' sequence numbers).
    pub fn len(&self) -> u64 {
        match self {
            GtidSet::MariaDb(m) => maria_last(m).values().map(|(_, n)| *n).sum(),
            GtidSet::MySql(m) => m.values().map(|v| count(v)).sum(),
        }
    }
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GtidSet::MariaDb(m) => {
                let parts: Vec<String> =
                    m.iter().map(|((d, s), n)| format!("{d}-{s}-{n}")).collect();
                f.write_str(&parts.join(","))
            }
            GtidSet::MySql(m) => {
                let parts: Vec<String> = m
                    .iter()
                    .map(|(u, ivs)| {
                        let mut s = u.clone();
                        for (a, b) in ivs {
                            if a == b {
                                s.push_str(&format!(":{a}"));
                            } else {
                                s.push_str(&format!(":{a}-{b}"));
                            }
                        }
                        s
                    })
                    .collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

fn merge(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (a, b) in v {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

fn subtract(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(mut lo, hi) in a {
        for &(blo, bhi) in b {
            if bhi < lo || blo > hi {
                continue;
            }
            if blo > lo {
                out.push((lo, blo - 1));
            }
            lo = bhi.saturating_add(1);
            if lo > hi {
                break;
            }
        }
        if lo <= hi {
            out.push((lo, hi));
        }
    }
    out
}

fn count(v: &[(u64, u64)]) -> u64 {
    v.iter().map(|(a, b)| b - a + 1).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> GtidSet {
        GtidSet::parse(MySqlFlavor::MariaDB, s).unwrap()
    }
    fn y(s: &str) -> GtidSet {
        GtidSet::parse(MySqlFlavor::MySQL, s).unwrap()
    }
    const U1: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const U2: &str = "4e11fa47-71ca-11e1-9e33-c80aa9429562";

    #[test]
    fn mariadb_parse_and_print() {
        let g = m(" 0-100-42,\n1-101-7 ");
        assert_eq!(g.to_string(), "0-100-42,1-101-7");
        assert!(m("").is_empty());
        assert!(GtidSet::parse(MySqlFlavor::MariaDB, "0-1").is_err());
        // a binlog state: several servers per domain; the position is the highest
        let st = m("0-100-42,0-101-50,0-100-40");
        assert_eq!(st.position(), "0-101-50");
        assert_eq!(st.to_string(), "0-100-42,0-101-50");
    }

    #[test]
    fn mariadb_missing_and_errant() {
        let primary = m("0-100-10");
        assert_eq!(m("0-100-7").missing(&primary), 3);
        assert_eq!(m("").missing(&primary), 10);
        assert!(m("0-100-10").contains(&primary));
        assert_eq!(m("0-100-7").errant_vs(&primary, None), None);
        assert!(m("0-101-11").errant_vs(&primary, None).is_some());
        // same sequence number from another server: diverged
        assert!(m("0-101-10").errant_vs(&primary, None).is_some());
        assert_eq!(m("0-101-10").missing(&primary), 1);
        assert!(m("0-100-5,1-101-1").errant_vs(&primary, None).is_some());
        // a replica that wrote on its own, then the primary moved on: still errant
        let state = m("0-100-20");
        assert!(m("0-102-11").errant_vs(&state, None).is_some());
        // history of an earlier primary is known from the binlog state
        let state = m("0-100-10,0-101-30");
        assert_eq!(m("0-100-10").errant_vs(&state, None), None);
        assert_eq!(m("0-101-25").errant_vs(&state, None), None);
        // transactions of the lost primary beyond the sampled state are allowed
        assert_eq!(m("0-101-31").errant_vs(&state, Some("101")), None);
        assert!(m("0-101-31").errant_vs(&state, None).is_some());
        assert!(m("0-102-31").errant_vs(&state, Some("101")).is_some());
    }

    #[test]
    fn mysql_set_arithmetic() {
        let p = y(&format!("{U1}:1-10:12, {U2}:1-3"));
        assert_eq!(p.len(), 14);
        assert_eq!(y(&format!("{U1}:1-10")).missing(&p), 4);
        assert!(y(&format!("{U1}:1-12,{U2}:1-3")).contains(&p));
        let r = y(&format!("{U1}:1-5:6-10,{}:1", U2.to_uppercase()));
        assert_eq!(r.to_string(), format!("{U1}:1-10,{U2}:1"));
        assert_eq!(r.errant_vs(&p, None), None);
        let errant = y(&format!("{U1}:1-11"));
        assert_eq!(errant.errant_vs(&p, None), Some(format!("{U1}:11")));
        assert_eq!(errant.errant_vs(&p, Some(&U1.to_uppercase())), None);
        assert_eq!(r.union(&errant).to_string(), format!("{U1}:1-11,{U2}:1"));
        assert!(GtidSet::parse(MySqlFlavor::MySQL, "zz:1").is_err());
        assert!(GtidSet::parse(MySqlFlavor::MySQL, &format!("{U1}:5-2")).is_err());
    }

    #[test]
    fn shares_beyond_finds_a_common_transaction_past_the_reference() {
        let m = |t: &str| GtidSet::parse(MySqlFlavor::MariaDB, t).unwrap();
        let r = m("0-100-10,0-101-20");
        assert!(m("0-100-12").shares_beyond(&m("0-100-11,0-101-20"), &r));
        assert!(!m("0-100-12").shares_beyond(&m("0-100-10,0-101-25"), &r));
        assert!(!m("0-100-12").shares_beyond(&m("0-102-3"), &r));
        assert!(!m("0-100-10").shares_beyond(&m("0-100-12"), &r));
        let y = |t: &str| GtidSet::parse(MySqlFlavor::MySQL, t).unwrap();
        let u = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let r = y(&format!("{u}:1-10"));
        assert!(y(&format!("{u}:1-12")).shares_beyond(&y(&format!("{u}:1-11")), &r));
        assert!(!y(&format!("{u}:1-12")).shares_beyond(&y(&format!("{u}:1-10")), &r));
        assert!(!y(&format!("{u}:1-12")).shares_beyond(&y(&format!("{u}:1-10:13")), &r));
    }
}
