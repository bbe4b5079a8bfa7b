//! The fast reader against serde-saphyr: wherever it answers, it must give serde-saphyr's
//! values, document lines and budget spent, and serde-saphyr must accept the file.

use super::super::{KitBudget, read_any};
use super::read;

/// Reads `text` with both readers; true when the fast one answered (and agreed).
fn agree(text: &str) -> bool {
    let left = KitBudget::default();
    let fast = read(text, &left);
    let mut used = KitBudget::NOTHING;
    let any = read_any("t.yaml", text, &left, &mut used);
    let Some((documents, spent)) = fast else {
        return false;
    };
    let any = any.unwrap_or_else(|e| panic!("read what serde-saphyr refuses ({e}):\n{text}"));
    assert_eq!(documents.len(), any.len(), "documents of:\n{text}");
    for (fast, any) in documents.iter().zip(&any) {
        assert_eq!(fast.value, any.value, "value of:\n{text}");
        if !fast.value.is_null() {
            assert_eq!(fast.line, any.line, "line of a document of:\n{text}");
        }
    }
    assert_eq!(spent, used, "budget spent on:\n{text}");
    true
}

#[test]
fn manifests_as_people_write_them_are_read_fast_and_the_same() {
    for text in [
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
        "---\napiVersion: v1\nkind: A\n---\n# only a comment\n---\nkind: B\n",
        "a: 1\nb: -2\nc: 0\nd: 8080\ne: 18446744073709551615\nf: -9223372036854775808\n",
        "a: 0644\nb: 1.10\nc: 1e3\nd: .inf\ne: 0x1F\nf: +7\ng: 1_000\nh: 12:30\ni: 2001-12-14\n",
        "a: yes\nb: No\nc: y\nd: off\ne: ~\nf: null\ng:\nh: True\ni: inf\nj: nan\n",
        "a: text # comment\nb: a#b\nc: http://x:80/y\nd: [x]y\ne: 500m\nf: 日本\n",
        "a: x\u{85}y\nb: x\u{2028}y\nc: 'x\u{a0}'\nd: x\u{feff}\n",
        "a: 'it''s'\nb: \"esc \\n \\t \\\" \\\\ \\u00e9 \\x41 \\/\"\nc: ''\nd: \"\"\n\"q k\": 1\n's k': 2\n",
        "l:\n- a\n- b\nm:\n  - c\n  -\n  - d: 1\n    e: 2\n  - - nested\nn: x\n",
        "containers:\n- name: app\n  ports:\n  - containerPort: 80\n    protocol: TCP\n  env: []\n",
        "r: {cpu: 500m, memory: 256Mi}\ns: [a, 'b', \"c\", 1, yes]\nt: {}\nu: [ ]\nv: {a: [1, {b: c}]}\n",
        "a: |\n  one\n   two\n\n  three\n\nb: |-\n  x\nc: |+\n  y\n\n\nd: x\n",
        "a: >\n  one\n  two\n\n  three\nb: >-\n  folded\n  text\nc: | # comment\n  z\n",
        "a: |\n\n  after an empty line\n  # not a comment\n    more\nb: 1\n",
        "  indented: root\n  second: 2\n",
        "key  : spaced\n",
        "a:\n  b:\n    c:\n      d: deep\n",
        "a: 1\n\n\n# trailing comment",
        "",
        "# nothing\n",
        "---\n",
        "---\n---\n",
        "a: 1\n---\n",
    ] {
        // Some of these are given up on inside (`- - nested`): those must still agree.
        agree(text);
    }
    for text in [
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
        "a: 0644\nb: 1.10\nc: 1e3\ne: 0x1F\nf: +7\ng: 1_000\nh: 12:30\ni: 2001-12-14\n",
        "a: yes\nb: No\nc: y\nd: off\ne: ~\nf: null\ng:\nh: True\ni: inf\nj: nan\n",
        "containers:\n- name: app\n  ports:\n  - containerPort: 80\n    protocol: TCP\n  env: []\n",
        "r: {cpu: 500m, memory: 256Mi}\ns: [a, 'b', \"c\", 1, yes]\nt: {}\nu: [ ]\nv: {a: [1, {b: c}]}\n",
        "a: |\n  one\n   two\n\n  three\n\nb: |-\n  x\nc: |+\n  y\n\n\nd: x\n",
        "a: >\n  one\n  two\n\n  three\nb: >-\n  folded\n  text\nc: | # comment\n  z\n",
        "---\napiVersion: v1\nkind: A\n---\n# only a comment\n---\nkind: B\n",
    ] {
        assert!(agree(text), "the fast reader gave up on:\n{text}");
    }
}

