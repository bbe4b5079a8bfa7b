//! The `dependsOn` graph of a revision's kits: validated per revision (a cycle, a
//! self-dependency or an unknown kit blocks the kits involved, with the line of their
//! `dependsOn:`), then used by the service to apply kits in dependency order.

use super::{Error, KIT_FILE, Kit};
use std::collections::{BTreeMap, BTreeSet};

/// Marks every kit whose `dependsOn` names itself, a kit that does not exist at this
/// revision, or a kit on a cycle with it, as an error located at its `dependsOn:` line.
/// Kits that merely depend on a blocked kit stay usable: they wait for it when applied.
pub(super) fn validate(kits: &mut BTreeMap<String, Result<Kit, Error>>, texts: &BTreeMap<String, String>) {
    let mut problems: BTreeMap<String, String> = BTreeMap::new();
    for (name, kit) in kits.iter() {
        let Ok(kit) = kit else { continue };
        for dep in &kit.depends_on {
            if dep == name {
                problems.insert(name.clone(), format!("dependsOn: kit {name} depends on itself"));
            } else if !kits.contains_key(dep) {
                let known: Vec<&str> = kits.keys().map(String::as_str).collect();
                problems.insert(
                    name.clone(),
                    format!(
                        "dependsOn: no kit named {dep} at this revision (kits: {})",
                        known.join(", ")
                    ),
                );
            }
        }
    }
    for cycle in cycles(kits) {
        let path = cycle
            .iter()
            .chain(cycle.first())
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" -> ");
        for name in &cycle {
            problems
                .entry(name.clone())
                .or_insert_with(|| format!("dependsOn: cycle {path}"));
        }
    }
    for (name, message) in problems {
        let Some(Ok(kit)) = kits.get(&name) else { continue };
        let file = if kit.dir.is_empty() {
            KIT_FILE.to_owned()
        } else {
            format!("{}/{KIT_FILE}", kit.dir)
        };
        let line = texts
            .get(&name)
            .and_then(|text| text.lines().position(|l| l.trim_start().starts_with("dependsOn")))
            .map_or(0, |i| i as u64 + 1);
        kits.insert(name, Err(Error::DependsOn { file, line, message }));
    }
}

/// The cycles of the graph (each as its kits in dependency order), found by a depth-first
/// search from every kit in name order, so the result does not depend on hash order.
fn cycles(kits: &BTreeMap<String, Result<Kit, Error>>) -> Vec<Vec<String>> {
    let edges: BTreeMap<&str, Vec<&str>> = kits
        .iter()
        .filter_map(|(name, kit)| {
            let kit = kit.as_ref().ok()?;
            let deps = kit
                .depends_on
                .iter()
                .map(String::as_str)
                .filter(|d| *d != name && kits.contains_key(*d))
                .collect();
            Some((name.as_str(), deps))
        })
        .collect();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut found: Vec<Vec<String>> = Vec::new();
    for start in edges.keys() {
        if done.contains(start) {
            continue;
        }
        // Iterative DFS: the path on the stack, with the index of the next edge to follow.
        let mut path: Vec<(&str, usize)> = vec![(start, 0)];
        while let Some((node, next)) = path.last().copied() {
            let deps = edges.get(node).map_or(&[][..], Vec::as_slice);
            if let Some(dep) = deps.get(next) {
                if let Some(top) = path.last_mut() {
                    top.1 += 1;
                }
                if let Some(at) = path.iter().position(|(n, _)| n == dep) {
                    let cycle: Vec<String> = path[at..].iter().map(|(n, _)| (*n).to_owned()).collect();
                    let mut key = cycle.clone();
                    key.sort();
                    if !found.iter().any(|c| {
                        let mut k = c.clone();
                        k.sort();
                        k == key
                    }) {
                        found.push(cycle);
                    }
                } else if !done.contains(dep) {
                    path.push((dep, 0));
                }
            } else {
                done.insert(node);
                path.pop();
            }
        }
    }
    found
}

