//! Parsed manifests kept by content, so that rendering a file the last revision already had
//! does not parse its YAML again.
//!
//! Between two revisions most files are unchanged: the service renders every kit whose
//! inputs changed, and a commit usually touches one file. Parsing a 1,000-object file takes
//! about 5 ms with the fast reader (`block`), 45 ms when serde-saphyr must read it; reading
//! the kept objects back takes 2-3 ms, on several threads.
//! An entry holds each object of one file as compact JSON and what parsing the file spent of
//! a kit's YAML budget, which is charged on every hit as it was on the parse: a cached file
//! cannot make a kit's budget go further.
//! Entries are keyed by SHA-256 of the file's path and bytes (repository content is
//! untrusted, so the key must not collide); errors are not kept. The cache is bounded in
//! bytes, evicting what was used longest ago.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use super::{Error, KitBudget};
use crate::object::{Object, Origin};

/// Default bound of a [`ParseCache`]: 32 MiB of compact JSON, about 70,000 objects of the
/// size of a typical Deployment.
pub const DEFAULT_CAPACITY_BYTES: usize = 32 << 20;

/// Parsed manifests by content. Shared by the renders of a process (one per pipeline).
#[derive(Debug)]
pub struct ParseCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<[u8; 32], Entry>,
    bytes: usize,
    clock: u64,
}

#[derive(Debug)]
struct Entry {
    /// Shared, so a hit takes it out of the lock and reads the JSON back outside it: kits are
    /// rendered in parallel.
    objects: Arc<[(Option<Origin>, String)]>,
    used: KitBudget,
    bytes: usize,
    last_used: u64,
}

impl Default for ParseCache {
    fn default() -> Self {
        ParseCache::new(DEFAULT_CAPACITY_BYTES)
    }
}

impl ParseCache {
    /// A cache holding at most `capacity` bytes of objects' JSON (0 keeps nothing).
    pub fn new(capacity: usize) -> Self {
        ParseCache {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// [`super::parse_within`] with the result of an earlier parse of the same path and bytes
    /// when there is one. The budget is charged what the parse spent either way; a file the
    /// budget no longer covers is parsed again, so the error is the parser's own.
    ///
    /// # Errors
    /// As [`super::parse_within`].
    pub fn parse_within(&self, file: &str, text: &str, budget: &mut KitBudget) -> Result<Vec<Object>, Error> {
        let key = key(file, text);
        if let Some(objects) = self.hit(&key, budget) {
            return Ok(objects);
        }
        let mut used = KitBudget::NOTHING;
        let result = super::parse_counted(file, text, budget, &mut used);
        budget.spend(&used);
        let objects = result?;
        self.insert(key, &objects, used);
        Ok(objects)
    }

    /// Number of files held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn hit(&self, key: &[u8; 32], budget: &mut KitBudget) -> Option<Vec<Object>> {
        let (stored, used) = {
            let mut inner = self.lock();
            inner.clock += 1;
            let clock = inner.clock;
            let entry = inner.entries.get_mut(key)?;
            if !budget.covers(&entry.used) {
                return None;
            }
            entry.last_used = clock;
            (entry.objects.clone(), entry.used.clone())
        };
        // Our own serialization of objects that had an identity: it reads back, but if it did
        // not, parsing the file again is always right. Documents are read back in parallel.
        let objects = stored
            .par_iter()
            .map(|(origin, json)| {
                let value = serde_json::from_str(json).ok()?;
                Object::new(value, origin.clone()).ok()
            })
            .collect::<Option<Vec<Object>>>()?;
        budget.spend(&used);
        Some(objects)
    }

    fn insert(&self, key: [u8; 32], objects: &[Object], used: KitBudget) {
        if self.capacity == 0 {
            return;
        }
        let encoded: Arc<[(Option<Origin>, String)]> = objects
            .iter()
            .map(|o| (o.origin.clone(), crate::object::to_json(&o.value)))
            .collect();
        let bytes = encoded.iter().map(|(_, json)| json.len()).sum::<usize>() + key.len();
        if bytes > self.capacity {
            return;
        }
        let mut inner = self.lock();
        inner.clock += 1;
        let last_used = inner.clock;
        if let Some(old) = inner.entries.insert(
            key,
            Entry {
                objects: encoded,
                used,
                bytes,
                last_used,
            },
        ) {
            inner.bytes -= old.bytes;
        }
        inner.bytes += bytes;
        while inner.bytes > self.capacity {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some(evicted) = inner.entries.remove(&oldest) {
                inner.bytes -= evicted.bytes;
            }
        }
    }
}

fn key(file: &str, text: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update((file.len() as u64).to_le_bytes());
    hasher.update(file.as_bytes());
    hasher.update(text.as_bytes());
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  mode: 0644\n---\napiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: Secret\n    metadata:\n      name: s\n";

    #[test]
    fn a_hit_gives_what_a_parse_gives_and_charges_the_same_budget() {
        let cache = ParseCache::default();
        let mut parsed_budget = KitBudget::default();
        let parsed = super::super::parse_within("k/a.yaml", TWO, &mut parsed_budget).expect("parses");
        let mut first_budget = KitBudget::default();
        let first = cache
            .parse_within("k/a.yaml", TWO, &mut first_budget)
            .expect("parses");
        let mut second_budget = KitBudget::default();
        let second = cache
            .parse_within("k/a.yaml", TWO, &mut second_budget)
            .expect("hit");
        assert_eq!(cache.len(), 1);
        assert_eq!(first, parsed);
        assert_eq!(second, parsed);
        assert_eq!(second[0].value["data"]["mode"], 420);
        assert_eq!(
            second[1].origin.as_ref().and_then(|o| o.pointer.as_deref()),
            Some("/items/0")
        );
        assert_eq!(first_budget, parsed_budget);
        assert_eq!(second_budget, parsed_budget);
        assert!(second_budget.nodes < KitBudget::default().nodes);
        // The same bytes at another path are another entry: origins name the file.
        let other = cache
            .parse_within("k/b.yaml", TWO, &mut KitBudget::default())
            .expect("parses");
        assert_eq!(
            other[0].origin.as_ref().map(|o| o.file.as_str()),
            Some("k/b.yaml")
        );
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_cached_file_still_counts_against_a_spent_budget() {
        let cache = ParseCache::default();
        cache
            .parse_within("k/a.yaml", TWO, &mut KitBudget::default())
            .expect("parses");
        let mut nearly_spent = KitBudget {
            documents: 1,
            ..KitBudget::default()
        };
        let err = cache
            .parse_within("k/a.yaml", TWO, &mut nearly_spent)
            .expect_err("two documents do not fit in one");
        assert!(matches!(err, Error::OverBudget { .. }), "{err}");
    }

    #[test]
    fn errors_are_not_kept_and_the_bound_holds() {
        let cache = ParseCache::default();
        assert!(
            cache
                .parse_within("k/bad.yaml", "a: [", &mut KitBudget::default())
                .is_err()
        );
        assert!(cache.is_empty());

        let small = ParseCache::new(300);
        for name in ["a", "b", "c"] {
            let text = format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  x: \"{}\"\n",
                "y".repeat(60)
            );
            small
                .parse_within(&format!("k/{name}.yaml"), &text, &mut KitBudget::default())
                .expect("parses");
        }
        assert!(small.len() < 3, "the oldest entries were evicted");
        assert!(small.lock().bytes <= 300);
    }
}