#[test]
fn what_the_fast_reader_leaves_to_serde_saphyr() {
    for text in [
        // Anchors, aliases, tags, merge and complex keys, directives, document ends.
        "a: &x 1\nb: *x\n",
        "a: !!str 1\n",
        "<<: {a: 1}\n",
        "? a\n: b\n",
        "%YAML 1.2\n---\na: 1\n",
        "a: 1\n...\n",
        // Multi-line scalars, a scalar on the next line, tabs, CRLF, a BOM.
        "a: one\n  two\n",
        "a: \"one\n  two\"\n",
        "a:\n  value\n",
        "a:\tb\n",
        "\ta: b\n",
        "a: 1\r\n",
        "\u{feff}a: 1\n",
        // Characters YAML does not allow in a stream, even in a comment.
        "a: x\u{1}y\n",
        "a: \"x\u{7f}\"\n",
        "a: x\u{9f}\n",
        "a: x\u{fffe}\n",
        "# c\u{1}\na: 1\n",
        // Keys YAML would not read as text, duplicates, invalid YAML.
        "1: a\n",
        "yes: a\n",
        "a: 1\na: 2\n",
        "a: b: c\n",
        "a: [1, 2\n",
        "- a\n- b\n",
        "just text\n",
        "a: |\n  no final line break",
    ] {
        assert!(!agree(text), "the fast reader answered:\n{text}");
    }
    // What serde-saphyr refuses for its own limits (found by an adversarial review): a byte
    // order mark inside a document, a key over 1,024 characters, and more than 32 comments
    // held while it looks for an empty value.
    let long = "k".repeat(1025);
    for text in [
        "a: \u{feff}x\n".to_owned(),
        "---\n\u{feff}a: 1\n".to_owned(),
        "a: [\u{feff}x]\n".to_owned(),
        format!("{long}: 1\n"),
        format!("{}     : 1\n", "k".repeat(1020)),
        format!("\"{}\": 1\n", "k".repeat(1023)),
        format!("s:\n- {long}: 1\n"),
        format!("a: {{{long}: 1}}\n"),
        format!("a:\n{}", "#\n".repeat(33)),
        format!("a:\n{}  b: 1\n", "  # c\n".repeat(33)),
        format!("s:\n- # x\n{}- b\n", "#\n".repeat(32)),
    ] {
        assert!(
            read_any(
                "t.yaml",
                &text,
                &KitBudget::default(),
                &mut KitBudget::NOTHING.clone()
            )
            .is_err()
        );
        assert!(!agree(&text), "the fast reader answered:\n{text}");
    }
    // Just under those limits, both read it.
    for text in [
        format!("{}: 1\n", "k".repeat(1024)),
        format!("a:\n{}b: 1\n", "#\n".repeat(31)),
    ] {
        assert!(agree(&text), "the fast reader gave up on:\n{text}");
    }
}

/// `spent` with each of its four limits one short.
fn one_short(spent: &KitBudget) -> [KitBudget; 4] {
    [
        KitBudget {
            nodes: spent.nodes - 1,
            ..spent.clone()
        },
        KitBudget {
            events: spent.events - 1,
            ..spent.clone()
        },
        KitBudget {
            scalar_bytes: spent.scalar_bytes - 1,
            ..spent.clone()
        },
        KitBudget {
            documents: spent.documents - 1,
            ..spent.clone()
        },
    ]
}

