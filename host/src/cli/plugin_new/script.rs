//! `kitsync plugin new --lang python|js|go`: a validator or transformer project built by the
//! language's component tool (componentize-py, componentize-js, Go's wasip1 target with
//! wasm-tools) through a `./build` script that installs the pinned tool outside the project
//! when missing, with the same rule and fixture case as the Rust template of its kind. The
//! templates follow the examples in `plugins/python`, `plugins/js` and `plugins/go`, which
//! tests check against the Rust plugins' cases; the Go project carries the example's
//! hand-written ABI and WASI stubs, with the world's own file: the example's `validator.go`,
//! or this directory's `transformer.go` (the same ABI for `transform`).

use super::{Kind, KindText, Lang, WIT, case, fill};
use anyhow::Result;

/// A language's policy source, by kind: (validator, transformer).
const PYTHON_APP: [&str; 2] = [
    include_str!("../../../templates/plugin-python/app-validator.py.in"),
    include_str!("../../../templates/plugin-python/app-transformer.py.in"),
];
const PYTHON_BUILD: &str = include_str!("../../../templates/plugin-python/build.in");
const JS_APP: [&str; 2] = [
    include_str!("../../../templates/plugin-js/app-validator.js.in"),
    include_str!("../../../templates/plugin-js/app-transformer.js.in"),
];
const JS_BUILD: &str = include_str!("../../../templates/plugin-js/build.in");
const GO_MAIN: [&str; 2] = [
    include_str!("../../../templates/plugin-go/main-validator.go.in"),
    include_str!("../../../templates/plugin-go/main-transformer.go.in"),
];
const GO_BUILD: &str = include_str!("../../../templates/plugin-go/build.in");
const GO_ABI: &str = include_str!("../../../../plugins/go/required-labels/internal/plugin/abi.go");
const GO_PLUGIN: &str = include_str!("../../../../plugins/go/required-labels/internal/plugin/plugin.go");
/// The world's Go file, by kind: the `validate` or the `transform` export over abi.go.
const GO_WORLD: [(&str, &str); 2] = [
    (
        "validator.go",
        include_str!("../../../../plugins/go/required-labels/internal/plugin/validator.go"),
    ),
    (
        "transformer.go",
        include_str!("../../../templates/plugin-go/internal/plugin/transformer.go"),
    ),
];
const GO_STUBS: &str =
    include_str!("../../../../plugins/go/required-labels/wasi-stubs/wasi_snapshot_preview1.wat");
const GO_STUBS_WIT: &str = include_str!("../../../../plugins/go/required-labels/wasi-stubs/stubs.wit");
/// The wasm-tools version the Go example is built and tested with.
const WASM_TOOLS: &str = "1.263.0";
const README: &str = include_str!("../../../templates/plugin-script-README.md.in");
/// The JavaScript tools' pins: the example's, so the version a test proved is the one written.
const JS_PACKAGE: &str = include_str!("../../../../plugins/js/required-labels/package.json");
const JS_LOCK: &str = include_str!("../../../../plugins/js/required-labels/package-lock.json");
/// The componentize-py version the Python example is built and tested with.
pub(super) const COMPONENTIZE_PY: &str = "0.25.1";

/// Every file of a `lang` project of `kind` named `name`; the third element says whether the
/// file is executable.
pub(super) fn project(name: &str, kind: Kind, lang: Lang) -> Result<Vec<(String, String, bool)>> {
    let crate_name = name.replace('-', "_");
    // Index into the (validator, transformer) template pairs.
    let k = match kind {
        Kind::Validator => 0,
        Kind::Transformer => 1,
    };
    let (language, tool, source, app, build, requirements, extra_rows) = match lang {
        Lang::Python => (
            "Python",
            "componentize-py",
            "app.py",
            PYTHON_APP[k],
            PYTHON_BUILD,
            "It needs `python3` with `venv`; the first build downloads componentize-py from PyPI.",
            "",
        ),
        Lang::Go => (
            "Go",
            "Go's wasip1 target and wasm-tools",
            "main.go",
            GO_MAIN[k],
            GO_BUILD,
            "It needs Go 1.24 or later and cargo; the first build installs wasm-tools from crates.io (a few minutes).",
            "\n| `internal/plugin/` | the world's Go types and canonical ABI, by hand |\n| `wasi-stubs/` | answers Go's runtime's WASI calls inside the component |\n| `go.mod` | the module |",
        ),
        _ => (
            "JavaScript",
            "componentize-js",
            "app.js",
            JS_APP[k],
            JS_BUILD,
            "It needs Node.js (20 or later) and npm; the first build downloads componentize-js from the npm registry.",
            "\n| `tools/` | the build tool's pins (`package.json`, `package-lock.json`) |",
        ),
    };
    let (case_name, case_files) = case(kind);
    let text = KindText::of(name, kind);
    let mut values: Vec<(&str, &str)> = vec![
        ("name", name),
        ("crate", &crate_name),
        ("language", language),
        ("tool", tool),
        ("source", source),
        ("requirements", requirements),
        ("extra_rows", extra_rows),
        ("contract", crate::plugin::CONTRACT_VERSION),
        ("kitsync_version", env!("CARGO_PKG_VERSION")),
        ("componentize_py", COMPONENTIZE_PY),
        ("wasm_tools", WASM_TOOLS),
        ("module", name),
    ];
    values.extend(text.values(case_name));
    let fill = |template: &str| fill(template, &values);
    let mut files = vec![
        (source.to_owned(), fill(app)?, false),
        ("build".to_owned(), fill(build)?, true),
        ("README.md".to_owned(), fill(README)?, false),
        ("wit/plugin.wit".to_owned(), WIT.to_owned(), false),
        (".gitignore".to_owned(), "/*.wasm\n".to_owned(), false),
    ];
    if lang == Lang::Go {
        files.push(("go.mod".to_owned(), format!("module {name}\n\ngo 1.24\n"), false));
        files.push(("internal/plugin/abi.go".to_owned(), GO_ABI.to_owned(), false));
        files.push((
            "internal/plugin/plugin.go".to_owned(),
            GO_PLUGIN.to_owned(),
            false,
        ));
        let (world_file, world_source) = GO_WORLD[k];
        files.push((
            format!("internal/plugin/{world_file}"),
            world_source.to_owned(),
            false,
        ));
        files.push((
            "wasi-stubs/wasi_snapshot_preview1.wat".to_owned(),
            GO_STUBS.to_owned(),
            false,
        ));
        files.push(("wasi-stubs/stubs.wit".to_owned(), GO_STUBS_WIT.to_owned(), false));
    }
    if lang == Lang::Js {
        // A fixed name for the tools' package: one install serves every such project.
        let tools = |text: &str| {
            text.replace("kitsync-required-labels-js", "kitsync-plugin-tools")
                .replace(
                    "required-labels for kitsync in JavaScript, built into a component by ./build",
                    "kitsync plugin build tools (componentize-js), installed by ./build",
                )
        };
        files.push(("tools/package.json".to_owned(), tools(JS_PACKAGE), false));
        files.push(("tools/package-lock.json".to_owned(), tools(JS_LOCK), false));
    }
    let case_values = [("name", name)];
    for (file, template) in case_files {
        files.push((
            format!("tests/{case_name}/{file}"),
            super::fill(template, &case_values)?,
            false,
        ));
    }
    Ok(files)
}