/// The order in which `names` may be applied: each kit after every kit it depends on that
/// is also in `names` (dependencies outside `names` are taken as already applied).
/// Returns waves; the kits of one wave do not depend on each other.
pub fn waves(kits: &BTreeMap<String, Kit>, names: &BTreeSet<String>) -> Vec<Vec<String>> {
    let mut left: BTreeSet<&String> = names.iter().collect();
    let mut placed: BTreeSet<&String> = BTreeSet::new();
    let mut out = Vec::new();
    while !left.is_empty() {
        let wave: Vec<&String> = left
            .iter()
            .copied()
            .filter(|name| {
                kits.get(*name).is_none_or(|kit| {
                    kit.depends_on
                        .iter()
                        .all(|d| !names.contains(d) || placed.contains(d))
                })
            })
            .collect();
        if wave.is_empty() {
            // Only a cycle leaves kits unplaceable, and validation blocks cycles: place the
            // rest together rather than loop.
            out.push(left.iter().map(|s| (*s).clone()).collect());
            break;
        }
        for name in &wave {
            left.remove(*name);
            placed.insert(name);
        }
        out.push(wave.into_iter().cloned().collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kit::files::{Defaults, parse_kit};

    fn kit(name: &str, deps: &[&str]) -> (String, Result<Kit, Error>, String) {
        let text = if deps.is_empty() {
            String::new()
        } else {
            format!("namespace: {name}\ndependsOn: [{}]\n", deps.join(", "))
        };
        let file = format!("kits/{name}/kit.yaml");
        let parsed = parse_kit(
            &file,
            text.as_bytes(),
            name,
            &format!("kits/{name}"),
            &Defaults::default(),
        );
        (name.to_owned(), parsed, text)
    }

    fn run(spec: &[(&str, &[&str])]) -> BTreeMap<String, Result<Kit, Error>> {
        let mut kits = BTreeMap::new();
        let mut texts = BTreeMap::new();
        for (name, deps) in spec {
            let (n, k, t) = kit(name, deps);
            kits.insert(n.clone(), k);
            texts.insert(n, t);
        }
        validate(&mut kits, &texts);
        kits
    }

    #[test]
    fn cycle_self_and_unknown_are_located() {
        let kits = run(&[
            ("a", &["b"]),
            ("b", &["c"]),
            ("c", &["a"]),
            ("d", &["d"]),
            ("e", &["nope"]),
            ("f", &["a"]),
            ("g", &[]),
        ]);
        for name in ["a", "b", "c"] {
            let err = kits[name].as_ref().expect_err("in the cycle").to_string();
            assert!(err.starts_with(&format!("kits/{name}/kit.yaml:2: ")), "{err}");
            assert!(err.contains("cycle a -> b -> c -> a"), "{err}");
        }
        let d = kits["d"].as_ref().expect_err("self").to_string();
        assert!(d.contains("depends on itself"), "{d}");
        let e = kits["e"].as_ref().expect_err("unknown").to_string();
        assert!(e.contains("no kit named nope"), "{e}");
        // f depends on a blocked kit but is not wrong itself; g is unrelated.
        assert!(kits["f"].is_ok());
        assert!(kits["g"].is_ok());
    }

    #[test]
    fn waves_follow_dependencies() {
        let kits: BTreeMap<String, Kit> = run(&[
            ("app", &["db", "net"]),
            ("db", &["net"]),
            ("net", &[]),
            ("x", &[]),
        ])
        .into_iter()
        .map(|(n, k)| (n, k.expect("valid")))
        .collect();
        let all: BTreeSet<String> = kits.keys().cloned().collect();
        assert_eq!(
            waves(&kits, &all),
            vec![
                vec!["net".to_owned(), "x".to_owned()],
                vec!["db".to_owned()],
                vec!["app".to_owned()]
            ]
        );
        // A dependency that is not being applied this round does not hold anything back.
        let some: BTreeSet<String> = ["app".to_owned()].into();
        assert_eq!(waves(&kits, &some), vec![vec!["app".to_owned()]]);
    }
}