#[test]
fn the_fast_reader_stays_within_the_budget_left() {
    let text = "a: [1, 2, 3]\nb: {c: d}\n";
    let (_, spent) = read(text, &KitBudget::default()).expect("read fast");
    assert!(read(text, &spent).is_some(), "exactly enough is enough");
    for short in one_short(&spent) {
        assert!(read(text, &short).is_none(), "{short:?}");
        // serde-saphyr then says which limit.
        let err = super::super::parse_within("t.yaml", text, &mut short.clone()).expect_err("over");
        assert!(matches!(err, super::super::Error::OverBudget { .. }), "{err}");
    }
}

#[test]
fn deep_nesting_is_left_to_serde_saphyr() {
    let mut text = String::new();
    for depth in 0..100 {
        text.push_str(&" ".repeat(depth * 2));
        text.push_str("a:\n");
    }
    assert!(read(&text, &KitBudget::default()).is_none());
    let flow = format!("a: {}{}\n", "[".repeat(100), "]".repeat(100));
    assert!(read(&flow, &KitBudget::default()).is_none());
}

/// Every manifest of the real-world corpus (`KITSYNC_CORPUS`) and of the examples reads the
/// same both ways, and most of them fast.
#[test]
fn corpus_and_examples_read_the_same() {
    let (mut files, mut fast) = (0, 0);
    for file in super::super::tests::example_and_corpus_files() {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        files += 1;
        if agree(&text) {
            fast += 1;
        }
    }
    eprintln!("{fast} of {files} files read fast");
    assert!(
        files > 0 && fast * 10 >= files * 8,
        "only {fast} of {files} files read fast"
    );
}

/// Generated YAML, valid and broken: wherever the fast reader answers, serde-saphyr agrees.
#[test]
fn generated_yaml_reads_the_same() {
    let mut random = Random(0x5eed_1234_abcd_9876);
    let (mut valid, mut fast) = (0, 0);
    for _ in 0..4_000 {
        let mut text = String::new();
        for d in 0..random.below(3) + 1 {
            if d > 0 || random.below(2) == 0 {
                text.push_str(random.pick(&["---\n", "---\n", "--- # c\n", "---\n---\n"]));
            }
            let at = random.below(2) * 2;
            generate_mapping(&mut random, &mut text, at, 0);
        }
        if random.below(4) == 0 {
            mutate(&mut random, &mut text);
        }
        if read_any(
            "t.yaml",
            &text,
            &KitBudget::default(),
            &mut KitBudget::NOTHING.clone(),
        )
        .is_ok()
        {
            valid += 1;
        }
        if agree(&text) {
            fast += 1;
        }
    }
    // Most generated texts are broken somewhere; of those that are YAML, most must be read
    // fast, or the generator is not testing the fast reader.
    eprintln!("{fast} of {valid} valid generated texts read fast");
    assert!(
        fast * 10 >= valid * 6,
        "only {fast} of {valid} read fast: the generator misses the subset"
    );
}

/// A file large enough to be read in parts reads the same as in one part and as serde-saphyr
/// reads it (lines included), and its parts together are held to the budget.
#[test]
fn large_files_read_in_parts_read_the_same() {
    let mut random = Random(0xfeed_0bad_cafe_0001);
    let mut text = String::new();
    while text.len() < 400 << 10 {
        text.push_str(random.pick(&["---\n", "--- # c\n", "---\n---\n"]));
        let mut document = String::new();
        generate_mapping(&mut random, &mut document, 0, 0);
        // Only documents both readers take, so the whole file is read fast.
        if super::read_in_parts(&document, &KitBudget::default(), 1).is_some()
            && read_any(
                "t.yaml",
                &document,
                &KitBudget::default(),
                &mut KitBudget::NOTHING.clone(),
            )
            .is_ok()
        {
            text.push_str(&document);
        }
    }
    assert!(super::parts(&text, 4).len() == 4, "split in four");
    let (one, spent) = super::read_in_parts(&text, &KitBudget::default(), 1).expect("read in one part");
    let (four, spent_four) =
        super::read_in_parts(&text, &KitBudget::default(), 4).expect("read in four parts");
    assert_eq!(spent, spent_four);
    assert_eq!(one.len(), four.len());
    for (one, four) in one.iter().zip(&four) {
        assert_eq!((one.line, &one.value), (four.line, &four.value));
    }
    assert!(agree(&text));
    for short in one_short(&spent) {
        assert!(super::read_in_parts(&text, &short, 4).is_none(), "{short:?}");
    }
}

/// xorshift64: reproducible texts without a dependency.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    /// Mostly one of `usual`, sometimes one of `odd`.
    fn mostly<'a>(&mut self, usual: &[&'a str], odd: &[&'a str]) -> &'a str {
        if self.below(16) == 0 {
            self.pick(odd)
        } else {
            self.pick(usual)
        }
    }
}

const KEYS: &[&str] = &[
    "name",
    "app.kubernetes.io/name",
    "a-b",
    "x_y",
    "\"quoted key\"",
    "'single'",
];

const ODD_KEYS: &[&str] = &[
    "\"8080\"",
    "key with space",
    "k#x",
    "k:x",
    "y",
    "on",
    "1",
    "é",
    "name ",
];

const SCALARS: &[&str] = &[
    "hello",
    "hello world",
    "a#b",
    "text # comment",
    "http://x:80/y",
    "ghcr.io/a/b:1.2",
    "v1.2.3",
    "500m",
    "256Mi",
    "1.10",
    "0644",
    "0x1F",
    "0o17",
    "1e3",
    "-5",
    "-0",
    "+7",
    "007",
    "1_000",
    "0.5",
    ".5",
    ".inf",
    "-.inf",
    ".nan",
    "inf",
    "nan",
    "NaN",
    "Infinity",
    "true",
    "True",
    "TRUE",
    "yes",
    "No",
    "y",
    "n",
    "on",
    "OFF",
    "null",
    "~",
    "Null",
    "12:30",
    "2001-12-14",
    "18446744073709551616",
    "9223372036854775808",
    "-9223372036854775809",
    "0",
    "日本",
    "-item",
    "'a''b'",
    "'it''s ok'",
    "\"esc \\n \\t \\\" \\\\ \\u00e9 \\x41 \\/ \\0\"",
    "''",
    "\"\"",
    "\"a\" # comment",
    "trailing   ",
];

const ODD_SCALARS: &[&str] = &[
    "a: b",
    "x]",
    "[not flow",
    "{x",
    "- item",
    "?q",
    ":c",
    "%p",
    "@a",
    "`b",
    "!tag x",
    "&anchor x",
    "*alias",
    "\"bad \\q\"",
    "\"\\ud800\"",
    "\"unterminated",
    "'single",
    "\"a\tb\"",
    "a\tb",
    "'a' trailing",
    "#comment only",
];

const FLOWS: &[&str] = &[
    "{}",
    "[]",
    "{cpu: 500m, memory: 256Mi}",
    "[a, b, c]",
    "[1, 2, -3, 0644, 1.5]",
    "[\"a\", 'b']",
    "{a: [1, 2], b: {c: d}}",
    "[ ]",
    "{ a: b }",
    "[a, [b, [c]]]",
    "[a, b] # c",
    "{\"k\": v}",
    "{k: \"v, w\"}",
    "[yes, no, ~, null]",
    "[a:b, c]",
    "{url: http://x:80}",
    "[-a, -1]",
    "{a: b,c: d}",
    "[a , b]",
    "[a,b]",
];

const ODD_FLOWS: &[&str] = &[
    "[a, b,]",
    "{a: 1, a: 2}",
    "{a}",
    "[a: b]",
    "{a:1}",
    "{a: }",
    "[a, b",
    "[a, b] x",
];

const BLOCK_LINES: &[&str] = &[
    "line one",
    "",
    "# not a comment",
    "trailing  ",
    "key: not a key",
    "- not an entry",
];

const ODD_BLOCK_LINES: &[&str] = &["  more indented", "\tTab", "   "];

fn indent(text: &mut String, n: usize) {
    for _ in 0..n {
        text.push(' ');
    }
}

fn generate_mapping(random: &mut Random, text: &mut String, at: usize, depth: usize) {
    for _ in 0..random.below(4) + 1 {
        if random.below(8) == 0 {
            indent(text, random.below(at + 3));
            text.push_str(random.pick(&["# comment\n", "\n", "   \n"]));
        }
        indent(text, at);
        text.push_str(random.mostly(KEYS, ODD_KEYS));
        text.push_str(random.mostly(&[": ", ":  "], &[" : ", ":"]));
        generate_value(random, text, at, depth, true);
    }
}

/// The value after `key: ` (or `- `), then its line break and anything nested.
fn generate_value(random: &mut Random, text: &mut String, at: usize, depth: usize, in_mapping: bool) {
    let choice = if depth >= 3 {
        random.below(4)
    } else {
        random.below(8)
    };
    match choice {
        0 | 1 => text.push_str(random.mostly(SCALARS, ODD_SCALARS)),
        2 => text.push_str(random.mostly(FLOWS, ODD_FLOWS)),
        3 => {
            text.push_str(random.mostly(&["|", "|-", "|+", ">", ">-", ">+", "| # c"], &["|2", "|x", "|-+"]));
            text.push('\n');
            let content = at
                + random
                    .mostly(&["2", "4"], &["1", "0"])
                    .parse::<usize>()
                    .unwrap_or(2);
            for _ in 0..random.below(4) + 1 {
                let line = random.mostly(BLOCK_LINES, ODD_BLOCK_LINES);
                if !line.is_empty() {
                    indent(text, content);
                }
                text.push_str(line);
                text.push('\n');
            }
            return;
        }
        4 | 5 => {
            text.push('\n');
            let inner = at + random.mostly(&["2", "4"], &["1"]).parse::<usize>().unwrap_or(2);
            generate_mapping(random, text, inner, depth + 1);
            return;
        }
        6 => {
            text.push('\n');
            let inner = if in_mapping && random.below(2) == 0 {
                at
            } else {
                at + 2
            };
            generate_sequence(random, text, inner, depth + 1);
            return;
        }
        _ => {}
    }
    if random.below(6) == 0 {
        text.push_str(" # trailing");
    }
    text.push('\n');
}

fn generate_sequence(random: &mut Random, text: &mut String, at: usize, depth: usize) {
    for _ in 0..random.below(3) + 1 {
        indent(text, at);
        match random.below(4) {
            0 => {
                // A mapping inside the entry, its keys two columns in.
                text.push_str("- ");
                text.push_str(random.mostly(KEYS, ODD_KEYS));
                text.push_str(": ");
                generate_value(random, text, at + 2, depth, true);
                if random.below(2) == 0 {
                    generate_mapping(random, text, at + 2, depth + 1);
                }
            }
            1 => {
                text.push('-');
                generate_value(random, text, at, depth, false);
            }
            _ => {
                text.push_str("- ");
                generate_value(random, text, at, depth, false);
            }
        }
    }
}

/// One small edit that often breaks the YAML.
fn mutate(random: &mut Random, text: &mut String) {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return;
    }
    let at = random.below(chars.len());
    let mut out: Vec<char> = chars.clone();
    match random.below(5) {
        0 => {
            out.remove(at);
        }
        1 => {
            let c = random.pick(&[
                " ", "\t", ":", "-", "#", "'", "\"", "[", "]", "{", "}", "\n", "|", ">", "&", "\r", "\u{1}",
                "\u{85}", "\u{9f}", "\\", "\u{feff}",
            ]);
            out.insert(at, c.chars().next().unwrap_or(' '));
        }
        2 => out.insert(at, ' '),
        3 => {
            // Drop the final line break.
            if out.last() == Some(&'\n') {
                out.pop();
            }
        }
        _ => {
            // Repeat a line.
            let lines: Vec<&str> = text.lines().collect();
            let line = lines[random.below(lines.len())].to_owned();
            *text = format!("{text}{line}\n");
            return;
        }
    }
    *text = out.into_iter().collect();
}
